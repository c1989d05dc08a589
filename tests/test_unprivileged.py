"""The whole lab as a reader without root: a real user, no ``sudo``, Debian's system Python.

A hub or Binder user cannot ``sudo apt-get`` and often has the distribution's ``python3``. This
module makes such a user for real and does what the README tells a reader to do, as that user:

1. ``useradd`` a throwaway user whose home is a fresh folder in ``/tmp``; check that it is not
   root and that ``sudo -n true`` fails for it (sudo absent, or present and not allowed).
2. ``git clone`` this checkout's **committed HEAD** into that home: uncommitted changes are not
   what is tested (commit first), and the clone has no ``.venv``, no ``data/`` and no run cache.
3. ``make setup PYTHON=/usr/bin/python3``: a virtualenv of Debian's 3.11.2 with the lock
   installed from an empty pip cache (it downloads, as a new reader's does), ``redis-server``
   found where the machine installed it, no root asked for.
4. ``stampede run --strategy naive --duration 30 --json``: the needles chapter 1 is about
   (about 1 + λ_hot·L hot-key reads per TTL window), nothing lost, no errors.
5. Chapter 1 through papermill with ``STAMPEDE_DURATION_S=30``: its first run is the one step 4
   cached (the same parameters), its two exercise runs are live, every ``checks.*`` holds.
6. ``redis-server`` hidden (a ``PATH`` of links to every program but it, and
   ``STAMPEDE_REDIS_PLACES`` at an empty folder; no system file is touched): ``make setup``
   says what to install and how without root; ``stampede run`` says what to install with root
   and without, and starts nothing.

At the end every process of the user is ended by PID, ``ps -u`` must find none, and the user,
its group and its home are removed. The environment is cleared (``env -i``) but for ``HOME``,
the user's names, a Debian user's ``PATH`` and how this machine reaches PyPI (``PIP_*``, CA
bundles, proxies). Needs root to make the user, and PyPI, as ``make setup`` does; CI runs as
root, so it runs there. It takes about 2.5 min on two cores where pip finds the packages in a
local index, longer where it downloads them all; run it under the heavy lock.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import psutil
import pytest

from stampede import theory
from stampede.lab import REDIS_PLACES_ENV, find_redis_server
from stampede.run_lock import FILE_NAME as RUN_LOCK_FILE

ROOT = Path(__file__).resolve().parent.parent
DEBIAN_PYTHON = Path("/usr/bin/python3")
CHAPTER = next(ROOT.glob("chapters/01_*.ipynb")).relative_to(ROOT)
DURATION_S = 30
USER_PATH = "/usr/local/bin:/usr/bin:/bin"  # a Debian user's PATH: no sbin, no pyenv, no .venv
# How this machine reaches PyPI; nothing about the project passes through.
PASSED_ON = ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
PROXIES = ("http_proxy", "https_proxy", "no_proxy", "all_proxy")
SETUP_TIMEOUT_S = 900.0  # a virtualenv and ~200 packages downloaded, on a busy 2-core machine
RUN_TIMEOUT_S = 300.0
CHAPTER_TIMEOUT_S = 600.0

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0,
    reason="needs root to create a throwaway user (useradd, runuser); CI runs as root",
)


@dataclass
class Reader:
    """The throwaway user, its clone of HEAD, and how long each step took."""

    name: str
    uid: int
    home: Path
    repo: Path
    runuser: str  # /usr/sbin/runuser: found on root's PATH, not on the user's
    timings: dict[str, float] = field(default_factory=dict)

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            "HOME": str(self.home), "USER": self.name, "LOGNAME": self.name, "SHELL": "/bin/bash",
            "PATH": USER_PATH, "LANG": "C.UTF-8", "PIP_NO_INPUT": "1",
        }  # fmt: skip
        for name, value in os.environ.items():
            if name.startswith("PIP_") or name in PASSED_ON or name.lower() in PROXIES:
                env.setdefault(name, value)
        return {**env, **extra}

    def run(
        self, args: list[str], step: str, timeout: float, **env: str
    ) -> subprocess.CompletedProcess[str]:
        """``args`` as this user in its clone, with a cleared environment and no terminal."""
        settings = [f"{k}={v}" for k, v in self.env(**env).items()]
        begin = time.monotonic()
        try:
            return subprocess.run(
                [self.runuser, "-u", self.name, "--", "/usr/bin/env", "-i", *settings, *args],
                cwd=self.repo, env={"PATH": USER_PATH}, stdin=subprocess.DEVNULL,
                capture_output=True, text=True, timeout=timeout, check=False,
            )  # fmt: skip
        finally:
            self.timings[step] = round(time.monotonic() - begin, 1)
            print(f"{step}: {self.timings[step]:.1f} s")

    def processes(self) -> list[psutil.Process]:
        found = []
        for proc in psutil.process_iter(["uids"]):
            with contextlib.suppress(psutil.Error, TypeError):
                if proc.info["uids"].real == self.uid:
                    found.append(proc)
        return found


def ensure_debian_venv() -> None:
    """Debian's python3 makes a virtualenv only with python3-venv; install it if missing."""
    probe = [str(DEBIAN_PYTHON), "-c", "import ensurepip, venv"]
    if subprocess.run(probe, capture_output=True, check=False).returncode == 0:
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "python3-venv"]):
        subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=600)
    subprocess.run(probe, check=True)


def clone_head(dest: Path) -> str:
    """Clone this checkout and check out its committed HEAD (not the working tree)."""
    git = ["git", "-c", "safe.directory=*"]  # CI's checkout may belong to another UID
    head = subprocess.run(
        [*git, "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    subprocess.run([*git, "clone", "-q", "--no-checkout", str(ROOT), str(dest)], check=True)
    subprocess.run([*git, "-C", str(dest), "checkout", "-q", "--detach", head], check=True)
    return head


@pytest.fixture(scope="module")
def reader() -> Iterator[Reader]:
    """A user without root or sudo, its home in /tmp, HEAD cloned into it; all removed after."""
    assert DEBIAN_PYTHON.exists(), f"no {DEBIAN_PYTHON}: this test needs Debian's system Python"
    for tool in ("useradd", "userdel", "runuser", "git", "make"):
        assert shutil.which(tool), f"{tool} is missing (Debian: passwd, util-linux, git, make)"
    find_redis_server()  # the machine must have it: make test's `system` step installs it
    ensure_debian_venv()
    name = f"stampede-u{uuid.uuid4().hex[:6]}"
    home = Path(tempfile.mkdtemp(prefix=f"{name}-", dir="/tmp"))
    subprocess.run(
        ["useradd", "--no-create-home", "--no-log-init", "--user-group", "--shell", "/bin/bash",
         "--home-dir", str(home), name],
        check=True, capture_output=True,
    )  # fmt: skip
    user = pwd.getpwnam(name)
    reader = Reader(name, user.pw_uid, home, home / "stampede-lab", shutil.which("runuser") or "")
    try:
        print(f"user {name} (uid {user.pw_uid}), HEAD {clone_head(reader.repo)}")
        subprocess.run(["chown", "-R", f"{name}:{name}", str(home)], check=True)
        yield reader
    finally:
        leftover = remove(reader)
        print("timings (s):", json.dumps(reader.timings))
    assert not leftover, f"processes of {name} were left running: {leftover}"


def remove(reader: Reader) -> list[str]:
    """End the user's processes by PID, check ``ps -u`` finds none, delete user and home.

    Returns what was still running before it was ended (a leak the test reports)."""
    left = [f"{p.pid} {' '.join(p.cmdline())}" for p in reader.processes() if p.is_running()]
    for _ in range(3):
        procs = reader.processes()
        if not procs:
            break
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(procs, timeout=10)
    ps = subprocess.run(["ps", "-u", str(reader.uid), "-o", "pid=,args="], capture_output=True)
    assert ps.returncode == 1 and not ps.stdout.strip(), ps.stdout
    # The machine-wide run lock outlives its creator on purpose (other users keep opening it):
    # give it to root rather than to a UID that is about to stop existing; same inode, so a
    # run holding it is not disturbed.
    lock = Path("/tmp") / RUN_LOCK_FILE
    with contextlib.suppress(FileNotFoundError):
        if lock.stat().st_uid == reader.uid:
            os.chown(lock, 0, 0)
    subprocess.run(["userdel", reader.name], check=True, capture_output=True)
    shutil.rmtree(reader.home)
    with contextlib.suppress(KeyError):
        pwd.getpwnam(reader.name)
        pytest.fail(f"user {reader.name} still exists")
    return left


@pytest.fixture(scope="module")
def set_up(reader: Reader) -> Reader:
    """``make setup`` with Debian's python3, as the user, from an empty pip cache."""
    assert not (reader.home / ".cache" / "pip").exists()
    setup = reader.run(["make", "setup", f"PYTHON={DEBIAN_PYTHON}"], "make setup", SETUP_TIMEOUT_S)
    assert setup.returncode == 0, f"make setup failed as {reader.name}:\n{tail(setup)}"
    # redis-server was found where the machine installed it: ensure-system.sh tried nothing
    assert "apt-get" not in setup.stderr and "sudo" not in setup.stderr, setup.stderr
    version = reader.run([".venv/bin/python", "-c", "import sys; print(sys.version)"], "python", 30)
    assert version.stdout.startswith("3.11.2"), version.stdout  # Debian 12's, not the machine's
    return reader


def tail(result: subprocess.CompletedProcess[str], chars: int = 4000) -> str:
    return f"--- stdout\n{result.stdout[-chars:]}\n--- stderr\n{result.stderr[-chars:]}"


@pytest.mark.timeout(SETUP_TIMEOUT_S + 120)
def test_the_user_has_no_root_and_no_sudo(reader: Reader) -> None:
    uid = reader.run(["id", "-u"], "id", 30)
    assert uid.stdout.strip() == str(reader.uid) != "0"
    sudo = reader.run(["sudo", "-n", "true"], "sudo -n true", 30)
    assert sudo.returncode != 0, "the throwaway user must not be able to sudo"


@pytest.mark.timeout(SETUP_TIMEOUT_S + 120)
def test_make_setup_with_debians_python(set_up: Reader) -> None:
    listed = set_up.run([".venv/bin/pip", "check"], "pip check", 120)
    assert listed.returncode == 0, tail(listed)


@pytest.mark.timeout(RUN_TIMEOUT_S + 60)
def test_a_30_s_run_shows_the_needles(set_up: Reader) -> None:
    result = set_up.run(
        [".venv/bin/stampede", "run", "--strategy", "naive", "--duration", str(DURATION_S),
         "--json"],
        "stampede run 30 s", RUN_TIMEOUT_S,
    )  # fmt: skip
    assert result.returncode == 0, tail(result)
    summary = json.loads(result.stdout)
    params = summary["params"]
    assert summary["strategy"] == "naive" and params["duration_s"] == DURATION_S
    assert summary["lost"] == 0 and summary["errors"] == 0, summary
    assert not summary["unexpected"]["marked"], summary["unexpected"]
    expected = theory.naive_reads_per_window(
        params["rate"], params["hot_share"], params["origin_latency_ms"]
    )
    reads = summary["hot_reads_per_window"]
    assert len(reads) >= DURATION_S / params["ttl_s"] - 2, reads  # the complete TTL windows
    mean = sum(reads) / len(reads)
    # chapter 1's band: a herd of about 1 + λ_hot·L reads every window, not one read
    assert 0.75 * expected <= mean <= 1.5 * expected, (mean, expected, reads)
    print(f"hot-key reads per window: {reads} (theory {expected:.1f})")


@pytest.mark.timeout(CHAPTER_TIMEOUT_S + 60)
def test_chapter_1_through_papermill(set_up: Reader) -> None:
    out = set_up.home / "executed.ipynb"
    result = set_up.run(
        [".venv/bin/papermill", str(CHAPTER), str(out), "-k", "python3", "--no-progress-bar"],
        "papermill chapter 1", CHAPTER_TIMEOUT_S, STAMPEDE_DURATION_S=str(DURATION_S),
    )  # fmt: skip
    assert result.returncode == 0, tail(result)
    executed = nbformat.read(out, as_version=4)
    code = [c for c in executed.cells if c.cell_type == "code"]
    assert code and all(c.execution_count for c in code), "a code cell did not run"
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors, errors


def hide_redis_server(reader: Reader) -> dict[str, str]:
    """A PATH with every program of USER_PATH but ``redis-server``, and no usual places."""
    shadow, empty = reader.home / "bin-without-redis", reader.home / "no-redis-here"
    shadow.mkdir(exist_ok=True)
    empty.mkdir(exist_ok=True)
    for folder in USER_PATH.split(":"):
        for program in Path(folder).iterdir():
            link = shadow / program.name
            if program.name != "redis-server" and not link.exists():
                link.symlink_to(program)
    return {"PATH": str(shadow), REDIS_PLACES_ENV: str(empty)}


@pytest.mark.timeout(SETUP_TIMEOUT_S + 120)
def test_without_redis_server_make_setup_says_what_to_do_without_root(set_up: Reader) -> None:
    hidden = hide_redis_server(set_up)
    result = set_up.run(
        ["make", "setup", f"PYTHON={DEBIAN_PYTHON}"], "make setup, no redis", 120, **hidden
    )
    assert result.returncode != 0, tail(result)
    said = result.stderr
    assert "stampede-lab needs: redis-server" in said, tail(result)
    assert "cannot install system packages" in said  # and it did not try
    assert "apt-get install redis-server" in said  # what an admin (root) installs
    assert "conda install -c conda-forge redis-server" in said  # what the user can do alone
    assert "STAMPEDE_REDIS_SERVER" in said


@pytest.mark.timeout(SETUP_TIMEOUT_S + 120)
def test_without_redis_server_a_run_says_what_to_install_and_starts_nothing(
    set_up: Reader,
) -> None:
    hidden = hide_redis_server(set_up)
    result = set_up.run(
        [".venv/bin/stampede", "run", "--strategy", "naive", "--duration", "5", "--json"],
        "stampede run, no redis", 120, **hidden,
    )  # fmt: skip
    assert result.returncode == 1, tail(result)
    said = result.stderr
    assert "redis-server was not found" in said, tail(result)
    assert "sudo apt-get install redis-server" in said  # with root
    assert "Without root" in said and "conda install -c conda-forge redis-server" in said
    assert not set_up.processes(), "a run that cannot find redis-server must leave nothing"
