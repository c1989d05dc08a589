"""Starting and stopping the lab's processes: exactly the PIDs we started, and nothing else.

A child started with ``owned=True`` gets ``PR_SET_PDEATHSIG``: if the Python process that
started it dies without cleaning up (a killed kernel), Linux sends the child SIGTERM, so even
that path leaves no orphan. ``stampede lab up`` starts children that must outlive the command
(``owned=False``) and records their PIDs for ``stampede lab down``, each with its start time
(:func:`start_ticks`): a PID alone can name another process by the time ``lab down`` runs, so
:func:`stop_pid` signals a recorded PID only while its start time still matches.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from stampede.errors import PortInUse, ProcessFailed, StampedeError

__all__ = [
    "ManagedProcess",
    "check_port",
    "die_with_parent",
    "free_port",
    "free_ports",
    "pid_alive",
    "port_is_free",
    "same_process",
    "start",
    "start_ticks",
    "stop_pid",
]

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A ``preexec_fn`` after which the child gets ``sig`` when this process dies (Linux).

    None elsewhere. If this process died between the fork and the ``prctl`` (the signal is
    then never sent), the child sees another parent and exits at once.
    """
    if sys.platform != "linux":
        return None
    try:
        prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl  # resolved before the fork
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def arm() -> None:  # runs in the child between fork and exec
        prctl(_PR_SET_PDEATHSIG, int(sig))
        if os.getppid() != parent:
            os._exit(1)

    return arm


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1 (the kernel picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports that were free a moment ago on 127.0.0.1.

    The sockets stay bound until all are picked: :func:`free_port` called in a row can be given
    the port it just released again (measured: two pods of one compose project on one port; a
    cluster asks for two per node, client and bus).
    """
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def check_port(port: int, what: str) -> None:
    if not port_is_free(port):
        raise PortInUse(f"port {port} on 127.0.0.1 ({what}) is already in use; pick another")


@dataclass
class ManagedProcess:
    """A child process with its log file, stopped by PID only."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    start_ticks: int | None = None  # /proc/<pid>/stat field 22, read at start

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"

    def wait_ready(self, probe: Callable[[], bool], timeout_s: float = 60.0) -> None:
        """Poll ``probe`` until it answers, the process dies, or ``timeout_s`` passes.

        A probe that raises a :class:`~stampede.errors.StampedeError` (say :class:`PortInUse`:
        something else answered on the port) ends the wait with that error; any other exception
        means "not yet".
        """
        deadline = time.monotonic() + timeout_s
        delay = 0.02
        while time.monotonic() < deadline:
            if not self.alive():
                raise ProcessFailed(
                    f"{self.name} exited with code {self.popen.returncode} while starting; "
                    f"last lines of {self.log_path}:\n{self.log_tail()}"
                )
            try:
                if probe():
                    return
            except StampedeError:
                raise
            except Exception:  # not up yet: refused, reset, timed out
                pass
            time.sleep(delay)
            delay = min(delay * 1.5, 0.25)
        raise ProcessFailed(
            f"{self.name} did not become ready within {timeout_s:g} s; "
            f"last lines of {self.log_path}:\n{self.log_tail()}"
        )

    def stop(self, grace_s: float = 5.0) -> None:
        if self.alive():
            self.popen.terminate()
            try:
                self.popen.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(grace_s)
        else:
            self.popen.wait()


def start(
    name: str,
    args: Sequence[str],
    *,
    log_path: Path,
    env: dict[str, str] | None = None,
    owned: bool = True,
    stdin_data: bytes | None = None,
) -> ManagedProcess:
    """Start ``args`` with output to ``log_path``; ``owned`` children die with this process.

    ``stdin_data`` is written to the child's stdin, which is then closed: how a secret reaches
    ``redis-server`` without appearing in its command line (``ps`` shows that to every user).
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        popen = subprocess.Popen(
            list(args),
            stdin=subprocess.DEVNULL if stdin_data is None else subprocess.PIPE,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            preexec_fn=die_with_parent() if owned else None,
            start_new_session=not owned,  # a background lab survives the terminal's Ctrl-C
        )
    ticks = start_ticks(popen.pid)  # set at fork, kept across exec: readable at once
    if stdin_data is not None and popen.stdin is not None:
        with contextlib.suppress(BrokenPipeError), popen.stdin:
            popen.stdin.write(stdin_data)
    return ManagedProcess(name, popen, log_path, ticks)


def start_ticks(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks since boot (``/proc/<pid>/stat`` field 22).

    With the PID it names one process for the machine's uptime: a reused PID has a later start.
    ``None`` when there is no such process, or no ``/proc`` (not Linux).
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # field 2, the command, is in parentheses and may hold spaces or ')': split after the last
    return int(stat.rsplit(")", 1)[1].split()[19])  # fields 3.. follow; 22 is at index 19


def same_process(pid: int, ticks: int | None) -> bool:
    """Whether ``pid`` is alive and still the process that started at ``ticks``."""
    return ticks is not None and start_ticks(pid) == ticks and pid_alive(pid)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):  # a zombie is dead for our purposes
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    return True


def stop_pid(pid: int, grace_s: float = 5.0, *, ticks: int | None = None) -> bool:
    """SIGTERM ``pid``, then SIGKILL after ``grace_s``: for PIDs recorded by ``lab up``.

    With ``ticks`` (its recorded :func:`start_ticks`) a process that does not match is left
    alone and ``False`` returned: its PID now belongs to someone else. The check is race-free
    on Linux: a pidfd is opened first and the signals go through it, so they reach the process
    that was checked even if the PID is reused in between.
    """
    pidfd = _pidfd(pid)
    try:
        if ticks is not None and not same_process(pid, ticks):
            return False
        for sig in (signal.SIGTERM, signal.SIGKILL):
            _signal(pid, pidfd, sig)
            if _exited(pid, pidfd, ticks, grace_s):
                break
        return True
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):  # not Linux >= 5.3, or already gone
        return None


def _signal(pid: int, pidfd: int | None, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        if pidfd is not None:
            signal.pidfd_send_signal(pidfd, sig)
        else:
            os.kill(pid, sig)


def _exited(pid: int, pidfd: int | None, ticks: int | None, timeout_s: float) -> bool:
    if pidfd is not None:  # readable once the process has exited (zombie or reaped)
        return bool(select.select([pidfd], [], [], timeout_s)[0])
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not pid_alive(pid) or (ticks is not None and start_ticks(pid) != ticks):
            return True
        time.sleep(0.05)
    return False
