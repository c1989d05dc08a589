"""Reference apps for ``cost.py``: what a request costs before the lab adds anything.

Three uvicorn factories, each answering ``GET /items/{id}`` and ``GET /health``, started by
``cost.py`` with the pods' own command line (``stampede.lab.pod_command(port, app=...)`` with
``--app-dir bench``), so uvloop, httptools and every other flag are the pods':

- ``floors:raw``: a bare ASGI callable answering the fixed bytes of one item;
- ``floors:fastapi_dict``: a FastAPI route with an ``int`` path parameter returning that item
  as a dict (FastAPI validates the id and serialises the dict on every request);
- ``floors:fastapi_get``: the same route doing one redis-py ``GET floor:item:{id}`` and
  answering the stored bytes as they are, the least a cache hit can do.

The item's JSON comes from ``STAMPEDE_FLOOR_ITEM``; ``fastapi_get`` reads Redis at
``STAMPEDE_REDIS_URL``, where ``cost.py`` has written every item's bytes. No X-Cache or
Server-Timing header, no counters: that bookkeeping is part of what the floors leave out.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Response
from redis.asyncio import Redis

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

KEY = "floor:item:{}"
HEALTH = b'{"status":"ok"}'


def _item() -> bytes:
    return os.environ["STAMPEDE_FLOOR_ITEM"].encode()


def raw() -> ASGIApp:
    """Bare ASGI: the fixed item bytes for any ``/items/...`` path, 404 for anything else."""
    item = _item()

    def headers(body: bytes) -> list[tuple[bytes, bytes]]:
        return [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        path = scope["path"]
        if path.startswith("/items/"):
            status, body = 200, item
        elif path == "/health":
            status, body = 200, HEALTH
        else:
            status, body = 404, b'{"detail":"Not Found"}'
        await send({"type": "http.response.start", "status": status, "headers": headers(body)})
        await send({"type": "http.response.body", "body": body})

    return app


def fastapi_dict() -> FastAPI:
    """FastAPI returning the item as a dict (validated id, serialised dict)."""
    item = json.loads(_item())
    app = FastAPI(title="floor: FastAPI returning a dict")

    @app.get("/items/{item_id}")
    async def get_item(item_id: int) -> dict[str, Any]:
        return item

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def fastapi_get() -> FastAPI:
    """FastAPI plus one redis-py ``GET``, answering the bytes it read."""
    redis = Redis.from_url(os.environ["STAMPEDE_REDIS_URL"])

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await redis.aclose()

    app = FastAPI(title="floor: FastAPI plus one Redis GET", lifespan=lifespan)

    @app.get("/items/{item_id}")
    async def get_item(item_id: int) -> Response:
        raw = await redis.get(KEY.format(item_id))
        if raw is None:
            return Response(b'{"detail":"no such item"}', 404, media_type="application/json")
        return Response(raw, media_type="application/json")

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app
