"""The run lock: one load run at a time, a waiting run that says for whom, and a bound.

The first tests hold the lock in this process (``flock`` locks belong to an open file, so a
second ``run_lock`` here conflicts with the first as another process would), with a clock
that moves only when the waiter sleeps. The last two start real ``stampede run`` processes
side by side, with the lock file in a temporary directory of their own (``TMPDIR``), and watch
the second one's children in ``/proc`` while it waits.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stampede.errors import ConfigError, RunLockTimeout
from stampede.run_lock import Holder, RunLockSettings, lock_path, run_lock
from stampede.runner import machine_exclusive

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def tmp_lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    for name in ("STAMPEDE_RUN_LOCK_SCOPE", "STAMPEDE_RUN_LOCK_TIMEOUT_S"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


class FakeTime:
    """A monotonic clock that advances only when the waiter sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


# ---- the file ---------------------------------------------------------------------------------
def test_the_lock_file_is_writable_by_every_user(tmp_lock_dir: Path) -> None:
    """Whoever creates it first must not lock the others out (a 0644 file did, on a hub)."""
    with machine_exclusive():
        mode = stat.S_IMODE((tmp_lock_dir / "stampede-lab-load.lock").stat().st_mode)
    assert mode == 0o666


def test_an_existing_0644_lock_file_is_opened_up(tmp_lock_dir: Path) -> None:
    lock = tmp_lock_dir / "stampede-lab-load.lock"
    lock.touch(mode=0o644)
    lock.chmod(0o644)
    with machine_exclusive():
        pass
    assert stat.S_IMODE(lock.stat().st_mode) == 0o666


def test_the_holder_says_who_it_is_while_it_holds_and_clears_it_after(tmp_lock_dir: Path) -> None:
    path = lock_path("machine")
    with machine_exclusive("single_flight", 40.0) as me:
        written = Holder.parse(path.read_text())
    assert written == me
    assert (me.pid, me.strategy, me.expected_s) == (os.getpid(), "single_flight", 40.0)
    assert me.user and me.host and abs(me.started_at - time.time()) < 60
    assert path.read_text() == ""


def test_user_scope_puts_the_file_in_the_users_own_directory(
    tmp_lock_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = tmp_path / "run-user"
    runtime.mkdir()
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.setenv("STAMPEDE_RUN_LOCK_SCOPE", "user")
    with machine_exclusive():
        path = runtime / "stampede-lab" / "stampede-lab-load.lock"
        assert Holder.parse(path.read_text()) is not None
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert not (tmp_lock_dir / "stampede-lab-load.lock").exists()


def test_without_a_runtime_directory_user_scope_uses_the_home_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert lock_path("user") == tmp_path / ".cache" / "stampede-lab" / "stampede-lab-load.lock"


# ---- settings -----------------------------------------------------------------------------------
def test_settings_default_to_the_machine_and_a_quarter_hour(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("STAMPEDE_RUN_LOCK_SCOPE", raising=False)
    monkeypatch.delenv("STAMPEDE_RUN_LOCK_TIMEOUT_S", raising=False)
    assert RunLockSettings.from_env() == RunLockSettings("machine", 900.0)
    monkeypatch.setenv("STAMPEDE_RUN_LOCK_SCOPE", "user")
    monkeypatch.setenv("STAMPEDE_RUN_LOCK_TIMEOUT_S", "0")
    assert RunLockSettings.from_env() == RunLockSettings("user", 0.0)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("STAMPEDE_RUN_LOCK_SCOPE", "box"),
        ("STAMPEDE_RUN_LOCK_TIMEOUT_S", "soon"),
        ("STAMPEDE_RUN_LOCK_TIMEOUT_S", "-1"),
        ("STAMPEDE_RUN_LOCK_TIMEOUT_S", "nan"),
    ],
)
def test_a_bad_setting_names_the_variable_and_the_value(
    name: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=f"{name}={value!r}; valid: "):
        RunLockSettings.from_env()


# ---- what a waiter is told ----------------------------------------------------------------------
def test_a_holder_is_described_with_its_time_left() -> None:
    holder = Holder("alice", "hub-1", 4242, "naive", started_at=1000.0, expected_s=70.0)
    assert holder.describe(1012.0) == (
        "user alice on hub-1, PID 4242, strategy naive, started 12 s ago, about 58 s left"
    )
    assert holder.short(1012.0) == "alice PID 4242 naive, about 58 s left"
    assert holder.describe(1075.0).endswith("5 s past its expected end")
    unknown = Holder("bob", "hub-1", 7, "-", started_at=1000.0, expected_s=None)
    assert unknown.short(1001.0).endswith("length not known")


NOT_A_HOLDER = [
    "",
    "{",
    "[1, 2]",
    '{"pid": 1}',
    '{"user": "x", "host": "y", "pid": "1", "strategy": "s", "started_at": 0, "expected_s": 1}',
]


@pytest.mark.parametrize("text", NOT_A_HOLDER)
def test_a_lock_file_that_is_not_a_holder_reads_as_unknown(text: str) -> None:
    assert Holder.parse(text) is None


def test_a_waiter_names_the_holder_shows_it_on_the_bar_and_gives_up_at_the_bound(
    tmp_lock_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeTime()
    with (
        machine_exclusive("swr", 70.0) as holder,
        pytest.raises(RunLockTimeout) as caught,
        run_lock(
            "naive",
            20.0,
            progress=True,
            settings=RunLockSettings("machine", 3.0),
            clock=fake.clock,
            sleep=fake.sleep,
        ),  # fmt: skip
    ):
        pytest.fail("the waiter entered the block while the holder held the lock")
    message = str(caught.value)
    assert f"PID {holder.pid}" in message and "strategy swr" in message and "s left" in message
    assert "STAMPEDE_RUN_LOCK_TIMEOUT_S" in message and "STAMPEDE_RUN_LOCK_SCOPE=user" in message
    assert fake.now == pytest.approx(3.0) and max(fake.sleeps) <= 0.5  # polled, up to the bound
    err = capsys.readouterr().err
    told = [line for line in err.splitlines() if line.startswith("stampede: another run holds")]
    assert len(told) == 1 and f"PID {holder.pid}" in told[0], err  # said once, holder unchanged
    assert "waiting for the run lock" in err and f"PID {holder.pid} swr, about" in err  # the bar


def test_a_waiter_takes_the_lock_as_soon_as_it_is_free(tmp_lock_dir: Path) -> None:
    fake = FakeTime()
    holder = machine_exclusive("swr", 70.0)
    holder.__enter__()
    released = False

    def sleep(seconds: float) -> None:
        nonlocal released
        fake.sleep(seconds)
        if fake.now >= 2 and not released:
            holder.__exit__(None, None, None)
            released = True

    with run_lock(settings=RunLockSettings("machine", 60.0), clock=fake.clock, sleep=sleep) as me:
        assert released and me.pid == os.getpid()
    assert fake.now == pytest.approx(2.0)


def test_a_bound_of_zero_does_not_wait(tmp_lock_dir: Path) -> None:
    fake = FakeTime()
    with (
        machine_exclusive(),
        pytest.raises(RunLockTimeout),
        run_lock(settings=RunLockSettings("machine", 0.0), clock=fake.clock, sleep=fake.sleep),
    ):
        pass
    assert fake.sleeps == []


# ---- two real runs ------------------------------------------------------------------------------
RUN = [sys.executable, "-m", "stampede", "run", "--strategy", "naive", "--rate", "40",
       "--clients", "4", "--fresh", "--json"]  # fmt: skip
WAITING = "stampede: another run holds the run lock"


@pytest.fixture
def run_env(tmp_path: Path) -> dict[str, str]:
    """Each run's lock file, lab logs and data in this test's own directories."""
    (tmp_path / "tmp").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STAMPEDE_")}
    env.update(TMPDIR=str(tmp_path / "tmp"), STAMPEDE_DATA_DIR=str(tmp_path / "data"))
    env["STAMPEDE_RUN_LOCK_TIMEOUT_S"] = "240"  # the first run's lab may start slowly
    return env


class Run:
    """One ``stampede run`` process, its output in files."""

    def __init__(self, env: dict[str, str], where: Path, name: str, duration_s: int = 3) -> None:
        self.out, self.err = where / f"{name}.out", where / f"{name}.err"
        args = [*RUN, "--duration", str(duration_s)]
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.popen = subprocess.Popen(args, stdout=out, stderr=err, env=env, cwd=ROOT)
        self.pid = self.popen.pid

    def finish(self, timeout: float = 240) -> int:
        return self.popen.wait(timeout)

    def stderr(self) -> str:
        return self.err.read_text()

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()


@pytest.fixture
def runs(tmp_path: Path) -> Iterator[list[Run]]:
    started: list[Run] = []
    yield started
    for run in started:  # a failed assertion must leave no run (and no lab) behind
        run.kill()


def holder_pid(env: dict[str, str]) -> int | None:
    path = Path(env["TMPDIR"]) / "stampede-lab-load.lock"
    try:
        holder = Holder.parse(path.read_text())
    except FileNotFoundError:
        return None
    return holder.pid if holder else None


def descendants(pid: int) -> list[str]:
    """Every process below ``pid`` (from /proc), as ``PID command``."""
    parents: dict[int, int] = {}
    names: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue  # gone meanwhile
        name, rest = text[text.index("(") + 1 : text.rindex(")")], text[text.rindex(")") + 2 :]
        parents[int(entry)], names[int(entry)] = int(rest.split()[1]), name
    found: list[str] = []
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for child, ppid in parents.items():
            if ppid == parent:
                found.append(f"{child} {names[child]}")
                frontier.append(child)
    return found


def wait_until_it_holds(run: Run, env: dict[str, str]) -> None:
    deadline = time.monotonic() + 120
    while holder_pid(env) != run.pid:
        assert run.popen.poll() is None, f"the first run ended early:\n{run.stderr()}"
        assert time.monotonic() < deadline, "the first run never took the lock"
        time.sleep(0.05)


def watch_while_held(holder: Run, waiter: Run, env: dict[str, str]) -> list[list[str]]:
    """The waiter's descendants, sampled from when it said it waits for as long as ``holder``
    held the lock (read before and after each sample)."""
    samples: list[list[str]] = []
    while holder_pid(env) == holder.pid and waiter.popen.poll() is None:
        waiting = WAITING in waiter.stderr()
        children = descendants(waiter.pid)
        if waiting and holder_pid(env) == holder.pid:
            samples.append(children)
        time.sleep(0.1)
    return samples


def test_two_runs_started_together_the_second_waits_names_the_first_and_runs_after(
    run_env: dict[str, str], tmp_path: Path, runs: list[Run]
) -> None:
    first = Run(run_env, tmp_path, "first")
    runs.append(first)
    wait_until_it_holds(first, run_env)
    second = Run(run_env, tmp_path, "second")
    runs.append(second)
    samples = watch_while_held(first, second, run_env)
    assert first.finish() == 0, first.stderr()
    assert second.finish() == 0, second.stderr()

    assert len(samples) >= 5, "the second run was not seen waiting"
    assert all(s == [] for s in samples), f"the waiting run started processes: {samples}"
    told = second.stderr()
    assert f"PID {first.pid}, strategy naive" in told and "s left" in told, told
    for run in (first, second):
        summary = json.loads(run.out.read_text())
        assert summary["strategy"] == "naive" and summary["requests"] > 0
    assert WAITING not in first.stderr()


def test_with_the_bound_lowered_the_second_gives_up_naming_the_first(
    run_env: dict[str, str], tmp_path: Path, runs: list[Run]
) -> None:
    first = Run(run_env, tmp_path, "first", duration_s=10)  # outlasts the second's bound
    runs.append(first)
    wait_until_it_holds(first, run_env)
    second = Run({**run_env, "STAMPEDE_RUN_LOCK_TIMEOUT_S": "1"}, tmp_path, "second")
    runs.append(second)
    samples = watch_while_held(first, second, run_env)
    code = second.finish()
    still_held = holder_pid(run_env) == first.pid
    assert first.finish() == 0, first.stderr()

    assert code == 1, second.stderr()
    assert still_held, "the first run let go before the second gave up: the bound was not tested"
    assert samples and all(s == [] for s in samples), samples
    last = second.stderr().strip().splitlines()[-1]
    assert last.startswith("stampede: gave up after waiting 1 s (STAMPEDE_RUN_LOCK_TIMEOUT_S)")
    assert f"PID {first.pid}, strategy naive" in last
    assert second.out.read_text() == ""
