"""``stampede.__all__`` is honest, and importing the package does nothing (STYLE.md 8, 9)."""

from __future__ import annotations

import os
import subprocess
import sys
import types

import stampede


def is_import_helper(name: str, value: object) -> bool:
    """``from __future__ import annotations`` and typing's names are not the package's API."""
    if name in {"annotations", "TYPE_CHECKING"}:
        return True
    return getattr(value, "__module__", None) == "typing"


def test_all_is_importable_and_complete() -> None:
    for name in stampede.__all__:
        assert hasattr(stampede, name), name
    public = {
        name
        for name, value in vars(stampede).items()
        if not name.startswith("_")
        and not (isinstance(value, types.ModuleType) and name not in stampede.__all__)
        and not is_import_helper(name, value)
    }
    assert public == set(stampede.__all__)
    assert len(stampede.__all__) == len(set(stampede.__all__))


def test_exported_members_say_where_they_live() -> None:
    for name in stampede.__all__:
        member = getattr(stampede, name)
        module = getattr(member, "__module__", None) or member.__name__
        assert module.startswith("stampede"), (name, module)


IMPORT_PROBE = """
import os, sys, threading
import stampede
def target(fd):
    try:
        return os.readlink(f'/proc/self/fd/{fd}')
    except OSError:  # the directory listing's own descriptor, closed by now
        return ''
sockets = [fd for fd in os.listdir('/proc/self/fd') if target(fd).startswith('socket:')]
children = [p for p in os.listdir('/proc') if p.isdigit() and
            open(f'/proc/{p}/stat').read().rsplit(')', 1)[1].split()[1] == str(os.getpid())]
print(threading.active_count(), len(sockets), len(children))
"""


def test_importing_stampede_starts_nothing_and_opens_no_socket() -> None:
    env = {
        **os.environ,
        "STAMPEDE_REDIS_URL": "redis://192.0.2.1:1/0",  # a connection attempt would hang or fail
        "STAMPEDE_POD_URLS": "http://192.0.2.1:1",
        "STAMPEDE_STRATEGY": "nope",  # a settings read at import would raise
    }
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_PROBE], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "0", "0"]  # threads, sockets, child processes
