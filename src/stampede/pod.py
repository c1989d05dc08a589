"""One pod: a FastAPI app that serves items through the configured strategy.

Run it with ``uvicorn --factory stampede.pod:create_server``; it reads its settings from
``STAMPEDE_*`` environment variables (:class:`~stampede.config.PodSettings`). The lab
reconfigures a running pod through ``POST /admin/config`` so that one set of processes serves
many runs, and every run starts from fresh counters and an empty origin log.

HTTP surface: ``GET /items/{id}`` (the item, headers ``X-Cache: <outcome>`` and
``Server-Timing: app;dur=<ms>``, the time the pod spent on it), ``GET /health``,
``GET /stats`` (this run's origin reads and outcome counts), ``POST /admin/config``,
``POST /admin/reset`` (both need the lab secret, see below). A non-integer id is 422, an
unknown id 404, an origin or cache failure 503 with ``Retry-After``; nothing that failed is
cached. A 404 is remembered in Redis for
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

**Who may talk to a pod** (:class:`ItemsFastPath`, in front of everything): a request whose
``Host`` header is not one of the pod's own addresses (``127.0.0.1:<port>``,
``localhost:<port>``, ``[::1]:<port>``, or a name in ``STAMPEDE_ALLOWED_HOSTS``) gets 403, and
so does every ``/admin/*`` call without ``Authorization: Bearer <STAMPEDE_LAB_SECRET>``; both
are refused before FastAPI reads the request, so they change nothing. ``/items``, ``/health``
and ``/stats`` need no secret: they only read. The threat model: the lab binds 127.0.0.1 only,
so the attacker is whatever else can reach loopback, above all a web page the reader has open.
Such a page can send a bodyless cross-site ``POST /admin/reset`` (no CORS preflight is needed
for it) and, through DNS rebinding, read and post anything under its own host name; the
bearer secret stops the first (a page cannot add an ``Authorization`` header without a
preflight the pod never grants), the ``Host`` check the second. Redis requires the same
secret (``requirepass``), because whoever can write to it runs code in a pod (two peers store
pickles), and the lab sends ``FLUSHALL`` only to a Redis that proves it holds that secret. Not in
scope: another local user who can read this user's process environment or files (the secret
lives in the pods' environment and the 0600 state file of ``stampede lab up``), TLS (all of it is
loopback), and denial of service.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import os
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, NamedTuple, cast

import redis.exceptions
from fastapi import Depends, FastAPI, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from starlette.types import Receive, Scope, Send

from stampede import auth
from stampede.cache import CacheStore, ReadyNotifier
from stampede.config import PodSettings, StrategyConfig, get_settings
from stampede.envelope import Fetched, json_bytes
from stampede.errors import (
    ConfigError,
    CorruptEntry,
    ItemNotFound,
    OriginError,
    RememberedMissing,
    WaitTimeout,
)
from stampede.origin import Origin
from stampede.outcomes import Outcome
from stampede.source import code_version
from stampede.strategies import Deps, Strategy, create_strategy, strategy_class

__all__ = [
    "MAX_REDIS_CONNECTIONS",
    "CountingRedis",
    "CountingRedisCluster",
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
# origin around it would hide that, so those are 503s. CLUSTERDOWN is the exception: a live
# node saying that a slot has no primary (one died, its replica is not promoted yet) is a
# Redis that cannot be reached for that key, and the failover ends it within seconds.
UNREACHABLE = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ClusterDownError,
)
REDIS_LOG_EVERY_S = 1.0  # one warning per error type and second: an outage must not flood the log
WARM_REDIS_CONNECTIONS = 32  # a pod's concurrent Redis commands at a busy expiry
# The most connections a pod opens to one Redis; a command that finds them all busy waits for
# one (up to the socket timeout) instead of opening another. See PodState._new_redis.
MAX_REDIS_CONNECTIONS = 64
REDIS_SOCKET_TIMEOUT_S = 2.0
REDIS_CONNECT_TIMEOUT_S = 1.0
ITEMS_PREFIX = "/items/"
MAX_ID = 2**31 - 1
MAX_ID_DIGITS = len(str(MAX_ID))
ADMIN_PREFIX = "/admin"
MAX_ADMITTED_HOSTS = 64  # distinct Host values remembered as admitted (bounded memory)
ITEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"description": "no such item (remembered for `negative_ttl_s`)"},
    503: {
        "description": "the origin failed or timed out, a waiter gave up on the refresher, "
        "or Redis is down and the pod cannot fail open; nothing was cached",
        "headers": {"Retry-After": {"description": "seconds", "schema": {"type": "integer"}}},
    },
}
ADMIN_RESPONSES: dict[int | str, dict[str, Any]] = {
    403: {"description": "no `Authorization: Bearer <STAMPEDE_LAB_SECRET>`, or a wrong one"},
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


class CountingRedisCluster(RedisCluster):
    """:class:`CountingRedis` for a Redis Cluster: a command is one round trip to its node.

    Bounded as the single-Redis pool is (:meth:`PodState._new_redis`): redis-py's cluster
    client keeps a pool per node that raises ``MaxConnectionsError`` (a ``ConnectionError``,
    so the pod would fail open) once 100 commands are in flight to one node, instead of
    waiting. Measured at ``origin_latency_ms=500 rate=760`` on three primaries: the hot
    shard's polling waiters did that, and single-flight read the hot key 4 times in a window.
    So at most ``MAX_REDIS_CONNECTIONS`` commands are in flight per client; the next one waits
    for a slot, up to the socket timeout.
    """

    round_trips = 0
    _slots: asyncio.Semaphore | None = None  # made on first use, inside the pod's event loop

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        self.round_trips += 1
        if self._slots is None:
            self._slots = asyncio.Semaphore(MAX_REDIS_CONNECTIONS)
        try:
            async with asyncio.timeout(REDIS_SOCKET_TIMEOUT_S):
                await self._slots.acquire()
        except TimeoutError:
            raise redis.exceptions.ConnectionError("No connection available.") from None
        try:
            return await super().execute_command(*args, **options)
        finally:
            self._slots.release()


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

    def _new_redis(self) -> CountingRedis | CountingRedisCluster:
        """A client that fails fast while Redis is down and opens a bounded number of connections.

        Fail fast: redis-py's default retries 10 times with backoff, seconds per request while
        Redis is down. One immediate retry reconnects a pooled connection that a Redis restart
        broke; a refused connection on loopback fails at once.

        Bounded: redis-py's default pool opens a connection for every command that finds none
        idle. Measured at ``origin_latency_ms=500 rate=760``: the first expiry's ~180 polling
        waiters per pod opened ~180 connections at once, each a TCP connect plus ``HELLO`` and
        ``CLIENT SETINFO`` on a busy event loop; 92 of them missed the 1 s connect timeout
        and their requests failed open with Redis up, the herd moved onto Redis' accept queue.
        A blocking pool of ``MAX_REDIS_CONNECTIONS`` makes a command wait for a free
        connection (a GET holds one for well under a millisecond) instead.

        A cluster URL (auth.cluster_url) gets the cluster client: slot routing, MOVED, a
        refreshed topology after a failover; its pools are per node and raise when full, so
        :class:`CountingRedisCluster` bounds the commands in flight itself.
        """
        url = auth.client_url(self.settings.redis_url)
        timeouts: dict[str, Any] = {
            "socket_timeout": REDIS_SOCKET_TIMEOUT_S,
            "socket_connect_timeout": REDIS_CONNECT_TIMEOUT_S,
            "retry": Retry(NoBackoff(), 1),
        }
        if auth.is_cluster_url(self.settings.redis_url):
            cluster = CountingRedisCluster.from_url(url, **timeouts)
            return cast(CountingRedisCluster, cluster)
        pool = BlockingConnectionPool.from_url(
            url, max_connections=MAX_REDIS_CONNECTIONS, timeout=REDIS_SOCKET_TIMEOUT_S, **timeouts
        )
        return cast(CountingRedis, CountingRedis.from_pool(pool))

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
            return await self.origin.read(item, fail_open=True)
        finally:
            self._fail_open_slots.release()

    def _build_strategy(self) -> Strategy:
        deps = Deps(redis=self.redis, store=CacheStore(self.redis), notifier=self.notifier)
        self.refuse_on_cluster(self.config)
        return create_strategy(self.config, deps)

    def refuse_on_cluster(self, config: StrategyConfig) -> None:
        """A peer library's own client is set up for one Redis: refuse it on a cluster."""
        if (
            isinstance(self.redis, RedisCluster)
            and strategy_class(config.strategy).own_redis_client
        ):
            raise ConfigError(
                f"{config.strategy} brings its library's own Redis client, which this lab does "
                "not point at a Redis Cluster; run it on a single Redis (redis_cluster=0)"
            )

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
        client = self.redis
        if isinstance(client, RedisCluster):  # one connection per primary and ping
            pings = [
                client.ping(target_nodes=RedisCluster.PRIMARIES)
                for _ in range(WARM_REDIS_CONNECTIONS)
            ]
        else:
            pings = [client.ping() for _ in range(WARM_REDIS_CONNECTIONS)]
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
        self.refuse_on_cluster(config)  # before anything changes
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
            "reads": [[r.start, r.end, r.item, r.ok, r.fail_open] for r in self.origin.log()],
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
        """Up, which pod, which strategy; ``pid`` lets the lab's readiness probe tell its own
        process from a foreign listener that took the port between ``free_port()`` and the start.
        """
        return {
            "status": "ok",
            "pod": settings.pod_name,
            "strategy": pod.config.strategy,
            "pid": os.getpid(),
            "code": code,  # stampede.source.code_version: run() refuses pods of other code
        }

    @app.get("/stats")
    async def stats(pod: Pod) -> dict[str, Any]:
        """This run's origin log and counters. Open, no secret: reading it changes nothing, it
        holds nothing secret (the configuration, counts and read times the book publishes), and
        the ``Host`` check already keeps a rebinding page from reading it; a cross-site page
        without rebinding cannot read the answer (no CORS). Debugging with ``curl`` stays easy.
        """
        return pod.stats()

    @app.post("/admin/config", responses=ADMIN_RESPONSES)
    async def configure(config: StrategyConfig, pod: Pod) -> dict[str, Any]:
        """Put the pod on ``config`` (needs the lab secret, checked by :class:`ItemsFastPath`)."""
        try:
            await pod.configure(config)
        except ConfigError as exc:
            return JSONResponse({"detail": str(exc)}, 409)  # type: ignore[return-value]
        return {"pod": settings.pod_name, "config": pod.config.model_dump()}

    @app.post("/admin/reset", responses=ADMIN_RESPONSES)
    async def reset(pod: Pod) -> dict[str, str]:
        """Clear the counters and the origin log (needs the lab secret)."""
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
    try:
        status, body, outcome, extra = await _answer(item_id, pod)
    except Exception as exc:  # a bug here or in a peer library: answered and counted, not lost
        log.exception("item %d: unhandled %s", item_id, type(exc).__name__)
        pod.strategy.counters[f"unhandled_errors:{type(exc).__name__}"] += 1
        pod.outcomes[Outcome.ERROR] += 1
        status, body, outcome, extra = (
            500,
            _detail(f"internal error ({type(exc).__name__})"),
            Outcome.ERROR,
            [],
        )
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

    The pod's FastAPI app (:func:`create_app`) behind the guard and the items fast path. Serve
    this, never :func:`create_app` alone: the ``Host`` and secret checks live here.
    """
    settings = settings or get_settings()
    return ItemsFastPath(create_app(settings), settings)


class ItemsFastPath:
    """ASGI app in front of FastAPI: the pod's guard, and ``GET /items/{id}`` without FastAPI.

    Why the fast path: the hit path is the lab's own cost in every figure it shows. FastAPI's
    per-request routing, dependency injection, path validation and response class cost about
    half a millisecond of CPU per request on these machines, more than the Redis read itself.
    This path answers exactly what the FastAPI route would (same status, body and headers) and
    hands everything else, a bad id included, to FastAPI: the OpenAPI document, the one-line
    422 and the admin routes stay FastAPI's.

    The guard (the threat model is in the module docstring) runs first, for every request,
    the fast path's included: a ``Host`` that is not one of the pod's addresses
    (:func:`stampede.auth.admits_host`) is 403, and so is an ``/admin`` call without the
    bearer secret (:func:`stampede.auth.bearer_matches`, constant time). Both are answered
    here, before FastAPI reads a byte of the body, so a refused call changes nothing. On the
    hot path the check is a scan of the header list up to ``Host`` and one set lookup on its
    raw bytes: an admitted value is remembered (at most :data:`MAX_ADMITTED_HOSTS` of them).
    """

    def __init__(self, app: FastAPI, settings: PodSettings | None = None) -> None:
        settings = settings or get_settings()
        self.app = app
        self._secret = settings.lab_secret.get_secret_value().encode()
        self._names = auth.host_names(settings.allowed_hosts)
        self._admitted: set[bytes] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = b""
        for name, value in scope["headers"]:  # inline, not a helper: this runs per request
            if name == b"host":
                host = value
                break
        if host not in self._admitted and not self._admit(host, scope):
            await _forbidden(send, _host_refused(host, scope))
            return
        if scope["path"].startswith(ADMIN_PREFIX) and not self._authorized(scope):
            await _forbidden(send, self._admin_refused(scope))
            return
        item = _item_id(scope)
        if item is None:
            await self.app(scope, receive, send)
            return
        answer = await serve_item(item, self.app.state.pod)
        await send(
            {"type": "http.response.start", "status": answer.status, "headers": answer.headers}
        )
        await send({"type": "http.response.body", "body": answer.body})

    def _admit(self, host: bytes, scope: Scope) -> bool:
        if not auth.admits_host(host, _own_port(scope), self._names):
            log.info("refused a request for Host %r", host)
            return False
        if len(self._admitted) < MAX_ADMITTED_HOSTS:
            self._admitted.add(host)
        return True

    def _authorized(self, scope: Scope) -> bool:
        return auth.bearer_matches(_authorization(scope), self._secret)

    def _admin_refused(self, scope: Scope) -> str:
        where = f"{scope['method']} {scope['path']}"
        log.info("refused %s: no or wrong lab secret", where)
        if not self._secret:
            return f"{where}: this pod was started without {auth.SECRET_ENV}; /admin is closed"
        if _authorization(scope) is None:
            return f"{where} needs Authorization: Bearer <the lab secret, {auth.SECRET_ENV}>"
        return f"{where}: the Authorization header does not carry this lab's secret"


def _authorization(scope: Scope) -> bytes | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            return bytes(value)
    return None


def _own_port(scope: Scope) -> int | None:
    server = scope.get("server")
    return int(server[1]) if server and server[1] is not None else None


def _host_refused(host: bytes, scope: Scope) -> str:
    port = _own_port(scope)
    shown = host.decode("latin-1")[:100]
    return (
        f"Host {shown!r} is not one of this pod's addresses (127.0.0.1:{port}, "
        f"localhost:{port}, or a name in {auth.ALLOWED_HOSTS_ENV})"
    )


async def _forbidden(send: Send, message: str) -> None:
    body = _detail(message)
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 403, "headers": headers})
    await send({"type": "http.response.body", "body": body})


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
