"""The lab's secret and who may reach the pods: one place for the control plane's checks.

One secret per lab (:func:`new_secret`, made when ``Lab.embedded()`` or ``stampede lab up``
starts the processes) does three jobs: it is the bearer token every ``/admin`` call must carry
(:func:`bearer_matches`), the ``requirepass`` of the lab's Redis, and the password in every
Redis URL the package builds (:func:`redis_url`). The pods receive it in their environment as
:data:`SECRET_ENV`; a notebook attached to a running lab reads it from there too. Why, and
what it does not protect against: the threat model in :mod:`stampede.pod`.

:func:`host_names` and :func:`admits_host` decide which ``Host`` headers a pod answers: its
own loopback addresses and the names in ``STAMPEDE_ALLOWED_HOSTS``. Everything here is pure
(no environment read, no I/O), so the pod's per-request check stays a set lookup.
"""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import quote, unquote, urlsplit, urlunsplit

__all__ = [
    "ALLOWED_HOSTS_ENV",
    "SECRET_ENV",
    "admits_host",
    "anonymous",
    "bearer_matches",
    "client_url",
    "cluster_url",
    "host_names",
    "is_cluster_url",
    "new_secret",
    "redacted",
    "redis_url",
    "url_password",
]

SECRET_ENV = "STAMPEDE_LAB_SECRET"
ALLOWED_HOSTS_ENV = "STAMPEDE_ALLOWED_HOSTS"
LOOPBACK_NAMES = (b"127.0.0.1", b"localhost", b"[::1]")
_BEARER = b"bearer "
CLUSTER_SCHEME = "redis-cluster"  # a URL that names one node of a Redis Cluster


def new_secret() -> str:
    """A fresh lab secret: 32 random bytes, URL-safe (it goes into Redis URLs unquoted)."""
    return secrets.token_urlsafe(32)


def bearer_matches(authorization: bytes | None, secret: bytes) -> bool:
    """Whether an ``Authorization`` header value is ``Bearer <secret>``, in constant time.

    An empty ``secret`` (a pod started without :data:`SECRET_ENV`) matches nothing: the
    control plane is closed, never open, when the secret is missing.
    """
    if not secret or authorization is None or authorization[:7].lower() != _BEARER:
        return False
    return hmac.compare_digest(authorization[7:].strip(), secret)


def redis_url(host: str, port: int, secret: str | None, db: int = 0) -> str:
    """``redis://:<secret>@host:port/db``, the form every client of a lab Redis uses."""
    auth = f":{quote(secret, safe='')}@" if secret else ""
    return f"redis://{auth}{host}:{port}/{db}"


def cluster_url(host: str, port: int, secret: str | None) -> str:
    """``redis-cluster://:<secret>@host:port/0``: one node of a cluster, which names the rest.

    The scheme is the one setting that tells the pods, the lab and the runner to speak the
    cluster protocol (slot routing, ``MOVED``, sharded pub/sub); redis-py itself takes the
    same URL with ``redis://`` (:func:`client_url`).
    """
    return CLUSTER_SCHEME + redis_url(host, port, secret).removeprefix("redis")


def is_cluster_url(url: str) -> bool:
    return urlsplit(url).scheme == CLUSTER_SCHEME


def client_url(url: str) -> str:
    """The URL as redis-py's clients take it: a cluster URL's scheme becomes ``redis``."""
    return "redis" + url.removeprefix(CLUSTER_SCHEME) if is_cluster_url(url) else url


def url_password(url: str) -> str | None:
    """The password a Redis URL carries, decoded; ``None`` without one."""
    password = urlsplit(url).password
    return None if password is None else unquote(password)


def anonymous(url: str) -> str:
    """``url`` without its user and password: the client a lab's Redis must refuse."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1]))


def redacted(url: str) -> str:
    """``url`` with its password replaced by ``***``, for messages and ``repr``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def host_names(setting: str) -> frozenset[bytes]:
    """``STAMPEDE_ALLOWED_HOSTS`` (comma-separated) as lower-case names.

    An entry ``name`` admits that name on any port (``pod-1`` for ``pod-1:8000``, or a
    published ``127.0.0.1:18001`` when the entry is ``127.0.0.1``); ``name:port`` admits that
    one address only.
    """
    return frozenset(h.strip().lower().encode() for h in setting.split(",") if h.strip())


def admits_host(host: bytes, own_port: int | None, names: frozenset[bytes]) -> bool:
    """Whether a request's ``Host`` header is one of this pod's addresses.

    Admitted: ``127.0.0.1``, ``localhost`` or ``[::1]`` with the port the pod listens on
    (``own_port``), and whatever :func:`host_names` made of the setting. Anything else, an
    empty or missing ``Host`` included, is refused: that is what stops DNS rebinding, where a
    page of another site reaches 127.0.0.1 under its own name.
    """
    host = host.strip().lower()
    if not host:
        return False
    if host in names:
        return True
    name, sep, port = host.rpartition(b":")
    if not sep or name.endswith(b":") or not port.isdigit():  # no port (or a bare IPv6)
        name, port = host, b""
    if name in names:
        return True
    return name in LOOPBACK_NAMES and own_port is not None and port == b"%d" % own_port
