"""The gateway proper: one poll loop per device, the store, and the hooks."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Optional, Sequence, Union

from .config import Config, Device
from .devices import Connection, DeviceError, Value, connect
from .store import Reading, Store

log = logging.getLogger("gateway")

# A hook gets every batch of readings (one poll of one device) after it is stored.
Hook = Callable[[Sequence[Reading]], Union[None, Awaitable[None]]]


def load_hook(spec: Union[str, dict[str, Any]]) -> Hook:
    """``"module:function"`` is the hook; ``{"use": "module:factory", "with": {...}}`` makes one."""
    target, kwargs = (spec, None) if isinstance(spec, str) else (spec["use"], spec.get("with") or {})
    module, _, attr = target.partition(":")
    obj = getattr(importlib.import_module(module), attr)
    hook: Hook = obj(**kwargs) if kwargs is not None else obj
    return hook


@dataclass
class DeviceState:
    connected: bool = False
    polling: bool = True  # False: stopped by POST /polling (a cutover), the device left alone
    polls: int = 0
    last_poll_us: int = 0
    last_error: str = ""


def now_us() -> int:
    return time.time_ns() // 1000


class Gateway:
    def __init__(self, config: Config, store: Store, hooks: Optional[list[Hook]] = None) -> None:
        self.config, self.store = config, store
        self.hooks: list[Hook] = list(hooks or [])
        stopped = store.stopped_devices()
        self.state = {name: DeviceState(polling=name not in stopped) for name in config.devices}
        self.connections: dict[str, Connection] = {}
        self.tasks: list[asyncio.Task[None]] = []
        self.stopping = False

    async def start(self) -> None:
        for dev in self.config.devices.values():
            self.connections[dev.name] = connect(dev)
            self.tasks.append(asyncio.create_task(self._poll_loop(dev), name=f"poll {dev.name}"))

    async def stop(self) -> None:
        self.stopping = True
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for c in self.connections.values():
            await c.close()
        for h in self.hooks:
            close = getattr(h, "close", None)
            if close is not None and inspect.iscoroutine(res := close()):
                await res

    async def _poll_loop(self, dev: Device) -> None:
        tags = [t for t in self.config.tags.values() if t.device == dev.name]
        conn, state = self.connections[dev.name], self.state[dev.name]
        next_at = time.monotonic()
        while not self.stopping:
            if not state.polling:
                next_at = time.monotonic() + dev.interval
                await asyncio.sleep(dev.interval)
                continue
            ts = now_us()
            try:
                # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a cancel
                # that arrives as the read finishes, and stop() would then wait forever.
                async with asyncio.timeout(dev.timeout * (dev.retries + 1) + 1):
                    values = await conn.read(tags)
                batch = [Reading.make(name, ts, v) for name, v in values.items()]
                state.connected, state.last_error = True, ""
            except (DeviceError, asyncio.TimeoutError) as e:
                reason = e.reason if isinstance(e, DeviceError) else "timeout"
                batch = [Reading.make(t.name, ts, None, "bad", reason) for t in tags]
                state.connected, state.last_error = False, str(e) or reason
                log.warning("device %s: %s", dev.name, state.last_error)
            state.polls, state.last_poll_us = state.polls + 1, ts
            try:
                await self.deliver(batch)
            except Exception as e:  # noqa: BLE001 - the store failing must not end the poll loop
                state.last_error = f"storing readings failed: {e}"
                log.exception("device %s: storing a batch failed", dev.name)
            next_at = max(next_at + dev.interval, time.monotonic())
            await asyncio.sleep(next_at - time.monotonic())

    def set_polling(self, devices: Optional[Sequence[str]], enabled: bool) -> dict[str, bool]:
        """Stops or resumes polling ``devices`` (None: all), also after a restart (the store
        keeps the stopped ones); a poll under way finishes and is stored. ``KeyError`` names
        an unknown device."""
        names = list(self.state) if devices is None else list(devices)
        for name in names:
            if name not in self.state:
                raise KeyError(name)
        self.store.set_stopped(names, not enabled)
        for name in names:
            self.state[name].polling = enabled
            log.warning("device %s: polling %s", name, "resumed" if enabled else "stopped")
        return {n: s.polling for n, s in self.state.items()}

    async def deliver(self, batch: list[Reading]) -> None:
        """Stores a batch, then hands it to every hook; a failing hook is logged, never fatal."""
        if not batch:
            return
        self.store.add(batch)
        for hook in self.hooks:
            try:
                res = hook(batch)
                if inspect.isawaitable(res):
                    await res
            except Exception:  # noqa: BLE001 - a plug-in must not stop polling
                log.exception("hook %r failed", hook)

    async def write(self, tag_name: str, value: Value) -> Reading:
        """Writes to the device, reads back, stores the read-back as a reading."""
        tag = self.config.tags[tag_name]
        read_back = await self.connections[tag.device].write(tag, value)
        reading = Reading.make(tag.name, now_us(), read_back)
        await self.deliver([reading])
        return reading
