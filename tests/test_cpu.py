"""CPU seconds from /proc and getrusage: the figures bench/cost.py and the runner build on."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from stampede.cpu import CpuMeter, children_cpu_seconds, cpu_seconds

TICK_S = 1 / os.sysconf("SC_CLK_TCK")
BURN = "n = 0\nfor i in range(3_000_000):\n    n += i\n"


def burn() -> None:
    exec(BURN, {})


def test_cpu_seconds_of_this_process_agrees_with_process_time() -> None:
    burn()
    # both come from the kernel's accounting of this process; /proc counts whole ticks
    assert cpu_seconds(os.getpid()) == pytest.approx(time.process_time(), abs=3 * TICK_S)


def test_cpu_seconds_grows_with_work() -> None:
    before = cpu_seconds(os.getpid())
    burn()
    assert cpu_seconds(os.getpid()) > before


def test_a_reaped_process_has_no_cpu_seconds() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    with pytest.raises(ProcessLookupError):
        cpu_seconds(child.pid)


def test_a_zombie_has_no_cpu_seconds() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        while not _is_zombie(child.pid):
            time.sleep(0.01)
        with pytest.raises(ProcessLookupError):
            cpu_seconds(child.pid)
    finally:
        child.wait()


def _is_zombie(pid: int) -> bool:
    with open(f"/proc/{pid}/stat", "rb") as fh:
        return fh.read().rsplit(b")", 1)[1].split()[0] == b"Z"


def test_children_cpu_seconds_counts_a_reaped_child() -> None:
    before = children_cpu_seconds()
    subprocess.run([sys.executable, "-c", BURN], check=True)
    assert children_cpu_seconds() > before


def test_meter_measures_named_groups_and_children() -> None:
    child = subprocess.Popen([sys.executable, "-c", BURN + "import sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE)  # fmt: skip
    try:
        with CpuMeter({"me": [os.getpid()], "child": [child.pid]}, children="reaped") as meter:
            burn()
            time.sleep(0.3)  # the child burns meanwhile (its start-up counts too)
        assert meter.gone == set()
        during = meter.delta()
        assert set(during) == {"me", "child", "reaped"}
        assert during["me"] > 0
        assert during["reaped"] == 0  # still running: not reaped yet
        assert meter.elapsed_s > 0
        assert meter.delta() == during  # frozen once the block ended
    finally:
        if child.stdin is not None:
            child.stdin.close()
        child.wait()
    assert cpu_seconds(os.getpid()) >= meter.delta()["me"]


def test_meter_counts_a_child_reaped_inside_the_block() -> None:
    with CpuMeter({}, children="workers") as meter:
        subprocess.run([sys.executable, "-c", BURN], check=True)
    assert meter.delta()["workers"] > 0


def test_a_pid_that_exits_in_the_block_counts_zero_and_is_named() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE)  # fmt: skip
    with CpuMeter({"child": [child.pid], "me": [os.getpid()]}) as meter:
        assert child.stdin is not None
        child.stdin.close()
        child.wait()
    assert meter.gone == {child.pid}
    assert meter.delta()["child"] == 0


def test_meter_before_start_and_name_clash_are_errors() -> None:
    with pytest.raises(RuntimeError, match="never started"):
        CpuMeter({"me": [os.getpid()]}).delta()
    with pytest.raises(ValueError, match="used twice"):
        CpuMeter({"gen": [1]}, children="gen")
