"""The slow origin: a SQLite file read through aiosqlite, with latency injected per read.

The file is generated deterministically by :func:`build_origin`, so a fresh clone makes the
same 100 products. Pods open it read-only (``mode=ro``). Every read is logged with its start,
end, item and outcome, so a run's origin count is exact across all pods: the numbers the book
teaches are counted, never estimated. A read is known from the moment it starts:
:meth:`Origin.log` lists the reads still in flight too (``end`` is ``None``), so a log taken
while a background refresh is still reading misses nothing.
"""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
import time
from dataclasses import dataclass, fields
from pathlib import Path

import aiosqlite

from stampede.envelope import json_bytes
from stampede.errors import ItemNotFound, OriginError

__all__ = ["READ_FIELDS", "READ_TYPES", "Origin", "OriginRead", "build_origin", "ensure_origin"]

SCHEMA = """
CREATE TABLE items (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    category TEXT NOT NULL,
    price_cents INTEGER NOT NULL,
    stock INTEGER NOT NULL,
    rating REAL NOT NULL,
    description TEXT NOT NULL
)
"""
_ADJECTIVES = ["Compact", "Heavy-duty", "Quiet", "Solar", "Foldable", "Smart", "Classic", "Pro"]
_NOUNS = ["Kettle", "Lamp", "Backpack", "Router", "Blender", "Tent", "Drill", "Speaker"]
_CATEGORIES = ["kitchen", "outdoor", "tools", "electronics", "home"]


def build_origin(path: Path, items: int = 100, seed: int = 1) -> Path:
    """Write a fresh origin with ``items`` products; the same seed gives the same bytes."""
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.unlink(missing_ok=True)
    with sqlite3.connect(tmp) as db:
        db.execute(SCHEMA)
        for item in range(1, items + 1):
            name = f"{rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)} {item:03d}"
            db.execute(
                "INSERT INTO items VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    item,
                    name,
                    rng.choice(_CATEGORIES),
                    rng.randrange(499, 49_999),
                    rng.randrange(0, 500),
                    round(rng.uniform(2.5, 5.0), 1),
                    f"{name}: a sample product for the stampede lab.",
                ),
            )
    db.close()
    os.replace(tmp, path)  # atomic: a pod never opens a half-written file
    return path


def ensure_origin(path: Path, items: int = 100) -> Path:
    """Build the origin unless a file with at least ``items`` rows is already there."""
    if path.exists():
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            (count,) = db.execute("SELECT count(*) FROM items").fetchone()
        db.close()
        if count >= items:
            return path
    return build_origin(path, items)


@dataclass(frozen=True, slots=True)
class OriginRead:
    """One SELECT against the origin, as the pod saw it (epoch seconds).

    ``end`` is ``None`` (and ``ok`` ``False``) while the read is still in flight.
    ``fail_open`` marks a read the pod made around a Redis it could not reach (bounded by
    ``fail_open_concurrency``), not through its strategy.
    """

    start: float
    end: float | None
    item: int
    ok: bool
    fail_open: bool = False

    @property
    def in_flight(self) -> bool:
        return self.end is None


# A run's ``reads`` frame (the runner's and the simulator's): one row per OriginRead, and its pod
READ_FIELDS = [*(f.name for f in fields(OriginRead)), "pod"]
READ_TYPES = {"start": float, "end": float, "item": int, "ok": bool, "fail_open": bool}


class Origin:
    """Read-only access to the origin with injected latency and an exact read log."""

    def __init__(self, path: Path, latency_s: float = 0.2, error_rate: float = 0.0) -> None:
        self.path = path
        self.latency_s = latency_s
        self.error_rate = error_rate  # injected failures, for the fault chapter and tests
        self.slow_rate = 0.0  # share of reads that take ``slow_s`` longer (a slow origin)
        self.slow_s = 0.0
        self.timeout_s: float | None = None  # give up on a read after this: OriginError
        self.rng = random.Random()
        self.reads: list[OriginRead] = []  # finished reads, in the order they ended
        self._in_flight: dict[int, OriginRead] = {}  # started, not ended yet, by a serial number
        self._serial = 0
        self._db: aiosqlite.Connection | None = None

    def log(self) -> list[OriginRead]:
        """Every read since the last :meth:`clear`: the finished ones, then those in flight."""
        return [*self.reads, *self._in_flight.values()]

    def clear(self) -> None:
        """Start a new log; a read in flight now belongs to the old one and is not logged."""
        self.reads.clear()
        self._in_flight.clear()

    async def open(self) -> None:
        if not self.path.exists():
            raise OriginError(f"origin file {self.path} does not exist")
        self._db = await aiosqlite.connect(f"file:{self.path}?mode=ro", uri=True)
        self._db.row_factory = aiosqlite.Row

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def read(self, item: int, *, fail_open: bool = False) -> bytes:
        """One slow SELECT: the row as JSON bytes, or :class:`ItemNotFound`, :class:`OriginError`.

        With ``timeout_s`` set, a read that takes longer is abandoned and raises
        :class:`OriginError` (logged as a failed read), as a pod's database client would.
        ``fail_open`` tags the read in the log (see :class:`OriginRead`).
        """
        if self.timeout_s is None:
            return await self._read(item, fail_open)
        try:
            return await asyncio.wait_for(self._read(item, fail_open), self.timeout_s)
        except TimeoutError:
            raise OriginError(
                f"origin read of item {item} timed out after {self.timeout_s:g} s"
            ) from None

    async def _read(self, item: int, fail_open: bool) -> bytes:
        if self._db is None:
            raise OriginError("origin is not open")
        start = time.time()
        ok = False
        self._serial += 1
        serial = self._serial
        self._in_flight[serial] = OriginRead(start, None, item, False, fail_open)
        try:
            delay = self.latency_s
            if self.slow_rate and self.rng.random() < self.slow_rate:
                delay += self.slow_s  # an injected slow query
            await asyncio.sleep(delay)  # the slow query the cache exists to avoid
            if self.error_rate and self.rng.random() < self.error_rate:
                raise OriginError(f"origin read of item {item} failed (injected fault)")
            async with self._db.execute("SELECT * FROM items WHERE id = ?", (item,)) as cur:
                row = await cur.fetchone()
            if row is None:
                raise ItemNotFound(f"item {item} does not exist")
            ok = True
            return json_bytes(dict(row))
        except sqlite3.Error as exc:
            raise OriginError(f"origin read of item {item} failed: {exc}") from exc
        finally:
            if self._in_flight.pop(serial, None) is not None:  # not cleared meanwhile
                self.reads.append(OriginRead(start, time.time(), item, ok, fail_open))


if __name__ == "__main__":  # `python -m stampede.origin [PATH] [--items N]`: before compose up
    import argparse

    from stampede import paths

    cli = argparse.ArgumentParser(
        prog="python -m stampede.origin", description=build_origin.__doc__
    )
    cli.add_argument("path", nargs="?", type=Path, help="default: the lab's data/origin.sqlite3")
    cli.add_argument("--items", type=int, default=100)
    args = cli.parse_args()
    print(build_origin(args.path or paths.origin_path(), args.items))
