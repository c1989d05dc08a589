"""Every Python the project says it supports installs the lock.

``pyproject.toml`` promises ``requires-python >= 3.11``; Debian 12's system ``python3`` (3.11.2,
what ``apt`` and many hub images give) is the oldest such interpreter a reader is likely to
have. For Debian's interpreter and for the one running these tests, this makes a fresh
virtualenv, upgrades pip in it (as ``make setup`` does) and asks pip to resolve exactly what
``make setup`` installs (``-c requirements.lock -e '.[dev,book,peers]'``) with ``--dry-run``.

What it proves: pip's resolver, run by that interpreter, finds a distribution of every pinned
version whose ``Requires-Python``, markers and wheel tags fit that interpreter and this
platform, the pins agree with each other and with ``pyproject.toml``, and the lock pins every
package that gets installed. What it does not prove: that sdists compile, or that the code
runs on that interpreter (the test suite does that for the interpreter that runs it). It
needs PyPI, as ``make setup`` does, and takes about a minute per interpreter.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEBIAN_PYTHON = Path("/usr/bin/python3")
PIP_TIMEOUT_S = 420


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[canonical(name)] = version.strip()
    return pins


def run(cmd: list[str], timeout: float = PIP_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PIP_NO_INPUT": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env.pop("VIRTUAL_ENV", None)
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False, cwd=ROOT
    )


def fresh_venv(python: Path, where: Path) -> Path:
    """A virtualenv of ``python`` with an up-to-date pip, as ``make setup`` makes it."""
    made = run([str(python), "-m", "venv", str(where)], timeout=120)
    assert made.returncode == 0, (
        f"{python} cannot make a virtualenv (on Debian/Ubuntu: apt-get install python3-venv):\n"
        + made.stderr
    )
    pip = where / "bin" / "pip"
    upgraded = run([str(pip), "install", "-q", "--upgrade", "pip"], timeout=180)
    assert upgraded.returncode == 0, upgraded.stderr[-3000:]
    return pip


def interpreters() -> list[pytest.param]:  # type: ignore[valid-type]
    debian = pytest.param(
        DEBIAN_PYTHON,
        id="debian-system-python",
        marks=pytest.mark.skipif(
            not DEBIAN_PYTHON.exists(), reason=f"no {DEBIAN_PYTHON} on this machine (not Debian)"
        ),
    )
    return [debian, pytest.param(Path(sys.base_prefix) / "bin" / "python3", id="this-python")]


@pytest.mark.timeout(PIP_TIMEOUT_S + 400)
@pytest.mark.parametrize("python", interpreters())
def test_make_setup_resolves_from_the_lock(python: Path, tmp_path: Path) -> None:
    pip = fresh_venv(python, tmp_path / "venv")
    report = tmp_path / "report.json"
    resolved = run([
        str(pip), "install", "--dry-run", "--ignore-installed", "-q", "--report", str(report),
        "-c", "requirements.lock", "-e", ".[dev,book,peers]",
    ])  # fmt: skip
    # pip prints a warning per missing --find-links folder on some machines: keep the errors.
    errors = "\n".join(line for line in resolved.stderr.splitlines() if "is ignored" not in line)
    assert resolved.returncode == 0, f"{python}: make setup would fail:\n{errors[-4000:]}"
    data = json.loads(report.read_text())
    version = data["environment"]["python_full_version"]
    pins = lock_pins()
    unpinned, off = [], []
    for item in data["install"]:
        name, got = canonical(item["metadata"]["name"]), item["metadata"]["version"]
        if name == "stampede-lab":
            continue
        if name not in pins:
            unpinned.append(f"{name}=={got}")
        elif pins[name] != got:
            off.append(f"{name}: lock {pins[name]}, resolved {got}")
    assert not unpinned, f"Python {version} installs packages requirements.lock lacks: {unpinned}"
    assert not off, f"Python {version}: {off}"


def test_debian_python_is_the_one_that_needs_care(tmp_path: Path) -> None:
    """The check above is not vacuous: Debian's 3.11.2 refuses what 3.11.5+ accepts."""
    if not DEBIAN_PYTHON.exists():
        pytest.skip(f"no {DEBIAN_PYTHON} on this machine (not Debian)")
    version = run([str(DEBIAN_PYTHON), "-c", "import platform; print(platform.python_version())"])
    if tuple(int(p) for p in version.stdout.strip().split(".")[:3]) >= (3, 11, 5):
        pytest.skip(f"{DEBIAN_PYTHON} is {version.stdout.strip()}, not older than 3.11.5")
    pip = fresh_venv(DEBIAN_PYTHON, tmp_path / "venv")
    refused = run([str(pip), "install", "--dry-run", "--no-deps", "-q", "soupsieve==4.1.3"])
    assert refused.returncode != 0
    assert "Requires-Python >=3.11.5" in refused.stderr
