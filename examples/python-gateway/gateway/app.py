"""The HTTP API (FastAPI): health, tags, current value, history, writes."""

from __future__ import annotations

from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import Any, AsyncIterator, Optional

from fastapi import FastAPI, HTTPException, Query
from pydantic import BaseModel

from .devices import DeviceError
from .service import Gateway


class WriteRequest(BaseModel):
    value: Any


class PollingRequest(BaseModel):
    enabled: bool
    devices: Optional[list[str]] = None  # None: every device


def parse_time(text: Optional[str]) -> Optional[int]:
    """Microseconds since 1970 from an integer or an ISO 8601 time (naive = UTC)."""
    if text is None or text == "":
        return None
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise HTTPException(400, f"bad time {text!r}: use microseconds or ISO 8601") from None
    t = t if t.tzinfo else t.replace(tzinfo=timezone.utc)
    return int(t.timestamp() * 1_000_000)


def create_app(gw: Gateway) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await gw.start()
        yield
        await gw.stop()
        gw.store.close()

    app = FastAPI(title="plant gateway", lifespan=lifespan)

    def tag_or_404(name: str) -> Any:
        if name not in gw.config.tags:
            raise HTTPException(404, f"unknown tag {name!r}")
        return gw.config.tags[name]

    @app.get("/health")
    def health() -> dict[str, Any]:
        devices = {n: vars(s) for n, s in gw.state.items()}
        ok = all(s.connected or not s.polling for s in gw.state.values())
        return {"status": "ok" if ok else "degraded", "devices": devices}

    @app.get("/tags")
    def tags() -> list[dict[str, Any]]:
        return [{"name": t.name, "device": t.device, "address": t.address, "type": t.type,
                 "units": t.units, "description": t.description, "writable": t.writable}
                for t in gw.config.tags.values()]

    @app.get("/tags/{name:path}/current")
    def current(name: str) -> dict[str, Any]:
        tag_or_404(name)
        r = gw.store.current(name)
        if r is None:
            raise HTTPException(404, f"no reading of {name!r} yet")
        return r.to_json()

    @app.get("/tags/{name:path}/history")
    def history(name: str, start: Optional[str] = Query(None, alias="from"),
                end: Optional[str] = Query(None, alias="to"),
                limit: int = Query(10_000, ge=1, le=100_000)) -> list[dict[str, Any]]:
        """``from`` inclusive, ``to`` exclusive: microseconds since 1970 or ISO 8601."""
        tag_or_404(name)
        return [r.to_json() for r in gw.store.history(name, parse_time(start), parse_time(end), limit)]

    @app.post("/tags/{name:path}/write")
    async def write(name: str, req: WriteRequest) -> dict[str, Any]:
        tag = tag_or_404(name)
        if not tag.writable:
            raise HTTPException(403, f"tag {name!r} is not writable")
        try:
            r = await gw.write(name, req.value)
        except (ValueError, TypeError) as e:
            raise HTTPException(400, str(e)) from None
        except DeviceError as e:
            raise HTTPException(502, f"write failed: {e}") from None
        return {"tag": name, "written": req.value, "read_back": r.value, "reading": r.to_json()}

    @app.post("/polling")
    def polling(req: PollingRequest) -> dict[str, Any]:
        """Stops (``enabled: false``) or resumes polling of some devices: a cutover's switch."""
        try:
            return {"polling": gw.set_polling(req.devices, req.enabled)}
        except KeyError as e:
            raise HTTPException(404, f"unknown device {e.args[0]!r}") from None

    return app
