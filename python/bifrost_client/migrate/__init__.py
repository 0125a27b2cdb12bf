"""Migration from a plant's existing gateway, Kepware or Ignition to Bifrost.

``bifrost-migrate config`` (:mod:`.cli`) turns a source's tag configuration into a
Bifrost import document (:func:`gateway.convert`, :func:`kepware.convert`,
:func:`ignition.convert`, each returning a :class:`Conversion`: devices, tags and
the :class:`Issue` s that could not be mapped, or were mapped with a change).
"""

from .document import Conversion, Issue

__all__ = ["Conversion", "Issue"]
