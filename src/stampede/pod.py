"""One pod: a FastAPI app that serves items through the configured strategy.

Run it with ``uvicorn --factory stampede.pod:create_app``; it reads its settings from
``STAMPEDE_*`` environment variables (:class:`~stampede.config.PodSettings`). The lab
reconfigures a running pod through ``POST /admin/config`` so that one set of processes serves
many runs, and every run starts from fresh counters and an empty origin log.

HTTP surface: ``GET /items/{id}`` (the item, header ``X-Cache: <outcome>``), ``GET /health``,
``GET /stats`` (this run's origin reads and outcome counts), ``POST /admin/config``,
``POST /admin/reset``. A non-integer id is 422, an unknown id 404, an origin or cache failure
503 with ``Retry-After``; nothing that failed is cached.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import redis.exceptions
from fastapi import Depends, FastAPI, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.asyncio import Redis

from stampede.cache import CacheStore, ReadyNotifier
from stampede.config import PodSettings, StrategyConfig, get_settings
from stampede.errors import ItemNotFound, OriginError, WaitTimeout
from stampede.origin import Origin
from stampede.strategies import Deps, Strategy, create_strategy

__all__ = ["PodState", "create_app"]

log = logging.getLogger(__name__)

RETRY_AFTER = {"Retry-After": "1"}


class PodState:
    """Everything one pod process holds: connections, the strategy, this run's tallies."""

    def __init__(self, settings: PodSettings) -> None:
        self.settings = settings
        self.config: StrategyConfig = settings.strategy_config()
        self.redis = self._new_redis()
        self.origin = Origin(
            settings.origin_path,
            self.config.origin_latency_ms / 1000,
            self.config.origin_error_rate,
        )
        self.notifier = ReadyNotifier(self._new_redis)
        self.outcomes: Counter[str] = Counter()
        self.strategy: Strategy = self._build_strategy()

    def _new_redis(self) -> Redis:
        return Redis.from_url(self.settings.redis_url, socket_timeout=2, socket_connect_timeout=1)

    def _build_strategy(self) -> Strategy:
        deps = Deps(redis=self.redis, store=CacheStore(self.redis), notifier=self.notifier)
        return create_strategy(self.config, deps)

    async def start(self) -> None:
        await self.origin.open()
        await self.notifier.start()

    async def stop(self) -> None:
        await self.strategy.close()
        await self.notifier.stop()
        await self.origin.close()
        await self.redis.aclose()

    async def configure(self, config: StrategyConfig) -> None:
        """Swap in a new strategy for the next run; the old one's refreshes are cancelled."""
        await self.strategy.close()
        self.config = config
        self.origin.latency_s = config.origin_latency_ms / 1000
        self.origin.error_rate = config.origin_error_rate
        self.strategy = self._build_strategy()
        self.reset()

    def reset(self) -> None:
        self.origin.reads.clear()
        self.outcomes.clear()
        self.strategy.counters.clear()

    def stats(self) -> dict[str, Any]:
        return {
            "pod": self.settings.pod_name,
            "config": self.config.model_dump(),
            "outcomes": dict(self.outcomes),
            "counters": dict(self.strategy.counters),
            "reads": [[r.start, r.end, r.item, r.ok] for r in self.origin.reads],
        }


def get_pod(request: Request) -> PodState:
    pod: PodState = request.app.state.pod
    return pod


Pod = Annotated[PodState, Depends(get_pod)]
ItemId = Annotated[int, Path(ge=1, le=2**31 - 1, description="item id, a positive integer")]


def create_app(settings: PodSettings | None = None) -> FastAPI:
    """The pod's app; ``settings`` default to the environment (``STAMPEDE_*``)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pod = PodState(settings)
        await pod.start()
        app.state.pod = pod
        try:
            yield
        finally:
            await pod.stop()

    app = FastAPI(title=f"Stampede Lab pod {settings.pod_name}", lifespan=lifespan)
    _add_error_handlers(app)

    @app.get("/items/{item_id}")
    async def get_item(item_id: ItemId, pod: Pod) -> JSONResponse:
        try:
            fetched = await pod.strategy.get(item_id, lambda: pod.origin.read(item_id))
        except ItemNotFound as exc:
            pod.outcomes["not_found"] += 1
            return JSONResponse({"detail": str(exc)}, 404, headers={"X-Cache": "miss"})
        except (OriginError, WaitTimeout, redis.exceptions.RedisError) as exc:
            pod.outcomes["error"] += 1
            detail = _unavailable(exc)
            headers = {**RETRY_AFTER, "X-Cache": "error"}
            return JSONResponse({"detail": detail}, 503, headers=headers)
        pod.outcomes[fetched.outcome] += 1
        return JSONResponse(fetched.value, headers={"X-Cache": fetched.outcome})

    @app.get("/health")
    async def health(pod: Pod) -> dict[str, Any]:
        return {"status": "ok", "pod": settings.pod_name, "strategy": pod.config.strategy}

    @app.get("/stats")
    async def stats(pod: Pod) -> dict[str, Any]:
        return pod.stats()

    @app.post("/admin/config")
    async def configure(config: StrategyConfig, pod: Pod) -> dict[str, Any]:
        await pod.configure(config)
        return {"pod": settings.pod_name, "config": pod.config.model_dump()}

    @app.post("/admin/reset")
    async def reset(pod: Pod) -> dict[str, str]:
        pod.reset()
        return {"pod": settings.pod_name, "status": "reset"}

    return app


def _unavailable(exc: Exception) -> str:
    if isinstance(exc, redis.exceptions.RedisError):
        return f"cache unavailable: {exc}".splitlines()[0]
    return str(exc).splitlines()[0]


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def one_line_422(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"][1:]) or "request"
            parts.append(f"{where}: {err['msg']} (got {err.get('input')!r})")
        return JSONResponse({"detail": "; ".join(parts)}, 422)
