"""Binder and JupyterHub: the image files, finding ``redis-server`` without root, and what the
set-up says when it is missing and there is no root.

``scripts/ensure-system.sh`` runs here with a ``PATH`` made for each case (a fake ``id`` for a
non-root user, a fake ``apt-get`` that records its calls, no ``sudo`` or one that refuses) and
``STAMPEDE_REDIS_PLACES`` pointing at an empty folder, so the machine's own ``redis-server``
stays out of sight. ``tests/test_unprivileged.py`` does the same as a real user without root.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

import stampede.lab
from stampede.errors import RedisNotFound
from stampede.lab import find_redis_server

ROOT = Path(__file__).resolve().parent.parent
BINDER = ROOT / "binder"
ENSURE = ROOT / "scripts" / "ensure-system.sh"


# ---- binder/ --------------------------------------------------------------------------------
def test_binder_installs_redis_server_from_apt() -> None:
    lines = (BINDER / "apt.txt").read_text().split()
    assert "redis-server" in lines


def test_binder_python_is_one_the_project_supports() -> None:
    runtime = (BINDER / "runtime.txt").read_text().strip()
    assert re.fullmatch(r"python-3\.\d+", runtime), runtime
    minor = int(runtime.split(".")[1])
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    floor = re.match(r">=\s*3\.(\d+)", requires)
    assert floor and minor >= int(floor[1]), (runtime, requires)


def test_binder_requirements_are_the_lock() -> None:
    """pip reads a nested ``-r`` relative to the file that names it: binder/ -> the lock."""
    lines = [
        line.split("#", 1)[0].strip()
        for line in (BINDER / "requirements.txt").read_text().splitlines()
    ]
    nested = [line.split(None, 1)[1] for line in lines if line.startswith("-r ")]
    assert nested == ["../requirements.lock"]
    assert (BINDER / nested[0]).resolve() == ROOT / "requirements.lock"
    assert not [line for line in lines if line and not line.startswith("-r ")]


def test_binder_post_build_installs_the_package_and_the_origin() -> None:
    post_build = BINDER / "postBuild"
    assert os.access(post_build, os.X_OK), "repo2docker runs postBuild only if it is executable"
    text = post_build.read_text()
    assert "pip install --no-cache-dir --no-deps -e ." in text
    assert "python -m stampede.origin" in text
    assert subprocess.run(["bash", "-n", str(post_build)], check=False).returncode == 0


# ---- finding redis-server -------------------------------------------------------------------
@pytest.fixture
def no_redis_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv("STAMPEDE_REDIS_SERVER", raising=False)
    monkeypatch.delenv(stampede.lab.REDIS_PLACES_ENV, raising=False)
    return empty


def real_redis_server() -> str:
    found = shutil.which("redis-server") or shutil.which(
        "redis-server", path=os.pathsep.join(stampede.lab.REDIS_PLACES)
    )
    assert found, "these tests need a redis-server on the machine, as the whole suite does"
    return found


def test_the_setting_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    server = real_redis_server()
    link = tmp_path / "my-redis"
    link.symlink_to(server)
    monkeypatch.setenv("STAMPEDE_REDIS_SERVER", str(link))
    assert find_redis_server() == str(link)


def test_a_bad_setting_is_an_error_not_a_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STAMPEDE_REDIS_SERVER", "/nowhere/redis-server")
    with pytest.raises(RedisNotFound, match="STAMPEDE_REDIS_SERVER='/nowhere/redis-server'"):
        find_redis_server()


def test_found_in_the_usual_places_when_path_lacks_it(
    no_redis_on_path: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A hub user's PATH often lacks /usr/sbin (or the conda env's bin): look there too."""
    place = tmp_path / "sbin"
    place.mkdir()
    (place / "redis-server").symlink_to(real_redis_server())
    monkeypatch.setattr(stampede.lab, "REDIS_PLACES", (str(place),))
    assert find_redis_server() == str(place / "redis-server")


def test_the_places_setting_replaces_the_usual_places(
    no_redis_on_path: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``STAMPEDE_REDIS_PLACES`` moves the lookup away from /usr/bin, as ensure-system.sh does."""
    place, empty = tmp_path / "here", tmp_path / "empty"
    place.mkdir()
    empty.mkdir()
    (place / "redis-server").symlink_to(real_redis_server())
    monkeypatch.setenv(stampede.lab.REDIS_PLACES_ENV, os.pathsep.join([str(empty), str(place)]))
    assert stampede.lab.redis_places() == [str(empty), str(place)]
    assert find_redis_server() == str(place / "redis-server")
    monkeypatch.setenv(stampede.lab.REDIS_PLACES_ENV, str(empty))
    with pytest.raises(RedisNotFound, match="Without root"):
        find_redis_server()


def test_missing_everywhere_says_what_to_do_with_and_without_root(
    no_redis_on_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stampede.lab, "REDIS_PLACES", ())
    with pytest.raises(RedisNotFound) as caught:
        find_redis_server()
    message = str(caught.value)
    assert "sudo apt-get install redis-server" in message  # with root
    assert "Without root" in message and "conda install -c conda-forge redis-server" in message
    assert "STAMPEDE_REDIS_SERVER" in message


# ---- scripts/ensure-system.sh ---------------------------------------------------------------
SUDO_REFUSES = 'echo "sudo: a password is required" >&2\nexit 1\n'  # `sudo -n`, not in sudoers


def fake_bin(where: Path, uid: int, sudo: bool | str) -> Path:
    """A PATH with cat, a fake ``id`` and a fake ``apt-get`` that logs; ``sudo`` if asked (a
    string: the fake sudo's script, e.g. :data:`SUDO_REFUSES`)."""
    where.mkdir()
    (where / "cat").symlink_to(shutil.which("cat") or "/bin/cat")
    scripts = {"id": f"echo {uid}\n", "apt-get": f'echo "apt-get $*" >> {where}/calls\n'}
    if sudo:
        passes = '"$@"\n' if sudo is True else str(sudo)
        scripts["sudo"] = f'echo "sudo $*" >> {where}/calls\n[ "$1" = -n ] && shift\n{passes}'
    for name, body in scripts.items():
        (where / name).write_text("#!/bin/bash\n" + body)
        (where / name).chmod(0o755)
    return where


def ensure_system(path: Path, places: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": str(path), "STAMPEDE_REDIS_PLACES": str(places), "HOME": str(places)}
    return subprocess.run(
        ["/bin/bash", str(ENSURE)], env=env, capture_output=True, text=True, timeout=30,
        check=False, stdin=subprocess.DEVNULL,  # no terminal: sudo cannot ask for a password
    )  # fmt: skip


@pytest.fixture
def nowhere(tmp_path: Path) -> Path:
    empty = tmp_path / "places"
    empty.mkdir()
    return empty


def test_no_root_no_sudo_says_what_to_do_and_installs_nothing(
    tmp_path: Path, nowhere: Path
) -> None:
    path = fake_bin(tmp_path / "bin", uid=1000, sudo=False)
    result = ensure_system(path, nowhere)
    assert result.returncode == 1
    assert "cannot install system packages" in result.stderr
    assert "conda install -c conda-forge redis-server" in result.stderr
    assert "STAMPEDE_REDIS_SERVER" in result.stderr
    assert not (path / "calls").exists(), "it must not try apt-get without root"


def test_root_installs_with_apt_get(tmp_path: Path, nowhere: Path) -> None:
    path = fake_bin(tmp_path / "bin", uid=0, sudo=False)
    result = ensure_system(path, nowhere)
    assert result.returncode == 0, result.stderr
    calls = (path / "calls").read_text()
    assert "apt-get install" in calls and "redis-server" in calls and "sudo" not in calls


def test_a_user_with_sudo_installs_through_sudo(tmp_path: Path, nowhere: Path) -> None:
    path = fake_bin(tmp_path / "bin", uid=1000, sudo=True)
    result = ensure_system(path, nowhere)
    assert result.returncode == 0, result.stderr
    assert "sudo apt-get install" in (path / "calls").read_text()


def test_sudo_that_refuses_is_no_root_and_installs_nothing(tmp_path: Path, nowhere: Path) -> None:
    """sudo installed but not allowed (a hub image's sudo, no sudoers entry): no password
    prompt, no apt-get, the same advice as without sudo."""
    path = fake_bin(tmp_path / "bin", uid=1000, sudo=SUDO_REFUSES)
    result = ensure_system(path, nowhere)
    assert result.returncode == 1
    assert "cannot install system packages" in result.stderr
    calls = (path / "calls").read_text()
    assert calls == "sudo -n true\n", "only the check may run, without a prompt"


def test_present_in_a_usual_place_installs_nothing(tmp_path: Path, nowhere: Path) -> None:
    (nowhere / "redis-server").symlink_to(real_redis_server())
    path = fake_bin(tmp_path / "bin", uid=1000, sudo=False)
    result = ensure_system(path, nowhere)
    assert result.returncode == 0, result.stderr
    assert not (path / "calls").exists()
