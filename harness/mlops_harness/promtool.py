"""``promtool`` (Prometheus' checker) without the Prometheus server: the static binary
from Debian's ``prometheus`` package, extracted once into the git-ignored ``.cache/``."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from mlops_harness.paths import CACHE, exclusive

TOOLS = CACHE / "tools"


class Unavailable(RuntimeError):
    """No promtool here, and none could be fetched; the message says why."""


def promtool() -> Path:
    """A working promtool: on PATH, cached, or fetched with ``apt-get download``."""
    found = shutil.which("promtool")
    if found:
        return Path(found)
    cached = TOOLS / "promtool"
    with exclusive("promtool"):  # one test process fetches it, the others wait
        if not cached.is_file():
            TOOLS.mkdir(parents=True, exist_ok=True)
            fetch(cached)
    return cached


def fetch(cached: Path) -> None:
    if not shutil.which("apt-get") or not shutil.which("dpkg-deb"):
        raise Unavailable("promtool is not installed and this is no Debian system to fetch it")
    with tempfile.TemporaryDirectory() as scratch:
        download = subprocess.run(
            ["apt-get", "download", "prometheus"], cwd=scratch, capture_output=True, text=True
        )
        packages = list(Path(scratch).glob("prometheus_*.deb"))
        if download.returncode != 0 or not packages:
            raise Unavailable(f"apt-get download prometheus failed: {download.stderr[-500:]}")
        tree = Path(scratch) / "tree"
        tree.mkdir()
        archive = subprocess.run(
            ["dpkg-deb", "--fsys-tarfile", str(packages[0])], capture_output=True, check=True
        ).stdout
        subprocess.run(
            ["tar", "-x", "-C", str(tree), "./usr/bin/promtool"], input=archive, check=True
        )
        shutil.copy2(tree / "usr" / "bin" / "promtool", cached)
