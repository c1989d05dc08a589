"""The load generator: paced simulated clients, one frozen record per request.

Pacing is a schedule per client (:func:`poisson_schedule`, :func:`closed_schedule`), sending
is one callback (:meth:`_Run.send`), and the HTTP client is the few lines it needs
(:class:`_Connection`):

- ``open`` (default): each client sends on its own Poisson schedule, together ``rate`` req/s,
  whether or not earlier requests have returned, so a slow server cannot slow the load down
  (no coordinated omission). Each client's next send is one ``loop.call_at`` timer: no task,
  no coroutine per request.
- ``closed``: each client sends its next request when the last returns, after ``think_ms``.
  With no think time 50 clients saturate the generator's own core and latency then measures
  the generator, not the lab.

The client speaks HTTP/1.1 keep-alive on asyncio protocols (uvloop when installed), one request
at a time per connection, no pipelining: request bytes are built once per (pod, item), and a
response is parsed by httptools (llhttp, uvicorn's parser) and kept for its status, ``X-Cache``
and ``Server-Timing`` only. Against aiohttp (a session per client, what this module used
before) it costs about a third of the CPU per request, start-up included (``bench/generator.py``
measures both side by side), and a generator that saturates its core measures itself, not the
lab. Each client opens :data:`WARM` connections to every pod before the clock starts; when all
of a client's connections to a pod are busy it opens one more at once (counted, never queued
behind a busy one). Timeouts are swept by one periodic callback, not a timer per request. Not
supported, because the pods never need it: TLS, redirects, methods other than GET.

Requests go round-robin over the pods; a pod that refused a connection or dropped one is skipped
for :data:`COOL_OFF_S` (a load balancer's passive health check), so the load goes on over the
others when one dies. With ``retries`` > 0 a request answered 503, refused or dropped is sent
again after a jittered exponential backoff (:func:`backoff_s`), to the next pod; each attempt
is its own record (``attempt`` 0, 1, ...), so every send is accounted for. Timeouts are not
retried. Runs are bounded in time (``duration_s``) and go to loopback addresses only (the
compose network's pods are named in ``STAMPEDE_ALLOW_HOSTS``, see ``lab_env/README.md``).
:mod:`stampede.workers` runs this module's :func:`main` in worker processes and merges their
records.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import os
import random
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, fields
from ipaddress import ip_address
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, cast
from urllib.parse import urlsplit

import httptools

from stampede.errors import ConfigError, LabError

if TYPE_CHECKING:
    from stampede.config import LoadConfig

__all__ = [
    "COOL_OFF_S",
    "RECORD_FIELDS",
    "WARM",
    "Record",
    "backoff_s",
    "check_loopback",
    "closed_schedule",
    "collector_paused",
    "generate",
    "generate_rows",
    "item_chooser",
    "main",
    "poisson_schedule",
    "retried",
    "server_ms",
    "think_s",
]


@dataclass(frozen=True, slots=True)
class Record:
    """One request as the client saw it. Times are epoch seconds; latency is send to last byte."""

    client: int
    item: int
    pod: int
    t_sched: float  # when the schedule wanted it sent
    t_send: float  # when it was sent
    latency_ms: float
    status: int  # HTTP status; 0 when no response came back
    outcome: str  # the X-Cache header, or "error"
    error: str  # "" | "timeout" | "connect" | "protocol"
    attempt: int = 0  # 0 for the first send, n for the n-th retry of the same request
    server_ms: float = math.nan  # the pod's own time on it (``Server-Timing: app;dur=``)


RECORD_FIELDS = [f.name for f in fields(Record)]
WARM = 3  # connections per client and pod: enough for the overlap a stampede causes
COOL_OFF_S = 1.0  # a pod that refused a connection gets no traffic for this long
# A connection idle this long is closed rather than reused: the pods close theirs after
# ``stampede.lab.POD_KEEP_ALIVE_S`` (30 s), and a request sent just as they do fails.
IDLE_RETIRE_S = 20.0
RETRYABLE_ERRORS = {"connect", "protocol"}  # GET is idempotent: a dropped one is safe to resend
TIMER_SLACK_S = 0.0005  # open-loop timers fire this late, so that none fires before its time

Row = tuple[int, int, int, float, float, float, int, str, str, int, float]  # a Record's fields


def backoff_s(attempt: int, base_ms: float, cap_ms: float, rng: random.Random) -> float:
    """Full-jitter exponential backoff before retry ``attempt`` (0-based): U(0, min(cap, b*2^n)).

    "Full jitter" (AWS Architecture Blog, "Exponential Backoff and Jitter") spreads retries of
    clients that failed together, so a 503 burst does not come back as a synchronized burst.
    The server's ``Retry-After`` (1 s) is not awaited: it is coarser than the backoff base.
    """
    return rng.uniform(0.0, min(cap_ms, base_ms * 2**attempt)) / 1000


def retried(status: int, error: str, attempt: int, load: LoadConfig) -> bool:
    """Whether the generator resends an attempt that got ``status`` / ``error`` (a 503, a
    refused or dropped connection) as attempt ``attempt`` (0-based), after :func:`backoff_s`.

    A timeout is not retried: the request may still be running on its pod. One place for the
    rule, so the simulator's closed loop retries what the generator retries.
    """
    return (status == 503 or error in RETRYABLE_ERRORS) and attempt < load.retries


class _RoundRobin:
    """Round-robin over the pods, skipping any that failed a connection in the last cool-off."""

    def __init__(self, pods: int) -> None:
        self.next_pod = 0
        self.down_until = [0.0] * pods

    def __call__(self) -> int:
        now = time.time()
        for _ in self.down_until:
            pod = self.next_pod
            self.next_pod = (pod + 1) % len(self.down_until)
            if self.down_until[pod] <= now:
                return pod
        return pod  # every pod is cooling off: try anyway, the error is recorded

    def failed(self, pod: int) -> None:
        self.down_until[pod] = time.time() + COOL_OFF_S


def check_loopback(urls: Sequence[str]) -> None:
    """Refuse any target that is not on this machine: the lab's load stays on loopback.

    The one exception is explicit: host names listed in ``STAMPEDE_ALLOW_HOSTS``
    (comma-separated), which the compose file sets for its JupyterLab container, whose pods
    are ``pod-1``... on the compose network.
    """
    allowed = {h.strip() for h in os.environ.get("STAMPEDE_ALLOW_HOSTS", "").split(",") if h}
    for url in urls:
        host = urlsplit(url).hostname or ""
        ok = host == "localhost" or host in allowed
        with contextlib.suppress(ValueError):
            ok = ok or ip_address(host).is_loopback
        if not ok:
            raise ConfigError(f"load target {url!r} is not a loopback address (127.0.0.0/8, ::1)")


def item_chooser(load: LoadConfig, rng: random.Random) -> Callable[[], int]:
    """The traffic mix: ``hot_share`` on the hot item, the rest uniform over the others."""
    if load.scenario == "bulk_warm":
        return lambda: rng.randint(1, load.warm_items)
    others = [i for i in range(1, load.items + 1) if i != load.hot_item]
    hot, share = load.hot_item, load.hot_share

    def choose() -> int:
        if not others or rng.random() < share:
            return hot
        return rng.choice(others)

    return choose


# ---- pacing ---------------------------------------------------------------------------
def poisson_schedule(
    load: LoadConfig, client: int, start: float, end: float
) -> Iterator[tuple[float, int]]:
    """Open loop: ``(due, item)`` of one client's sends, Poisson at ``rate / clients``."""
    rng = random.Random(f"{load.seed}:{client}")
    choose = item_chooser(load, rng)
    rate = load.rate / load.clients
    due = start
    while (due := due + rng.expovariate(rate)) < end:
        yield due, choose()


def closed_schedule(
    load: LoadConfig, client: int, end: float, clock: Callable[[], float] = time.time
) -> Iterator[tuple[float, int]]:
    """Closed loop: ``(now, item)`` each time it is resumed (after the last answer), until end.

    ``clock`` is the wall clock in the lab; the simulator passes its simulated clock, so its
    closed loop draws the very items (same seed) and stops at the very rule a lab run does.
    """
    rng = random.Random(f"{load.seed}:{client}")
    choose = item_chooser(load, rng)
    while (now := clock()) < end:
        yield now, choose()


def think_s(load: LoadConfig) -> float:
    """Closed loop: a client's pause between an answer and its next send, s (constant).

    One place for the rule, so the simulator's closed loop thinks as the generator's does.
    """
    return load.think_ms / 1000


# ---- the HTTP client ------------------------------------------------------------------
class _Request:
    """One logical request: its attempts share the client, item and scheduled time."""

    __slots__ = ("attempt", "client", "due", "item", "on_done")

    def __init__(
        self, client: int, item: int, due: float, on_done: Callable[[], None] | None
    ) -> None:
        self.client, self.item, self.due, self.on_done = client, item, due, on_done
        self.attempt = 0


def server_ms(header: str) -> float:
    """The ``app;dur=`` figure of a ``Server-Timing`` header, NaN when absent or malformed."""
    _, found, rest = header.partition("app;dur=")
    try:
        return float(rest.split(",", 1)[0]) if found else math.nan
    except ValueError:
        return math.nan


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection to one pod: one request at a time, no pipelining.

    httptools (llhttp, uvicorn's parser) reads the responses; of their headers only ``X-Cache``
    and ``Server-Timing`` are kept. A body without ``Content-Length`` (or chunking) ends when
    the server closes; the pods always send a length.
    """

    def __init__(self, run: _Run, client: int, pod: int) -> None:
        self.run, self.client, self.pod = run, client, pod
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.request: _Request | None = None
        self.t_send = 0.0
        self.outcome, self.timing = "error", b""
        self.headers_done = self.delimited = self.complete = self.keep_alive = False
        self.idle_since = time.monotonic()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def send(self, request: _Request, payload: bytes, t_send: float) -> None:
        assert self.transport is not None
        self.request, self.t_send = request, t_send
        self.outcome, self.timing = "error", b""
        self.headers_done = self.delimited = self.complete = False
        self.transport.write(payload)
        self.run.watch(self, request, t_send)

    # -- httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"x-cache":
            self.outcome = value.decode("latin-1")
        elif name == b"server-timing":
            self.timing = value
        elif name in (b"content-length", b"transfer-encoding"):
            self.delimited = True

    def on_headers_complete(self) -> None:
        self.headers_done = True
        self.keep_alive = self.parser.should_keep_alive()  # llhttp forgets it once complete

    def on_message_complete(self) -> None:
        self.complete = True

    # -- asyncio callbacks
    def data_received(self, data: bytes) -> None:
        if self.request is None:  # nothing was asked: the stream is garbage, drop it
            self._close()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._fail("protocol")
            return
        if self.complete:
            self._complete(self.keep_alive)

    def connection_lost(self, exc: Exception | None) -> None:
        self.run.forget(self)
        if self.request is None:
            return
        if exc is None and self.headers_done and not self.delimited:
            self._complete(keep_alive=False)  # its body ended when the server closed
        else:
            self._fail("protocol")

    def timed_out(self) -> None:
        self._fail("timeout")

    def _complete(self, keep_alive: bool) -> None:
        request, self.request = self.request, None
        assert request is not None
        if keep_alive:
            self.run.release(self)
        else:
            self._close()
        status, timing = self.parser.get_status_code(), server_ms(self.timing.decode("latin-1"))
        self.run.answered(request, self.pod, self.t_send, status, self.outcome, timing, "")

    def _fail(self, error: str) -> None:
        request, self.request = self.request, None
        self._close()
        if request is not None:
            self.run.answered(request, self.pod, self.t_send, 0, "error", math.nan, error)

    def _close(self) -> None:
        self.run.forget(self)
        if self.transport is not None:
            self.transport.abort()


# ---- one run --------------------------------------------------------------------------
class _Run:
    """The state of one run: connections, the records, and what is still in flight."""

    def __init__(self, pods: Sequence[str], load: LoadConfig, ids: Sequence[int]) -> None:
        self.load, self.ids = load, list(ids)
        self.loop = asyncio.get_running_loop()
        self.addresses = [(u.hostname or "", u.port or 80) for u in map(urlsplit, pods)]
        self.hosts = [urlsplit(p).netloc for p in pods]
        self.payloads: list[dict[int, bytes]] = [{} for _ in pods]
        self.idle = {c: [deque[_Connection]() for _ in pods] for c in self.ids}
        self.connections: set[_Connection] = set()
        self.connecting: set[asyncio.Task[None]] = set()
        self.watching: deque[tuple[float, _Connection, _Request]] = deque()
        self.next_pod = _RoundRobin(len(pods))
        self.backoff_rngs = {c: random.Random(f"{load.seed}:{c}:backoff") for c in self.ids}
        self.rows: list[Row] = []
        self.sent = 0
        self.retired = 0  # idle connections closed before the pod's keep-alive timeout could
        self.opened_mid_run = 0  # a client's connections to a pod were all busy: opened one
        self.outstanding = 0  # logical requests whose last attempt has not been answered
        self.pacers = 0  # open-loop schedules still running
        self.all_done: asyncio.Future[None] | None = None

    # -- connections
    async def open(self, client: int, pod: int) -> _Connection:
        host, port = self.addresses[pod]
        make = lambda: _Connection(self, client, pod)  # noqa: E731
        _, conn = await asyncio.wait_for(
            self.loop.create_connection(make, host, port), self.load.request_timeout_s
        )
        self.connections.add(conn)
        return conn

    async def connect(self) -> None:
        """Open :data:`WARM` connections per client and pod, before the clock starts.

        The first connection to each pod is opened by name (every address it resolves to is
        tried); the others, and any opened mid-run, go to the address that answered, so they
        cost no lookup (compose names the pods ``pod-1``...).
        """
        pods = range(len(self.hosts))
        pairs = [(c, p) for c in self.ids for _ in range(WARM) for p in pods]
        by_name, rest = pairs[: len(pods)], pairs[len(pods) :]  # the first: one to each pod
        try:
            conns = await asyncio.gather(*(self.open(c, p) for c, p in by_name))
            for conn in conns:
                assert conn.transport is not None
                host = conn.transport.get_extra_info("peername")[0]
                self.addresses[conn.pod] = (host, self.addresses[conn.pod][1])
            conns += await asyncio.gather(*(self.open(c, p) for c, p in rest))
        except (OSError, TimeoutError) as exc:
            raise LabError(f"the load generator could not connect to the pods: {exc!r}") from exc
        for conn in conns:
            self.idle[conn.client][conn.pod].append(conn)

    def release(self, conn: _Connection) -> None:
        conn.idle_since = time.monotonic()
        self.idle[conn.client][conn.pod].append(conn)

    def forget(self, conn: _Connection) -> None:
        self.connections.discard(conn)
        with contextlib.suppress(ValueError):
            self.idle[conn.client][conn.pod].remove(conn)

    def close(self) -> None:
        for task in self.connecting:
            task.cancel()
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.abort()

    # -- sending
    def start(self, client: int, item: int, due: float, on_done: Callable[[], None] | None) -> None:
        self.outstanding += 1
        self.send(_Request(client, item, due, on_done))

    def send(self, request: _Request) -> None:
        """Send one attempt now, on an idle connection or a new one: never behind a busy one."""
        self.sent += 1
        pod = self.next_pod()
        payload = self.payloads[pod].get(request.item) or self._payload(pod, request.item)
        idle = self.idle[request.client][pod]
        now = time.monotonic()
        while idle and now - idle[0].idle_since > IDLE_RETIRE_S:
            self.retired += 1  # the pod may be closing it right now: do not race its close
            idle.popleft()._close()
        if idle:
            idle.popleft().send(request, payload, time.time())
            return
        self.opened_mid_run += 1
        task = self.loop.create_task(self._send_on_new(request, pod, payload, time.time()))
        self.connecting.add(task)
        task.add_done_callback(self.connecting.discard)

    async def _send_on_new(self, request: _Request, pod: int, payload: bytes, t0: float) -> None:
        try:
            conn = await self.open(request.client, pod)
        except TimeoutError:
            self.answered(request, pod, t0, 0, "error", math.nan, "timeout")
        except OSError:
            self.answered(request, pod, t0, 0, "error", math.nan, "connect")
        else:
            conn.send(request, payload, t0)  # t_send is when it was due to go: connect counts

    def _payload(self, pod: int, item: int) -> bytes:
        data = f"GET /items/{item} HTTP/1.1\r\nHost: {self.hosts[pod]}\r\n\r\n".encode()
        self.payloads[pod][item] = data
        return data

    def answered(
        self,
        request: _Request,
        pod: int,
        t_send: float,
        status: int,
        outcome: str,
        timing: float,
        error: str,
    ) -> None:
        """Record one attempt; retry it after a backoff, or mark the request done."""
        latency = (time.time() - t_send) * 1000
        self.rows.append(
            (request.client, request.item, pod, request.due, t_send, latency, status, outcome,
             error, request.attempt, timing)
        )  # fmt: skip
        if error in RETRYABLE_ERRORS:
            self.next_pod.failed(pod)
        if retried(status, error, request.attempt, self.load):
            rng = self.backoff_rngs[request.client]
            delay = backoff_s(request.attempt, self.load.backoff_ms, self.load.backoff_cap_ms, rng)
            request.attempt += 1
            self.loop.call_later(delay, self.send, request)
            return
        if request.on_done is not None:
            request.on_done()
        self.outstanding -= 1
        self._check_done()

    # -- timeouts: one sweep, not a timer per request
    def watch(self, conn: _Connection, request: _Request, t_send: float) -> None:
        """Time ``request`` out ``request_timeout_s`` after ``t_send`` (connecting included)."""
        self.watching.append((t_send + self.load.request_timeout_s, conn, request))

    def sweep(self) -> None:
        now = time.time()
        watching = self.watching
        while watching and watching[0][0] <= now:
            _, conn, request = watching.popleft()
            if conn.request is request:
                conn.timed_out()

    async def sweeper(self) -> None:
        every = min(0.1, self.load.request_timeout_s / 20)
        while True:
            await asyncio.sleep(every)
            self.sweep()

    # -- pacing
    async def drive(self, start: float, end: float) -> None:
        await asyncio.sleep(max(0.0, start - time.time()))
        if self.load.scenario == "bulk_warm":
            await self._warm(start)
        if self.load.pacing == "open":
            await self._open_loop(start, end)
        else:
            await asyncio.gather(*(self._closed_loop(c, end) for c in self.ids))

    async def request(self, client: int, item: int, due: float) -> None:
        """Send one request and wait for its last attempt."""
        done = self.loop.create_future()
        self.start(client, item, due, lambda: done.set_result(None))
        await done

    async def _warm(self, start: float) -> None:
        """Bulk warm: every item requested once at t=0, as a deploy's warm-up does."""
        owners = {i: (i - 1) % self.load.clients for i in range(1, self.load.warm_items + 1)}
        mine = set(self.ids)
        await asyncio.gather(*(self.request(c, i, start) for i, c in owners.items() if c in mine))

    async def _open_loop(self, start: float, end: float) -> None:
        self.all_done = self.loop.create_future()
        # Epoch due times to the loop's clock, CLOCK_MONOTONIC in asyncio and uvloop alike (read
        # uncached: uvloop's loop.time() is the millisecond its iteration began). uvloop rounds
        # a timer to the millisecond, so half of one more keeps a send from leaving early.
        offset = time.time() - time.monotonic() - TIMER_SLACK_S
        for client in self.ids:
            self.pacers += 1
            self._arm(client, poisson_schedule(self.load, client, start, end), offset)
        self._check_done()
        await self.all_done

    def _arm(self, client: int, schedule: Iterator[tuple[float, int]], offset: float) -> None:
        for due, item in schedule:
            self.loop.call_at(due - offset, self._fire, client, schedule, offset, due, item)
            return
        self.pacers -= 1
        self._check_done()

    def _fire(
        self,
        client: int,
        schedule: Iterator[tuple[float, int]],
        offset: float,
        due: float,
        item: int,
    ) -> None:
        self.start(client, item, due, None)
        self._arm(client, schedule, offset)

    async def _closed_loop(self, client: int, end: float) -> None:
        for due, item in closed_schedule(self.load, client, end):
            await self.request(client, item, due)
            if pause := think_s(self.load):
                await asyncio.sleep(pause)

    def _check_done(self) -> None:
        done = self.all_done
        if done is not None and not done.done() and not self.pacers and not self.outstanding:
            done.set_result(None)


async def generate_rows(
    pods: Sequence[str],
    load: LoadConfig,
    *,
    clients: Sequence[int] | None = None,
    start_at: Callable[[], Awaitable[float]] | None = None,
    on_tick: Callable[[int], None] | None = None,
    tick_s: float = 0.5,
) -> tuple[list[Row], int, int]:
    """:func:`generate`, with each record as a plain tuple (``RECORD_FIELDS``), and how many
    times a client had to open a connection mid-run because all of its were busy."""
    check_loopback(pods)
    run = _Run(pods, load, range(load.clients) if clients is None else clients)
    try:
        await run.connect()
        with collector_paused():  # its one collection runs before the start is fixed
            start = await start_at() if start_at is not None else time.time() + 0.05
            helpers = [asyncio.create_task(run.sweeper())]
            if on_tick is not None:
                helpers.append(asyncio.create_task(_tick(run, on_tick, tick_s)))
            try:
                await run.drive(start, start + load.duration_s)
            finally:
                for task in helpers:
                    task.cancel()
    finally:
        run.close()
    return run.rows, run.sent, run.opened_mid_run


async def generate(
    pods: Sequence[str],
    load: LoadConfig,
    *,
    clients: Sequence[int] | None = None,
    start_at: Callable[[], Awaitable[float]] | None = None,
    on_tick: Callable[[int], None] | None = None,
) -> tuple[list[Record], int]:
    """Send the load; return the records and how many requests were sent.

    ``clients`` picks which of the ``load.clients`` simulated clients this process drives
    (all by default). ``start_at`` is awaited once every client is connected and returns the
    epoch second the clock starts, so several processes can start together.
    """
    rows, sent, _ = await generate_rows(
        pods, load, clients=clients, start_at=start_at, on_tick=on_tick
    )
    return [Record(*row) for row in rows], sent


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Keep Python's cyclic garbage collector out of the measured window.

    Measured on these machines: with a run's records piling up, a full collection stalled the
    generator's event loop for 60-90 ms (and a middle one up to 15 ms) mid-run, and every
    request in flight counted that stall as latency. ``timeit`` disables the collector while
    timing for the same reason. Reference counting still frees almost everything; the few
    reference cycles wait for the collector to run again after the run.
    """
    was_enabled = gc.isenabled()
    gc.collect()
    gc.freeze()  # what exists now (imports, sessions) is never scanned again
    gc.disable()
    try:
        yield
    finally:
        gc.unfreeze()
        if was_enabled:
            gc.enable()


async def _tick(run: _Run, on_tick: Callable[[int], None], every_s: float) -> None:
    while True:
        await asyncio.sleep(every_s)
        on_tick(run.sent)


def main(argv: Sequence[str] | None = None) -> int:
    """Worker entry point (see :mod:`stampede.workers`): ``--pods URL... --config JSON --out FILE``.

    The configuration arrives validated (``LoadConfig.model_dump_json``), so it is read as
    plain attributes: the worker imports neither pydantic nor the package's notebook API
    (about a second of CPU, see :mod:`stampede.workers`). It prints one
    ``{"ready": true}`` line once connected, reads the start time from stdin, then writes
    nothing more to stdout; progress (requests sent) goes to ``--progress`` every
    ``--progress-every`` seconds, rewritten in place.
    """
    args = _arguments(argv)
    load = cast("LoadConfig", SimpleNamespace(**json.loads(args.config)))
    first, stop = (int(x) for x in args.clients.split(":")) if args.clients else (0, load.clients)
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()

    async def start_at() -> float:
        """Say we are connected, then read the shared start time from the runner."""
        print(json.dumps({"ready": True}), flush=True)
        line = await asyncio.to_thread(sys.stdin.readline)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nobody reads it now
        return float(json.loads(line)["start"])

    with _progress_file(args.progress) as tick:
        rows, sent, opened = asyncio.run(
            generate_rows(
                args.pods, load, clients=range(first, stop), start_at=start_at, on_tick=tick,
                tick_s=args.progress_every,
            )
        )  # fmt: skip
    payload = {"sent": sent, "opened_mid_run": opened, "fields": RECORD_FIELDS, "records": rows}
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload))
    tmp.replace(args.out)
    return 0


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="stampede load worker", description=main.__doc__)
    parser.add_argument("--pods", nargs="+", required=True)
    parser.add_argument("--config", required=True, help="LoadConfig as JSON")
    parser.add_argument("--clients", default=None, help="first:stop range of client ids")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--progress", type=Path, default=None, help="file: requests sent so far")
    parser.add_argument("--progress-every", type=float, default=0.5, help="seconds")
    return parser.parse_args(argv)


@contextlib.contextmanager
def _progress_file(path: Path | None) -> Iterator[Callable[[int], None] | None]:
    """A tick that rewrites ``path`` in place with the count (one ``pwrite``), or None."""
    if path is None:
        yield None
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)

    def tick(n: int) -> None:
        os.pwrite(fd, b"%20d\n" % n, 0)

    try:
        yield tick
    finally:
        os.close(fd)


if __name__ == "__main__":
    sys.exit(main())
