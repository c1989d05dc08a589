"""The runner's guards, on real pods: the code they run, the Redis they use, what they counted.

- ``run()`` refuses pods started from other code (a copy of the package, edited), naming both
  hashes, before it sends anything;
- the run key's redis-server version is the lab's own (``INFO server``), the same one the
  binary reports;
- each pod's outcome counts equal the answers the generator got from it, and a pod that
  counted one more fails the run;
- an origin read still in flight is in the pod's log from its start, and the runner waits for
  it (with a bound) before it reads the logs.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from stampede import procs, runner, source
from stampede.config import StrategyConfig
from stampede.errors import CodeMismatch, OutcomeMismatch
from stampede.lab import Lab, pod_command, pod_env
from stampede.workers import drive

SHORT = {"duration_s": 3.0, "rate": 40.0, "clients": 4, "ttl_s": 1.0, "origin_latency_ms": 50.0}


@pytest.fixture(autouse=True)
def _private_run_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STAMPEDE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("STAMPEDE_POD_URLS", raising=False)


# ---- the code the pods run -----------------------------------------------------------------
@pytest.fixture
def other_code_pod(tmp_path: Path, redis_url: str, origin_file: Path) -> Iterator[str]:
    """A real pod started from a copy of the package with one strategy edited."""
    copy = tmp_path / "other" / "stampede"
    shutil.copytree(source.PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    with (copy / "strategies" / "naive.py").open("a") as fh:
        fh.write("\n# an edit made after the lab started\n")
    port = procs.free_port()
    env = pod_env("pod-1", redis_url, origin_file, StrategyConfig(), secret="")
    env["PYTHONPATH"] = str(copy.parent)  # before site-packages: the pod imports the copy
    pod = procs.start("pod-other", pod_command(port), log_path=tmp_path / "pod.log", env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        pod.wait_ready(lambda: httpx.get(f"{url}/health", timeout=0.5).status_code == 200, 90)
        assert httpx.get(f"{url}/health").json()["code"] == source.source_hash(copy)
        yield url
    finally:
        pod.stop()


def test_run_refuses_pods_started_from_other_code_naming_both_hashes(
    other_code_pod: str, redis_url: str
) -> None:
    theirs = httpx.get(f"{other_code_pod}/health").json()["code"]
    ours = source.code_version()
    assert theirs != ours
    lab = Lab.attach([other_code_pod], redis_url)
    try:
        with pytest.raises(CodeMismatch) as refused:
            runner.run("naive", lab=lab, fresh=True, progress=False, **SHORT)
    finally:
        lab.stop()
    assert theirs in str(refused.value) and ours in str(refused.value)
    assert other_code_pod in str(refused.value)
    stats = httpx.get(f"{other_code_pod}/stats").json()
    assert stats["outcomes"] == {} and stats["reads"] == []  # refused before any request


def test_the_pods_of_the_lab_report_this_process_code(lab: Lab) -> None:
    for url in lab.pods:
        health = httpx.get(f"{url}/health").json()
        assert health["code"] == source.code_version()
        assert {"status", "pod", "strategy"} <= set(health)
    runner.check_code(lab)


# ---- the redis-server version ------------------------------------------------------------
def test_the_labs_redis_version_is_the_binarys_and_names_a_release(lab: Lab) -> None:
    version = runner.redis_version(lab)
    assert re.fullmatch(r"\d+\.\d+\.\d+", version), version
    assert runner.redis_version() == version  # `redis-server --version` of the same binary


# ---- the pods' counts against the generator's ------------------------------------------------
def test_a_run_with_404s_agrees_with_every_pods_counts(lab: Lab) -> None:
    result = runner.run("single_flight", lab=lab, fresh=True, progress=False, items=150, **SHORT)
    answered = result.records[result.records["status"] > 0]
    assert (answered["status"] == 404).any(), "ids above 100 do not exist: some answers are 404"
    counted = sum(sum(s["outcomes"].values()) for s in lab.stats())
    assert counted == len(answered)
    assert result.summary["unexpected"]["marked"] is False
    assert result.summary["unexpected"]["errors"] == result.summary["unexpected"]["fail_open"] == 0


def test_a_pod_that_counted_an_answer_the_generator_never_got_fails_the_run(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    def drive_then_one_more(*args: Any, **kwargs: Any) -> Any:
        driven = drive(*args, **kwargs)
        assert httpx.get(f"{lab.pods[0]}/items/2").status_code == 200  # behind the load's back
        return driven

    monkeypatch.setattr(runner, "_drive", drive_then_one_more)
    with pytest.raises(OutcomeMismatch, match=r"pod 0 counted .* the generator got"):
        runner.run("naive", lab=lab, fresh=True, progress=False, **SHORT)


# ---- origin reads in flight ----------------------------------------------------------------
def reads_of(stats: list[dict[str, Any]], item: int) -> list[list[Any]]:
    return [r for s in stats for r in s["reads"] if r[2] == item]


async def wait_for_read(lab: Lab, pod: int, item: int) -> list[Any]:
    """The first log entry of ``item`` on pod ``pod``, polled (the state is another process's)."""
    async with httpx.AsyncClient() as client, asyncio.timeout(30):  # a hang guard, not a timing
        while True:
            stats = (await client.get(f"{lab.pods[pod]}/stats")).json()
            if found := reads_of([stats], item):
                return found[0]
            await asyncio.sleep(0.02)


def test_a_read_in_flight_is_in_the_pods_log_from_its_start(lab: Lab) -> None:
    lab.configure(StrategyConfig(strategy="naive", origin_latency_ms=3000))

    async def scenario() -> tuple[list[Any], httpx.Response]:
        async with httpx.AsyncClient(timeout=30) as client:
            answer = asyncio.create_task(client.get(f"{lab.pods[0]}/items/3"))
            seen = await wait_for_read(lab, 0, 3)
            return seen, await answer

    seen, answer = asyncio.run(scenario())
    start, end, item, ok, fail_open = seen
    assert (end, ok, item, fail_open) == (None, False, 3, False), "listed in flight, no end yet"
    assert answer.status_code == 200
    ((start_after, end_after, _, ok_after, _),) = reads_of(lab.stats(), 3)  # the same one, ended
    assert start_after == start and end_after is not None and end_after >= start and ok_after


def test_the_runner_waits_for_a_read_in_flight_and_keeps_one_past_its_bound(lab: Lab) -> None:
    config = StrategyConfig(strategy="naive", origin_latency_ms=1500)
    lab.configure(config)
    answers: list[int] = []
    request = threading.Thread(
        target=lambda: answers.append(httpx.get(f"{lab.pods[1]}/items/4", timeout=30).status_code)
    )
    request.start()
    try:
        asyncio.run(wait_for_read(lab, 1, 4))
        now = runner.settled_stats(lab, config, limit_s=0)  # no wait: the read stays marked
        ((_, end, _, ok, _),) = reads_of(now, 4)
        assert end is None and not ok
        settled = runner.settled_stats(lab, config)
        ((_, end, _, ok, _),) = reads_of(settled, 4)
        assert end is not None and ok, "settled_stats returned before the read ended"
    finally:
        request.join()
    assert answers == [200]
