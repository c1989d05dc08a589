"""The generator's HTTP client against real sockets: what it reads, and each error's name.

A tiny asyncio server on 127.0.0.1 answers every request with whatever the test scripts; the
generator runs against it as against a pod. Records keep the lab's error vocabulary: "" for an
answer, "connect" for a refused connection, "protocol" for a dropped or garbled one,
"timeout"; ``status`` 0 and outcome "error" whenever no response came back.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from stampede.config import LoadConfig
from stampede.load import WARM, Record, generate, generate_rows

Answer = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[bool]]

HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\nX-Cache: %s\r\nServer-Timing: app;dur=%s\r\n\r\n"


class Server:
    """Reads request heads and runs ``answer`` for each; ``answer`` returns False to hang up."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []
        self.requests = 0

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                self.requests += 1
                if not await self.answer(reader, writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        """Stop listening and drop every connection: the port now refuses."""
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.transport.abort()
        await self.server.wait_closed()


Serve = Callable[[Answer], Awaitable[Server]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    servers: list[Server] = []

    async def start(answer: Answer) -> Server:
        server = Server(answer)
        server.server = await asyncio.start_server(server.handle, "127.0.0.1", 0)
        servers.append(server)
        return server

    yield start
    for server in servers:
        if server.server is not None and server.server.is_serving():
            await server.stop()


def answer_with(*parts: bytes, pause_s: float = 0.0, then_close: bool = False) -> Answer:
    async def answer(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        for part in parts:
            writer.write(part)
            await writer.drain()
            if pause_s:
                await asyncio.sleep(pause_s)
        return not then_close

    return answer


LOAD = LoadConfig(duration_s=0.4, rate=10, clients=1, request_timeout_s=2, items=3)


async def records_from(server: Server, load: LoadConfig = LOAD) -> list[Record]:
    records, sent = await generate([server.url], load)
    assert len(records) == sent > 0
    return records


async def test_a_body_split_over_several_reads_is_one_answer(serve: Serve) -> None:
    body = b'{"id": 1, "padding": "' + b"x" * 3000 + b'"}'
    head = HEAD % (len(body), b"hit", b"0.75")
    pieces = [head[:7], head[7:], body[:10], body[10:2000], body[2000:]]
    server = await serve(answer_with(*pieces, pause_s=0.005))
    records = await records_from(server)
    assert all(r.status == 200 and r.error == "" and r.outcome == "hit" for r in records)
    assert all(r.server_ms == 0.75 for r in records)
    assert len(server.writers) == WARM  # keep-alive: every request on a warm connection


async def test_missing_headers_are_no_outcome_and_no_server_time(serve: Serve) -> None:
    server = await serve(answer_with(b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n{}"))
    records = await records_from(server)
    assert all(r.status == 404 and r.error == "" and r.outcome == "error" for r in records)
    assert all(math.isnan(r.server_ms) for r in records)


async def test_a_body_without_length_ends_when_the_server_closes(
    serve: Serve,
) -> None:
    server = await serve(
        answer_with(b"HTTP/1.1 200 OK\r\nX-Cache: miss\r\n\r\n", b"{}", then_close=True)
    )
    records = await records_from(server)
    assert all(r.status == 200 and r.error == "" and r.outcome == "miss" for r in records)


@pytest.mark.parametrize(
    "garbage",
    [b"HTTX/1.1 200 OK\r\n\r\n", b"HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n",
     b"hello\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: nine\r\n\r\n"],
)  # fmt: skip
async def test_a_garbled_response_is_a_protocol_error(serve: Serve, garbage: bytes) -> None:
    server = await serve(answer_with(garbage))
    records = await records_from(server)
    assert all(r.error == "protocol" and r.status == 0 and r.outcome == "error" for r in records)


async def test_a_server_that_closes_mid_response_is_a_protocol_error(
    serve: Serve,
) -> None:
    head = HEAD % (100, b"hit", b"1")
    server = await serve(answer_with(head, b'{"id": 1', then_close=True))
    records = await records_from(server)
    assert all(r.error == "protocol" and r.status == 0 for r in records)


async def test_a_refused_port_is_a_connect_error(serve: Serve) -> None:
    server = await serve(answer_with(HEAD % (2, b"hit", b"1") + b"{}"))

    async def stop_then_start() -> float:
        await server.stop()  # warm connections dropped, and the port now refuses
        await asyncio.sleep(0.05)
        return time.time()

    load = LOAD.model_copy(update={"retries": 2, "backoff_ms": 1})
    records, sent = await generate([server.url], load, start_at=stop_then_start)
    assert len(records) == sent > 0
    assert all(r.error == "connect" and r.status == 0 and r.outcome == "error" for r in records)
    assert {r.attempt for r in records} == {0, 1, 2}  # a refused connect is retried


async def test_no_answer_is_a_timeout_and_is_not_retried(serve: Serve) -> None:
    async def never(reader: asyncio.StreamReader, _: asyncio.StreamWriter) -> bool:
        await reader.read()  # until the client gives up and closes
        return False

    server = await serve(never)
    load = LOAD.model_copy(update={"request_timeout_s": 0.2, "retries": 2})
    records = await records_from(server, load)
    assert all(r.error == "timeout" and r.status == 0 and r.outcome == "error" for r in records)
    assert all(r.attempt == 0 for r in records)
    assert all(200 <= r.latency_ms < 2000 for r in records)


async def test_busy_connections_open_new_ones_instead_of_queueing(
    serve: Serve,
) -> None:
    server = await serve(answer_with(HEAD % (2, b"hit", b"1") + b"{}", pause_s=0.0))

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(0.3)
        return await answer_with(HEAD % (2, b"hit", b"300") + b"{}")(reader, writer)

    server.answer = slow
    load = LOAD.model_copy(update={"rate": 40, "duration_s": 0.5})
    rows, sent, opened = await generate_rows([server.url], load)
    assert len(rows) == sent > WARM
    assert opened > 0 and len(server.writers) == WARM + opened
    spans = [(row[4], row[4] + row[5] / 1000) for row in rows]  # (t_send, answered)
    overlap = max(sum(s <= t < e for s, e in spans) for t, _ in spans)
    assert overlap > WARM  # more in flight than warm connections: none waited for one
    assert all(row[8] == "" and row[6] == 200 for row in rows)


OK = HEAD % (2, b"hit", b"1") + b"{}"


async def test_closed_loop_sends_each_clients_next_request_after_its_last_answer(
    serve: Serve,
) -> None:
    server = await serve(answer_with(OK))
    load = LOAD.model_copy(update={"pacing": "closed", "clients": 2, "duration_s": 1.0})
    records = await records_from(server, load)
    for client in (0, 1):
        mine = sorted((r for r in records if r.client == client), key=lambda r: r.t_send)
        assert len(mine) > 2
        for before, after in itertools.pairwise(mine):
            assert after.t_send >= before.t_send + before.latency_ms / 1000 - 1e-6  # float epoch
        assert all(r.t_send >= r.t_sched for r in mine)


async def test_bulk_warm_asks_every_warm_item_once_at_the_start(serve: Serve) -> None:
    server = await serve(answer_with(OK))
    load = LOAD.model_copy(
        update={"scenario": "bulk_warm", "warm_items": 10, "clients": 3, "rate": 1}
    )
    records = await records_from(server, load)
    start = min(r.t_sched for r in records)
    at_start = [r for r in records if r.t_sched == start]
    assert sorted(r.item for r in at_start) == list(range(1, 11))
    assert all(r.client == (r.item - 1) % 3 for r in at_start)


async def test_a_503_is_retried_after_a_backoff_then_recorded_per_attempt(serve: Serve) -> None:
    busy = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 2\r\nX-Cache: error\r\n\r\n{}"
    server = await serve(answer_with(busy))
    load = LOAD.model_copy(update={"retries": 2, "backoff_ms": 5, "duration_s": 0.2})
    records = await records_from(server, load)
    assert all(r.status == 503 and r.error == "" and r.outcome == "error" for r in records)
    by_request: dict[tuple[int, float], list[Record]] = {}
    for r in records:
        by_request.setdefault((r.client, r.t_sched), []).append(r)
    for attempts in by_request.values():
        attempts.sort(key=lambda r: r.attempt)
        assert [r.attempt for r in attempts] == [0, 1, 2]
        for before, after in itertools.pairwise(attempts):
            assert after.t_send >= before.t_send + before.latency_ms / 1000 - 1e-6  # float epoch


async def test_a_connection_idle_past_the_retire_age_is_closed_not_reused(
    serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a pod closes an idle keep-alive connection after its timeout; a request sent on it as it
    # does fails, so the generator retires old idle connections and opens a fresh one
    monkeypatch.setattr("stampede.load.IDLE_RETIRE_S", 0.05)
    server = await serve(answer_with(OK))
    load = LOAD.model_copy(update={"rate": 5, "duration_s": 1.0})
    rows, sent, opened = await generate_rows([server.url], load)
    assert sent > 1 and opened >= 1  # the warm connections had gone stale: new ones opened
    assert len(server.writers) == WARM + opened
    assert all(row[8] == "" and row[6] == 200 for row in rows)
