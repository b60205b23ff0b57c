"""Prometheus' programs without installing its daemons: the static binaries of Debian's
``prometheus``, ``prometheus-alertmanager`` and ``prometheus-pushgateway`` packages,
extracted once into the git-ignored ``.cache/``: ``promtool`` (the checker) and
``amtool`` (Alertmanager's); and the three servers `make observe` starts, installed."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from mlops_harness.docker_engine import Unavailable as EngineUnavailable
from mlops_harness.docker_engine import apt_install, is_root
from mlops_harness.paths import CACHE, exclusive

TOOLS = CACHE / "tools"
# Each program, by the Debian package that ships it as /usr/bin/<program>.
PACKAGES = {
    "promtool": "prometheus",
    "prometheus": "prometheus",
    "prometheus-alertmanager": "prometheus-alertmanager",
    "amtool": "prometheus-alertmanager",
    "prometheus-pushgateway": "prometheus-pushgateway",
}


class Unavailable(RuntimeError):
    """No such program here, and none could be fetched; the message says why."""


def promtool() -> Path:
    """A working promtool: on PATH, cached, or fetched with ``apt-get download``."""
    return prometheus_tool("promtool")


def prometheus_tool(program: str) -> Path:
    """One of PACKAGES' programs: on PATH, cached, or fetched with ``apt-get download``."""
    found = shutil.which(program)
    if found:
        return Path(found)
    cached = TOOLS / program
    with exclusive(f"tool-{program}"):  # one test process fetches it, the others wait
        if not cached.is_file():
            TOOLS.mkdir(parents=True, exist_ok=True)
            fetch(PACKAGES[program], program, cached)
    return cached


# The servers `make observe` starts, by their Debian packages' names (which are also the
# programs' names on PATH).
STACK = ("prometheus", "prometheus-alertmanager", "prometheus-pushgateway")


def ensure_stack() -> None:
    """The operations stack's servers on PATH, installed as the GUIDE tells a user to
    (Debian's packages: Alertmanager reads its templates, and Prometheus its web pages,
    from /usr/share, so the binaries alone do not do); installed here when missing, as
    root (CI runs as root). Raises Unavailable where they are missing and cannot be."""
    if all(shutil.which(program) for program in STACK):
        return
    with exclusive("operations-stack"):
        if all(shutil.which(program) for program in STACK):
            return
        if not (is_root() and shutil.which("apt-get")):
            raise Unavailable(
                "Prometheus, Alertmanager and the Pushgateway are not on PATH: apt-get install"
                " --no-install-recommends " + " ".join(STACK)
            )
        try:
            apt_install(*STACK)
        except EngineUnavailable as reason:
            raise Unavailable(str(reason)) from reason


def fetch(package: str, program: str, cached: Path) -> None:
    if not shutil.which("apt-get") or not shutil.which("dpkg-deb"):
        raise Unavailable(f"{program} is not installed and this is no Debian system to fetch it")
    with tempfile.TemporaryDirectory() as scratch:
        download = subprocess.run(
            ["apt-get", "download", package], cwd=scratch, capture_output=True, text=True
        )
        packages = list(Path(scratch).glob(f"{package}_*.deb"))
        if download.returncode != 0 or not packages:
            raise Unavailable(f"apt-get download {package} failed: {download.stderr[-500:]}")
        tree = Path(scratch) / "tree"
        tree.mkdir()
        archive = subprocess.run(
            ["dpkg-deb", "--fsys-tarfile", str(packages[0])], capture_output=True, check=True
        ).stdout
        subprocess.run(
            ["tar", "-x", "-C", str(tree), f"./usr/bin/{program}"], input=archive, check=True
        )
        partial = cached.with_suffix(".partial")
        shutil.copy2(tree / "usr" / "bin" / program, partial)
        partial.replace(cached)  # whole, or not at all
