"""Nothing the lab starts is reachable from outside this machine, and the origin is read-only."""

from __future__ import annotations

import json
import socket
import sqlite3
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from stampede import paths
from stampede.lab import Lab
from stampede.origin import Origin, ensure_origin

LISTEN = "0A"


def listeners() -> dict[int, set[str]]:
    """Listening TCP sockets from /proc/net/tcp{,6}: port -> local addresses (hex)."""
    found: dict[int, set[str]] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            address, port = fields[1].split(":")
            if fields[3] == LISTEN:
                found.setdefault(int(port, 16), set()).add(address)
    return found


def lab_ports(lab: Lab) -> list[int]:
    urls = [*lab.pods, lab.redis_url]
    return [int(urlsplit(u).port or 0) for u in urls]


def test_every_lab_listener_binds_loopback_only(lab: Lab) -> None:
    table = listeners()
    for port in lab_ports(lab):
        assert port in table, f"nothing listens on lab port {port}"
        assert table[port] == {"0100007F"}, f"port {port} listens on {table[port]}"


def test_a_non_loopback_address_is_refused(lab: Lab) -> None:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))  # TEST-NET-1: no packet is sent, only a route lookup
        address = probe.getsockname()[0]
    except OSError:
        pytest.skip("this machine has no non-loopback IPv4 address")
    finally:
        probe.close()
    if address.startswith("127."):
        pytest.skip("this machine has no non-loopback IPv4 address")
    for port in lab_ports(lab):
        with pytest.raises(OSError), socket.create_connection((address, port), timeout=1):
            pass


async def test_the_origin_is_opened_read_only() -> None:
    origin = Origin(ensure_origin(paths.origin_path()), latency_s=0)
    await origin.open()
    try:
        assert origin._db is not None
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            await origin._db.execute("UPDATE items SET stock = 0 WHERE id = 1")
        assert json.loads(await origin.read(1))["id"] == 1
    finally:
        await origin.close()
