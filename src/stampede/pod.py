"""One pod: a FastAPI app that serves items through the configured strategy.

Run it with ``uvicorn --factory stampede.pod:create_server``; it reads its settings from
``STAMPEDE_*`` environment variables (:class:`~stampede.config.PodSettings`). The lab
reconfigures a running pod through ``POST /admin/config`` so that one set of processes serves
many runs, and every run starts from fresh counters and an empty origin log.

HTTP surface: ``GET /items/{id}`` (the item, headers ``X-Cache: <outcome>`` and
``Server-Timing: app;dur=<ms>``, the time the pod spent on it), ``GET /health``,
``GET /stats`` (this run's origin reads and outcome counts), ``POST /admin/config``,
``POST /admin/reset``. A non-integer id is 422, an unknown id 404, an origin or cache failure
503 with ``Retry-After``; nothing that failed is cached. A 404 is remembered in Redis for
``negative_ttl_s`` (``missing:item:{id}``), so a flood of unknown ids reads the origin once per
id and TTL, not once per request; this sits in the strategies' base class
(:meth:`~stampede.strategies.base.Strategy.check_missing`), under every strategy.

**When Redis is down the pod fails open** (``fail_open_concurrency`` > 0, the default): a
request whose strategy hit a Redis error reads the origin directly, answered with ``X-Cache:
fail_open``. Two bounds keep that from becoming the stampede the cache exists to prevent:
requests for the same item share one in-flight read (in-process coalescing, which is all a pod
can do without the shared lock), and at most ``fail_open_concurrency`` such reads run at once
per pod, so the origin sees at most that many times the number of pods; a request that finds
no free slot within ``wait_timeout_s`` gets 503 with ``Retry-After``. Why not 503 for every
request while Redis is down: the origin is healthy, the outage is the cache's, and the
coalesced reads cost the origin a few reads per second per pod, not a herd. Set
``fail_open_concurrency=0`` to answer 503 instead (a cache that protects an origin which must
never see more than its usual load). The Redis client fails fast (no backoff, one retry that
reconnects a connection broken by a restart), so no request waits out an outage.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, NamedTuple, cast

import redis.exceptions
from fastapi import Depends, FastAPI, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from starlette.types import Receive, Scope, Send

from stampede.cache import CacheStore, ReadyNotifier
from stampede.config import PodSettings, StrategyConfig, get_settings
from stampede.envelope import Fetched, json_bytes
from stampede.errors import (
    CorruptEntry,
    ItemNotFound,
    OriginError,
    RememberedMissing,
    WaitTimeout,
)
from stampede.origin import Origin
from stampede.outcomes import Outcome
from stampede.source import code_version
from stampede.strategies import Deps, Strategy, create_strategy

__all__ = [
    "CountingRedis",
    "ItemAnswer",
    "ItemsFastPath",
    "PodState",
    "create_app",
    "create_server",
    "serve_item",
]

log = logging.getLogger(__name__)

RETRY_AFTER = (b"retry-after", b"1")
# Failing open is for a Redis that cannot be reached. One that answers with an error (OOM,
# READONLY after a failover, a script error) is misconfigured or overloaded: reading the
# origin around it would hide that, so those are 503s.
UNREACHABLE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
REDIS_LOG_EVERY_S = 1.0  # one warning per error type and second: an outage must not flood the log
WARM_REDIS_CONNECTIONS = 32  # a pod's concurrent Redis commands at a busy expiry
ITEMS_PREFIX = "/items/"
MAX_ID = 2**31 - 1
MAX_ID_DIGITS = len(str(MAX_ID))
ITEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"description": "no such item (remembered for `negative_ttl_s`)"},
    503: {
        "description": "the origin failed or timed out, a waiter gave up on the refresher, "
        "or Redis is down and the pod cannot fail open; nothing was cached",
        "headers": {"Retry-After": {"description": "seconds", "schema": {"type": "integer"}}},
    },
}


class CountingRedis(Redis):
    """redis-py's asyncio client, counting the commands it sends: one round trip each.

    ``INFO commandstats`` counts the commands a Lua script runs inside Redis as well, so it
    measures Redis' work, not the pod's waits; this counts what the pod waited for (a
    script is one). Pub/sub runs on its own client and is not counted.
    """

    round_trips = 0

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        self.round_trips += 1
        return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]


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
        self.store = CacheStore(self.redis)
        self._fail_open_reads: dict[int, asyncio.Future[bytes]] = {}
        self._redis_logged: dict[str, float] = {}
        self._apply_origin_faults()
        self.strategy: Strategy = self._build_strategy()

    def _new_redis(self) -> CountingRedis:
        # Fail fast: redis-py's default retries 10 times with backoff, seconds per request
        # while Redis is down. One immediate retry reconnects a pooled connection that a
        # Redis restart broke; a refused connection on loopback fails at once.
        client = CountingRedis.from_url(
            self.settings.redis_url,
            socket_timeout=2,
            socket_connect_timeout=1,
            retry=Retry(NoBackoff(), 1),
        )
        return cast(CountingRedis, client)

    def _round_trips(self) -> dict[str, int]:
        """The pod client's Redis round trips this run; none for a library with its own client."""
        return (
            {} if self.strategy.own_redis_client else {"redis_round_trips": self.redis.round_trips}
        )

    def redis_failed(self, exc: redis.exceptions.RedisError) -> None:
        """Log a Redis failure at warning level, with its type, at most once a second per type.

        Counted in ``/stats`` (``redis_errors``) so a run can say it saw Redis fail.
        """
        kind = type(exc).__name__
        self.strategy.counters[f"redis_errors:{kind}"] += 1
        now = time.monotonic()
        if now - self._redis_logged.get(kind, -math.inf) >= REDIS_LOG_EVERY_S:
            self._redis_logged[kind] = now
            fallback = "failing open" if isinstance(exc, UNREACHABLE) else "answering 503"
            log.warning("Redis failed (%s: %s); %s", kind, exc, fallback)

    def _apply_origin_faults(self) -> None:
        self.origin.slow_rate = self.config.origin_slow_rate
        self.origin.slow_s = self.config.origin_slow_ms / 1000
        timeout = self.config.origin_timeout_ms
        self.origin.timeout_s = None if timeout is None else timeout / 1000
        self._fail_open_slots = asyncio.Semaphore(max(1, self.config.fail_open_concurrency))

    async def read_fail_open(self, item: int) -> bytes:
        """Redis is down: read the origin directly, one read per item, a bounded number at once."""
        shared = self._fail_open_reads.get(item)
        if shared is None:
            shared = asyncio.ensure_future(self._bounded_read(item))
            self._fail_open_reads[item] = shared  # the strong reference, until it is done
            shared.add_done_callback(lambda _: self._fail_open_reads.pop(item, None))
        return await asyncio.shield(shared)  # a caller that gives up leaves the read to others

    async def _bounded_read(self, item: int) -> bytes:
        try:
            await asyncio.wait_for(self._fail_open_slots.acquire(), self.config.wait_timeout_s)
        except TimeoutError:
            raise WaitTimeout(
                f"item {item}: Redis is down and {self.config.fail_open_concurrency} origin "
                f"reads were already running on this pod for {self.config.wait_timeout_s:g} s"
            ) from None
        try:
            return await self.origin.read(item)
        finally:
            self._fail_open_slots.release()

    def _build_strategy(self) -> Strategy:
        deps = Deps(redis=self.redis, store=CacheStore(self.redis), notifier=self.notifier)
        return create_strategy(self.config, deps)

    async def start(self) -> None:
        await self.origin.open()
        await self.notifier.start()
        await self.warm_redis()

    async def warm_redis(self) -> None:
        """Open the Redis pool's connections now, not under the first run's load.

        Measured: a fresh pod opened ~100 connections in a run's first seconds (each a TCP
        connect plus ``HELLO`` and ``CLIENT SETINFO`` round trips), CPU and latency spent just
        when the run starts. Concurrent ``PING``s make the pool hold that many; a pod that
        cannot reach Redis yet starts anyway (the requests will fail open or 503).
        """
        pings = [self.redis.ping() for _ in range(WARM_REDIS_CONNECTIONS)]
        results = await asyncio.gather(*pings, return_exceptions=True)
        if failed := [r for r in results if isinstance(r, BaseException)]:
            log.warning("warming the Redis pool failed: %r", failed[0])

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
        self._apply_origin_faults()
        self.strategy = self._build_strategy()
        self.reset()

    def reset(self) -> None:
        self.origin.clear()
        self.outcomes.clear()
        self.strategy.counters.clear()
        self.redis.round_trips = 0

    def stats(self) -> dict[str, Any]:
        return {
            "pod": self.settings.pod_name,
            "config": self.config.model_dump(),
            "outcomes": dict(self.outcomes),
            "counters": {**self.strategy.counters, **self._round_trips()},
            # reads still in flight are listed too, with end None: a log read now misses none
            "reads": [[r.start, r.end, r.item, r.ok] for r in self.origin.log()],
        }


async def _get_pod(request: Request) -> PodState:
    # async on purpose: FastAPI runs a plain ``def`` dependency in a worker thread, measured
    # at ~220 us of CPU per request on these machines
    pod: PodState = request.app.state.pod
    return pod


Pod = Annotated[PodState, Depends(_get_pod)]
ItemId = Annotated[int, Path(ge=1, le=MAX_ID, description="item id, a positive integer")]


def create_app(settings: PodSettings | None = None) -> FastAPI:
    """The pod's app; ``settings`` default to the environment (``STAMPEDE_*``)."""
    settings = settings or get_settings()
    code = code_version()  # the files this process started from; /health reports it

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pod = PodState(settings)
        await pod.start()
        app.state.pod = pod
        # a full collection scans every object the imports made: 56 ms on these machines, a
        # stall that lands on whatever requests are in flight; frozen, they are never scanned
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await pod.stop()

    app = FastAPI(title=f"Stampede Lab pod {settings.pod_name}", lifespan=lifespan)
    _add_error_handlers(app)

    @app.get("/items/{item_id}", responses=ITEM_RESPONSES)
    async def get_item(item_id: ItemId, pod: Pod) -> Response:
        # documents the route (OpenAPI, the 422 contract); a valid id is answered by
        # ItemsFastPath before it gets here, with the same bytes
        answer = await serve_item(item_id, pod)
        return Response(answer.body, answer.status, dict(answer.text_headers()))

    @app.get("/health")
    async def health(pod: Pod) -> dict[str, Any]:
        return {
            "status": "ok",
            "pod": settings.pod_name,
            "strategy": pod.config.strategy,
            "code": code,  # stampede.source.code_version: run() refuses pods of other code
        }

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


class ItemAnswer(NamedTuple):
    """One ``/items`` answer, ready to send: status, JSON body, headers (``X-Cache`` first)."""

    status: int
    body: bytes
    headers: list[tuple[bytes, bytes]]

    def text_headers(self) -> list[tuple[str, str]]:
        return [(k.decode(), v.decode()) for k, v in self.headers]


async def serve_item(item_id: int, pod: PodState) -> ItemAnswer:
    """The item through the strategy; failures mapped to 404 and 503, counted per outcome.

    ``Server-Timing: app;dur=<ms>`` is the pod's own share of the latency: what a client
    measures on top of it is transport and the client's own queueing.
    """
    started = time.perf_counter()
    status, body, outcome, extra = await _answer(item_id, pod)
    elapsed_ms = (time.perf_counter() - started) * 1000
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % len(body)),
        (b"x-cache", outcome.encode()),
        (b"server-timing", b"app;dur=%.2f" % elapsed_ms),
        *extra,
    ]
    return ItemAnswer(status, body, headers)


async def _answer(item_id: int, pod: PodState) -> tuple[int, bytes, str, list[tuple[bytes, bytes]]]:
    try:
        try:
            fetched = await pod.strategy.get(item_id, lambda: pod.origin.read(item_id))
        except UNREACHABLE as exc:
            pod.redis_failed(exc)
            if not pod.config.fail_open_concurrency:
                raise
            fetched = Fetched(await pod.read_fail_open(item_id), Outcome.FAIL_OPEN)
    except ItemNotFound as exc:
        pod.outcomes[Outcome.NOT_FOUND] += 1
        outcome = Outcome.HIT if isinstance(exc, RememberedMissing) else Outcome.MISS
        return 404, _detail(str(exc)), outcome, []
    except redis.exceptions.RedisError as exc:  # Redis answered with an error: OOM, READONLY...
        if not isinstance(exc, UNREACHABLE):
            pod.redis_failed(exc)
        pod.outcomes[Outcome.ERROR] += 1
        return 503, _detail(_unavailable(exc)), Outcome.ERROR, [RETRY_AFTER]
    except (OriginError, WaitTimeout, CorruptEntry) as exc:
        pod.outcomes[Outcome.ERROR] += 1
        return 503, _detail(_unavailable(exc)), Outcome.ERROR, [RETRY_AFTER]
    pod.outcomes[fetched.outcome] += 1
    return 200, fetched.value, fetched.outcome, []


def _detail(message: str) -> bytes:
    return json_bytes({"detail": message})


def create_server(settings: PodSettings | None = None) -> ItemsFastPath:
    """What uvicorn serves (``uvicorn --factory stampede.pod:create_server``).

    The pod's FastAPI app (:func:`create_app`) behind the items fast path.
    """
    return ItemsFastPath(create_app(settings))


class ItemsFastPath:
    """ASGI app in front of FastAPI: ``GET /items/{id}`` with a valid id skips FastAPI.

    Why: the hit path is the lab's own cost in every figure it shows. FastAPI's per-request
    routing, dependency injection, path validation and response class cost about half a
    millisecond of CPU per request on these machines, more than the Redis read itself. This
    path answers exactly what the FastAPI route would (same status, body and headers) and
    hands everything else, a bad id included, to FastAPI: the OpenAPI document, the one-line
    422 and the admin routes stay FastAPI's.
    """

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        item = _item_id(scope) if scope["type"] == "http" else None
        if item is None:
            await self.app(scope, receive, send)
            return
        answer = await serve_item(item, self.app.state.pod)
        await send(
            {"type": "http.response.start", "status": answer.status, "headers": answer.headers}
        )
        await send({"type": "http.response.body", "body": answer.body})


def _item_id(scope: Scope) -> int | None:
    """The id of a ``GET /items/<id>`` the fast path may answer; ``None`` leaves it to FastAPI."""
    path: str = scope["path"]
    if scope["method"] != "GET" or not path.startswith(ITEMS_PREFIX):
        return None
    raw = path[len(ITEMS_PREFIX) :]
    if not (raw.isascii() and raw.isdigit() and len(raw) <= MAX_ID_DIGITS):
        return None
    item = int(raw)
    return item if 1 <= item <= MAX_ID else None


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
