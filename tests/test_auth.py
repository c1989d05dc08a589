"""The lab secret and the Host rule as pure functions; the real pods' checks are in test_pod.py."""

from __future__ import annotations

import pytest

from stampede import auth


def test_a_new_secret_is_long_random_and_url_safe() -> None:
    first, second = auth.new_secret(), auth.new_secret()
    assert first != second and len(first) >= 40
    assert auth.redis_url("127.0.0.1", 6379, first) == f"redis://:{first}@127.0.0.1:6379/0"


@pytest.mark.parametrize(
    ("header", "secret", "ok"),
    [
        (b"Bearer s3cret", b"s3cret", True),
        (b"bearer s3cret", b"s3cret", True),
        (b"Bearer s3cret ", b"s3cret", True),
        (b"Bearer s3cre", b"s3cret", False),
        (b"Bearer s3cretX", b"s3cret", False),
        (b"Basic s3cret", b"s3cret", False),
        (b"s3cret", b"s3cret", False),
        (None, b"s3cret", False),
        (b"Bearer ", b"", False),  # a pod without a secret is closed, not open
        (b"", b"", False),
    ],
)
def test_bearer_matches(header: bytes | None, secret: bytes, ok: bool) -> None:
    assert auth.bearer_matches(header, secret) is ok


def test_urls_carry_and_hide_the_password() -> None:
    url = auth.redis_url("redis", 6379, "a/b@c", db=2)
    assert auth.url_password(url) == "a/b@c"
    assert auth.redacted(url) == "redis://:***@redis:6379/2"
    assert auth.anonymous(url) == "redis://redis:6379/2"
    assert auth.url_password("redis://127.0.0.1:1/0") is None
    assert auth.redacted("redis://127.0.0.1:1/0") == "redis://127.0.0.1:1/0"
    assert auth.redis_url("h", 1, None) == "redis://h:1/0"


NAMES = auth.host_names(" pod-1, Proxy.Example:8443 ,,")


@pytest.mark.parametrize(
    ("host", "ok"),
    [
        (b"127.0.0.1:8000", True),
        (b"localhost:8000", True),
        (b"LocalHost:8000", True),
        (b"[::1]:8000", True),
        (b"127.0.0.1:8001", False),  # another port: not this pod
        (b"127.0.0.1", False),
        (b"[::1]", False),
        (b"pod-1", True),
        (b"pod-1:8000", True),
        (b"pod-1:1234", True),  # a name without a port admits any port
        (b"proxy.example:8443", True),
        (b"proxy.example:8444", False),
        (b"proxy.example", False),
        (b"evil.example:8000", False),
        (b"127.0.0.1.evil.example:8000", False),
        (b"", False),
        (b" ", False),
    ],
)
def test_admits_host(host: bytes, ok: bool) -> None:
    assert {b"pod-1", b"proxy.example:8443"} == NAMES
    assert auth.admits_host(host, 8000, NAMES) is ok


def test_without_a_known_port_only_named_hosts_are_admitted() -> None:
    assert not auth.admits_host(b"127.0.0.1:8000", None, frozenset())
    assert auth.admits_host(b"pod-1:8000", None, NAMES)
