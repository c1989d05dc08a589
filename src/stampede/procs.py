"""Starting and stopping the lab's processes: exactly the PIDs we started, and nothing else.

A child started with ``owned=True`` gets ``PR_SET_PDEATHSIG``: if the Python process that
started it dies without cleaning up (a killed kernel), Linux sends the child SIGTERM, so even
that path leaves no orphan. ``stampede lab up`` starts children that must outlive the command
(``owned=False``) and records their PIDs for ``stampede lab down``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from stampede.errors import PortInUse, ProcessFailed

__all__ = [
    "ManagedProcess",
    "check_port",
    "die_with_parent",
    "free_port",
    "pid_alive",
    "port_is_free",
    "start",
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
        """Poll ``probe`` until it answers, the process dies, or ``timeout_s`` passes."""
        deadline = time.monotonic() + timeout_s
        delay = 0.02
        while time.monotonic() < deadline:
            if not self.alive():
                raise ProcessFailed(
                    f"{self.name} exited with code {self.popen.returncode} while starting; "
                    f"last lines of {self.log_path}:\n{self.log_tail()}"
                )
            with contextlib.suppress(Exception):
                if probe():
                    return
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
) -> ManagedProcess:
    """Start ``args`` with output to ``log_path``; ``owned`` children die with this process."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        popen = subprocess.Popen(
            list(args),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            preexec_fn=die_with_parent() if owned else None,
            start_new_session=not owned,  # a background lab survives the terminal's Ctrl-C
        )
    return ManagedProcess(name, popen, log_path)


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


def stop_pid(pid: int, grace_s: float = 5.0) -> None:
    """SIGTERM ``pid``, then SIGKILL after ``grace_s``: for PIDs recorded by ``lab up``."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
