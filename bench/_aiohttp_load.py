"""The load generator as it was before the lean client (commit 13031be), for bench/generator.py.

A frozen copy, run as a script (``python bench/_aiohttp_load.py --pods ... --out ...``) so the
bench can put the old aiohttp worker beside the new one on the same lab, start-up included (it
imports the package's notebook API, as ``python -m stampede.load`` did). Not used by the
package; do not import it from there.
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
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import astuple, dataclass, fields
from ipaddress import ip_address
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

from stampede.config import LoadConfig
from stampede.errors import ConfigError

__all__ = [
    "COOL_OFF_S",
    "RECORD_FIELDS",
    "Record",
    "backoff_s",
    "check_loopback",
    "collector_paused",
    "generate",
    "item_chooser",
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
RETRYABLE_ERRORS = {"connect", "protocol"}  # GET is idempotent: a dropped one is safe to resend


def backoff_s(attempt: int, base_ms: float, cap_ms: float, rng: random.Random) -> float:
    """Full-jitter exponential backoff before retry ``attempt`` (0-based): U(0, min(cap, b*2^n)).

    "Full jitter" (AWS Architecture Blog, "Exponential Backoff and Jitter") spreads retries of
    clients that failed together, so a 503 burst does not come back as a synchronized burst.
    The server's ``Retry-After`` (1 s) is not awaited: it is coarser than the backoff base.
    """
    return rng.uniform(0.0, min(cap_ms, base_ms * 2**attempt)) / 1000


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
    check_loopback(pods)
    ids = list(range(load.clients) if clients is None else clients)
    records: list[Record] = []
    tally = _Tally()
    next_pod = _RoundRobin(len(pods))
    backoff_rngs = {c: random.Random(f"{load.seed}:{c}:backoff") for c in ids}
    timeout = aiohttp.ClientTimeout(total=load.request_timeout_s)
    sessions = [
        aiohttp.ClientSession(
            timeout=timeout,
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=3600),
            skip_auto_headers=("User-Agent",),
        )
        for _ in ids
    ]
    try:
        # Open WARM_CONNECTIONS connections per client and pod before the clock starts:
        # opening one mid-run costs CPU just when a stampede makes requests overlap.
        await asyncio.gather(
            *(_fetch(s, f"{p}/health") for s in sessions for p in pods for _ in range(WARM))
        )
        start = await start_at() if start_at is not None else time.time() + 0.05
        end = start + load.duration_s

        async def request(
            session: aiohttp.ClientSession, client: int, item: int, due: float
        ) -> None:
            for attempt in range(load.retries + 1):
                if attempt:
                    rng = backoff_rngs[client]
                    await asyncio.sleep(
                        backoff_s(attempt - 1, load.backoff_ms, load.backoff_cap_ms, rng)
                    )
                record = await send(session, client, item, due, attempt)
                if record.status != 503 and record.error not in RETRYABLE_ERRORS:
                    return

        async def send(
            session: aiohttp.ClientSession, client: int, item: int, due: float, attempt: int
        ) -> Record:
            pod = next_pod()
            tally.sent += 1
            t_send = time.time()
            status, outcome, error, on_server = 0, "error", "", math.nan
            try:
                status, outcome, on_server = await _fetch(session, f"{pods[pod]}/items/{item}")
            except TimeoutError:
                error = "timeout"
            except aiohttp.ClientConnectionError as exc:
                error = "connect" if isinstance(exc, aiohttp.ClientConnectorError) else "protocol"
            except aiohttp.ClientError:
                error = "protocol"
            finally:
                latency = (time.time() - t_send) * 1000
                record = Record(
                    client,
                    item,
                    pod,
                    due,
                    t_send,
                    latency,
                    status,
                    outcome,
                    error,
                    attempt,
                    on_server,
                )
                records.append(record)
                if error in RETRYABLE_ERRORS:
                    next_pod.failed(pod)
            return record

        async def open_loop(session: aiohttp.ClientSession, client: int) -> None:
            rng = random.Random(f"{load.seed}:{client}")
            choose = item_chooser(load, rng)
            rate = load.rate / load.clients
            inflight: set[asyncio.Task[None]] = set()
            due = start
            while True:
                due += rng.expovariate(rate)
                if due >= end:
                    break
                await asyncio.sleep(max(0.0, due - time.time()))
                task = asyncio.create_task(request(session, client, choose(), due))
                inflight.add(task)
                task.add_done_callback(inflight.discard)
            await asyncio.gather(*inflight)

        async def closed_loop(session: aiohttp.ClientSession, client: int) -> None:
            rng = random.Random(f"{load.seed}:{client}")
            choose = item_chooser(load, rng)
            while (now := time.time()) < end:
                await request(session, client, choose(), now)
                if load.think_ms:
                    await asyncio.sleep(load.think_ms / 1000)

        async def warm() -> None:
            """Bulk warm: every item requested once at t=0, as a deploy's warm-up does."""
            by_client = dict(zip(ids, sessions, strict=True))
            owners = {i: (i - 1) % load.clients for i in range(1, load.warm_items + 1)}
            await asyncio.gather(
                *(request(by_client[c], c, i, start) for i, c in owners.items() if c in by_client)
            )

        with collector_paused():  # its one collection runs before the clock, not on it
            await asyncio.sleep(max(0.0, start - time.time()))
            loop = open_loop if load.pacing == "open" else closed_loop
            ticker = asyncio.create_task(_tick(tally, on_tick)) if on_tick else None
            try:
                if load.scenario == "bulk_warm":
                    await warm()
                await asyncio.gather(*(loop(s, c) for s, c in zip(sessions, ids, strict=True)))
            finally:
                if ticker is not None:
                    ticker.cancel()
    finally:
        await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)
    return records, tally.sent


async def _fetch(session: aiohttp.ClientSession, url: str) -> tuple[int, str, float]:
    async with session.get(url) as resp:
        await resp.read()
        timing = resp.headers.get("Server-Timing", "")
        return resp.status, resp.headers.get("X-Cache", "error"), server_ms(timing)


def server_ms(header: str) -> float:
    """The ``app;dur=`` figure of a ``Server-Timing`` header, NaN when absent or malformed."""
    _, found, rest = header.partition("app;dur=")
    try:
        return float(rest.split(",", 1)[0]) if found else math.nan
    except ValueError:
        return math.nan


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


class _Tally:
    """Requests sent so far: every one of them must come back as a record."""

    sent = 0


async def _tick(tally: _Tally, on_tick: Callable[[int], None]) -> None:
    while True:
        await asyncio.sleep(0.5)
        on_tick(tally.sent)


def main(argv: Sequence[str] | None = None) -> int:
    """Worker entry point: ``python -m stampede.load --pods URL... --config JSON --out FILE``."""
    parser = argparse.ArgumentParser(prog="python -m stampede.load", description=main.__doc__)
    parser.add_argument("--pods", nargs="+", required=True)
    parser.add_argument("--config", required=True, help="LoadConfig as JSON")
    parser.add_argument("--clients", default=None, help="first:stop range of client ids")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    load = LoadConfig.model_validate_json(args.config)
    ids = None
    if args.clients:
        first, stop = (int(x) for x in args.clients.split(":"))
        ids = range(first, stop)
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()

    def tick(n: int) -> None:
        print(json.dumps({"sent": n}), flush=True)

    async def start_at() -> float:
        """Say we are connected, then read the shared start time from the runner."""
        print(json.dumps({"ready": True}), flush=True)
        line = await asyncio.to_thread(sys.stdin.readline)
        return float(json.loads(line)["start"])

    records, sent = asyncio.run(
        generate(args.pods, load, clients=ids, start_at=start_at, on_tick=tick)
    )
    payload = {"sent": sent, "fields": RECORD_FIELDS, "records": [astuple(r) for r in records]}
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload))
    tmp.replace(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
