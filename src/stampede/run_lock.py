"""The run lock: one load run at a time where two runs would measure each other.

Two runs on the same cores measure each other, so :func:`stampede.run` holds this lock from
before its lab starts until its result is saved. The holder writes who it is into the lock
file (user, host, PID, strategy, when it started, how long it expects to take). A run that
finds the lock taken starts nothing: it says who holds it and for about how long (a line on
stderr, and on its progress bar if it has one), tries again every :data:`POLL_S` with a
non-blocking ``flock``, and gives up with :class:`~stampede.errors.RunLockTimeout`, naming the
holder, after ``STAMPEDE_RUN_LOCK_TIMEOUT_S`` (default :data:`DEFAULT_TIMEOUT_S`).

The scope is one setting, ``STAMPEDE_RUN_LOCK_SCOPE``:

- ``machine`` (the default): one file in the temporary directory, shared by every user of the
  machine and writable by all of them; for laptops and a single-machine hub, where every
  student's run shares the same cores.
- ``user``: a file in the user's own directory (``$XDG_RUNTIME_DIR``, else ``~/.cache``), so
  only one user's own runs queue; for hubs whose users each have their own cores (a container
  or cgroup per user) but see one ``/tmp``. A container with its own ``/tmp`` is already
  separate under ``machine``.

What it does not do: it is not fair (whichever waiter polls first after a release wins, not
the one that waited longest), and it orders only runs that take it; other work on the machine
still disturbs a run, which ``summary["machine"]`` reports. ``flock`` is released by the
kernel when the holder dies, however it dies, so a crashed run never leaves a stale lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import math
import os
import pwd
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from tqdm.auto import tqdm

from stampede.errors import ConfigError, RunLockTimeout

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "FILE_NAME",
    "POLL_S",
    "START_STOP_S",
    "Holder",
    "RunLockSettings",
    "lock_path",
    "run_lock",
]

log = logging.getLogger(__name__)

Scope = Literal["machine", "user"]
SCOPE_ENV = "STAMPEDE_RUN_LOCK_SCOPE"
TIMEOUT_ENV = "STAMPEDE_RUN_LOCK_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 900.0  # 15 min: a chapter's longest run is 60 s; a class can queue ~15
MAX_TIMEOUT_S = 86_400.0
POLL_S = 0.5
# What a run adds to its load duration while it holds the lock: starting Redis and three pods,
# the settle time, stopping them and saving the result. On a quiet 2-core machine run() held
# it 5.8-6.0 s for a 3 s load (at 40 and 380 req/s), so about 3 s; a busy machine starts pods
# slower, and a waiter is only told "about".
START_STOP_S = 5.0
FILE_NAME = "stampede-lab-load.lock"
UNKNOWN_HOLDER = "a run that has not said who it is yet"


@dataclass(frozen=True)
class RunLockSettings:
    """The lock's two settings, read from the environment when a run starts (never at import)."""

    scope: Scope = "machine"
    timeout_s: float = DEFAULT_TIMEOUT_S

    @classmethod
    def from_env(cls) -> RunLockSettings:
        """``STAMPEDE_RUN_LOCK_SCOPE`` and ``STAMPEDE_RUN_LOCK_TIMEOUT_S``; a bad value is a
        :class:`~stampede.errors.ConfigError` naming the variable and what would be valid."""
        scope = os.environ.get(SCOPE_ENV, "").strip() or "machine"
        if scope not in ("machine", "user"):
            raise ConfigError(f"{SCOPE_ENV}={scope!r}; valid: machine, user")
        raw = os.environ.get(TIMEOUT_ENV, "").strip()
        try:
            timeout = float(raw) if raw else DEFAULT_TIMEOUT_S
        except ValueError:
            timeout = math.nan
        if not 0 <= timeout <= MAX_TIMEOUT_S:  # also refuses nan
            raise ConfigError(
                f"{TIMEOUT_ENV}={raw!r}; valid: seconds from 0 (do not wait) to {MAX_TIMEOUT_S:g}"
            )
        return cls("user" if scope == "user" else "machine", timeout)


@dataclass(frozen=True)
class Holder:
    """Who holds the lock, as the holder wrote it into the lock file."""

    user: str
    host: str
    pid: int
    strategy: str
    started_at: float  # epoch s
    expected_s: float | None  # how long it expects to hold the lock; None: not known

    @classmethod
    def me(cls, strategy: str, expected_s: float | None) -> Holder:
        return cls(_user(), socket.gethostname(), os.getpid(), strategy, time.time(), expected_s)

    @classmethod
    def parse(cls, text: str) -> Holder | None:
        """The holder in a lock file's text; None when it is empty or not a holder (a holder
        that has just taken the lock and not written yet, or a file someone else wrote)."""
        try:
            fields = json.loads(text)
            holder = cls(**fields)
        except (ValueError, TypeError):
            return None
        ok = (
            all(isinstance(v, str) for v in (holder.user, holder.host, holder.strategy))
            and isinstance(holder.pid, int)
            and isinstance(holder.started_at, int | float)
            and isinstance(holder.expected_s, int | float | None)
        )
        return holder if ok else None

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    def left_s(self, now: float) -> float | None:
        """Seconds until its expected end (negative once it is past it); None if not known."""
        if self.expected_s is None:
            return None
        return self.started_at + self.expected_s - now

    def describe(self, now: float) -> str:
        """``user alice on hub-1, PID 4242, strategy naive, started 12 s ago, about 58 s left``."""
        ago = max(0.0, now - self.started_at)
        text = (
            f"user {self.user} on {self.host}, PID {self.pid}, strategy {self.strategy}, "
            f"started {ago:.0f} s ago"
        )
        return f"{text}, {self._left(now)}"

    def short(self, now: float) -> str:
        """The progress bar's postfix: ``alice PID 4242 naive, about 58 s left``."""
        return f"{self.user} PID {self.pid} {self.strategy}, {self._left(now)}"

    def _left(self, now: float) -> str:
        left = self.left_s(now)
        if left is None:
            return "length not known"
        if left < 0:
            return f"{-left:.0f} s past its expected end"
        return f"about {left:.0f} s left"


def lock_path(scope: Scope) -> Path:
    """The lock file for ``scope`` (read at call time: tests and ``TMPDIR`` move it)."""
    if scope == "machine":
        return Path(tempfile.gettempdir()) / FILE_NAME
    base = os.environ.get("XDG_RUNTIME_DIR") or str(Path.home() / ".cache")
    return Path(base) / "stampede-lab" / FILE_NAME


@contextlib.contextmanager
def run_lock(
    strategy: str = "-",
    expected_s: float | None = None,
    *,
    progress: bool = False,
    settings: RunLockSettings | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[Holder]:
    """Hold the run lock for the block; wait for it (up to the bound) if another run has it.

    ``strategy`` and ``expected_s`` (seconds, the load plus :data:`START_STOP_S`) are what a
    waiting run is told about this one. ``progress`` shows the wait on a progress bar.
    Raises :class:`~stampede.errors.RunLockTimeout` after ``settings.timeout_s`` of waiting.
    """
    settings = settings or RunLockSettings.from_env()
    path = lock_path(settings.scope)
    fd = _open(path, settings.scope)
    try:
        _acquire(fd, path, settings, progress, clock, sleep)
        me = Holder.me(strategy, expected_s)
        try:
            _write(fd, me.to_json())
            log.debug("took the run lock %s as %s", path, me)
            yield me
        finally:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)  # a waiter must not read a finished run as the holder
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _acquire(
    fd: int,
    path: Path,
    settings: RunLockSettings,
    progress: bool,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> None:
    """Take the lock, or wait for it: say who holds it, poll, give up at the bound."""
    if _try_lock(fd):
        return
    begin = clock()
    deadline = begin + settings.timeout_s
    bound = f"{settings.timeout_s:g} s ({TIMEOUT_ENV})"
    told: Holder | None = None
    first = True
    bar = tqdm(
        total=max(1, round(settings.timeout_s)), unit="s", desc="waiting for the run lock",
        disable=not progress, leave=False, file=sys.stderr,
    )  # fmt: skip
    with bar:
        while True:
            holder, now = Holder.parse(_read(fd)), time.time()
            who = holder.describe(now) if holder else UNKNOWN_HOLDER
            if first or holder != told:  # once, and again whenever the holder changes
                _say(
                    f"stampede: another run holds the run lock {path}: {who}; waiting up to {bound}"
                )
                told, first = holder, False
            bar.n = min(bar.total, round(clock() - begin))
            bar.set_postfix_str(holder.short(now) if holder else UNKNOWN_HOLDER)
            if clock() >= deadline:
                raise RunLockTimeout(
                    f"gave up after waiting {bound} for the run lock {path}, held by {who}. "
                    f"Wait for it to finish and run again, raise {TIMEOUT_ENV}, or, where runs "
                    f"cannot disturb each other, set {SCOPE_ENV}=user"
                )
            sleep(max(0.0, min(POLL_S, deadline - clock())))
            if _try_lock(fd):
                return


def _open(path: Path, scope: Scope) -> int:
    """Open (or create) the lock file; the machine-wide one is made writable for every user."""
    shared = scope == "machine"
    if not shared:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    for _ in range(2):
        try:
            # Without O_CREAT first: with fs.protected_regular (Debian, Ubuntu) an O_CREAT open
            # of another user's file in the sticky /tmp is refused even when the file is 0666.
            fd = os.open(path, os.O_RDWR)
            break
        except FileNotFoundError:
            with contextlib.suppress(PermissionError):  # someone else created it meanwhile
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666 if shared else 0o600)
                break
    else:
        fd = os.open(path, os.O_RDWR)  # the error, if there is one, is the honest one
    if shared:
        # whoever creates it makes it writable for all (the umask would leave it 0644, and
        # every other user's run fails to open it); only its owner may chmod, hence suppress
        with contextlib.suppress(PermissionError):
            os.fchmod(fd, 0o666)
    return fd


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _read(fd: int) -> str:
    with contextlib.suppress(OSError):
        return os.pread(fd, 4096, 0).decode(errors="replace")
    return ""


def _write(fd: int, text: str) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, text.encode(), 0)


def _say(message: str) -> None:
    log.info(message)
    tqdm.write(message, file=sys.stderr)


def _user() -> str:
    uid = os.getuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:  # a container's arbitrary UID with no passwd entry
        return f"uid {uid}"
