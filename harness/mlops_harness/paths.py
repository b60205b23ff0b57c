"""Where things are: the template's checkout, its git-ignored cache, its own tools; and a
lock the test processes share while one of them makes something under the cache."""

from __future__ import annotations

import fcntl
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# The package is installed editable (`make setup`): it runs from the checkout it is in.
ROOT = Path(__file__).resolve().parents[2]
assert (ROOT / "copier.yml").is_file(), f"{ROOT} is not the template's checkout: run make setup"
CACHE = ROOT / ".cache"  # git-ignored: the shared project environment and tool caches


@contextmanager
def exclusive(name: str) -> Iterator[None]:
    """Hold a lock shared by every test process (the suite runs on several, see
    scheduling.py), while one of them makes something under .cache/ that all of them use."""
    CACHE.mkdir(exist_ok=True)
    with (CACHE / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def tool(name: str) -> str:
    """A command installed in the template's own environment (next to this Python)."""
    path = Path(sys.executable).parent / name
    assert path.exists(), f"{name} is not installed next to {sys.executable}: run make setup"
    return str(path)
