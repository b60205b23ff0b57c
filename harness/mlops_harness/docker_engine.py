"""A Docker engine, and the serving image's base, for the tests that build images.

No container registry is reachable from the machines the tests run on, so the base image
the generated Dockerfile pins cannot be pulled. Where the engine lacks it, a stand-in is
built from Debian's own packages (debootstrap) and imported under the pinned tag, so that
`docker build` finds it locally and never tries to pull. Nothing is kept in the repository:
the root filesystem is built in a scratch folder and deleted once imported; the image
stays in the engine, as a pulled base image would.

`start_engine()` gives an `Engine` (a `dockerd` started here if none answers: `stop()` it
at the end), or raises `Unavailable` with the reason, for the tests to skip on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

# The Python each Debian release ships: a stand-in can only replace a base image whose
# Python and Debian release agree with it (python:3.11.x-slim-bookworm from bookworm).
DEBIAN_PYTHON = {"bookworm": "3.11", "trixie": "3.13"}
STAND_IN_PACKAGES = "python3,python3-venv,python3-pip,curl,ca-certificates"
APT_SOURCES = Path("/etc/apt/sources.list")
APT_SOURCES_DIR = Path("/etc/apt/sources.list.d")
START_TIMEOUT = 60.0


class Unavailable(Exception):
    """No usable engine or base image here; the message says why (the tests skip on it)."""


@dataclass
class Engine:
    """A Docker engine the client answers on; ``daemon`` is set if this module started it."""

    docker: str
    daemon: subprocess.Popen[bytes] | None = None
    daemon_log: Path | None = None

    def __call__(
        self, *args: str, check: bool = True, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        """``docker ARGS``, output captured; with ``check``, a failure shows both streams."""
        done = subprocess.run(
            [self.docker, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"$ docker {' '.join(args)}\n(exit {done.returncode})\n{done.stdout}{done.stderr}"
            )
        return done

    def answers(self) -> bool:
        return (
            self("version", "--format", "{{.Server.Version}}", check=False, timeout=30).returncode
            == 0
        )

    def has_image(self, tag: str) -> bool:
        return self("image", "inspect", tag, check=False, timeout=30).returncode == 0

    def stop(self) -> None:
        """Stop the daemon this module started (by its PID; then what is left of its own
        session, containerd included). An engine found running is left alone."""
        if self.daemon is None or self.daemon.poll() is not None:
            return
        self.daemon.send_signal(signal.SIGTERM)
        try:
            self.daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.daemon.kill()
            self.daemon.wait()
        # The session is dockerd's own (start_new_session): its id is dockerd's PID.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.daemon.pid, signal.SIGTERM)
        log.info("stopped the Docker daemon %d", self.daemon.pid)


def is_root() -> bool:
    return os.geteuid() == 0


def apt_install(*packages: str) -> None:
    """``apt-get install`` (after an update if the first attempt fails: stale lists)."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
    if subprocess.run(install, env=env, capture_output=True, check=False).returncode == 0:
        return
    subprocess.run(["apt-get", "update"], env=env, capture_output=True, check=False)
    done = subprocess.run(install, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise Unavailable(f"apt-get install {' '.join(packages)} failed: {done.stderr[-500:]}")


def start_engine(scratch: Path) -> Engine:
    """The engine the client already answers on; else a `dockerd` started here as root
    (installed first from Debian's docker.io on CI). Raises `Unavailable` otherwise."""
    docker, dockerd = shutil.which("docker"), shutil.which("dockerd")
    if docker and Engine(docker).answers():
        log.info("using the running Docker engine")
        return Engine(docker)
    if not is_root():
        raise Unavailable("no Docker engine answers, and starting one needs root")
    if not dockerd:
        if not (os.environ.get("CI") and shutil.which("apt-get")):
            raise Unavailable("no Docker engine answers and dockerd is not installed")
        apt_install("docker.io")
        docker, dockerd = shutil.which("docker"), shutil.which("dockerd")
    if not (docker and dockerd):
        raise Unavailable("the docker client or dockerd is missing")
    started = time.monotonic()
    scratch.mkdir(parents=True, exist_ok=True)
    daemon_log = scratch / "dockerd.log"
    with daemon_log.open("wb") as sink:
        daemon = subprocess.Popen(
            [dockerd],
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own session: stopped by its PID, not by ours
        )
    engine = Engine(docker, daemon, daemon_log)
    deadline = time.monotonic() + START_TIMEOUT
    while not engine.answers():
        if daemon.poll() is not None or time.monotonic() > deadline:
            engine.stop()
            tail = daemon_log.read_text(errors="replace")[-1500:]
            raise Unavailable(f"dockerd did not start (exit {daemon.returncode}):\n{tail}")
        time.sleep(0.5)
    log.info("started dockerd (PID %d) in %.1f s", daemon.pid, time.monotonic() - started)
    return engine


def debian_mirror(suite: str) -> str:
    """The Debian archive apt uses (one-line ``.list`` or deb822 ``.sources`` files):
    preferably an entry for ``suite`` itself, else any main-archive entry."""
    entries: list[tuple[str, list[str]]] = []  # (URI, suites) of each `deb` source
    files = [APT_SOURCES, *sorted(APT_SOURCES_DIR.glob("*.list"))]
    for path in filter(Path.is_file, files):
        for line in path.read_text(errors="replace").splitlines():
            words = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
            if len(words) >= 3 and words[0] == "deb":
                entries.append((words[1], [words[2]]))
    for path in sorted(APT_SOURCES_DIR.glob("*.sources")):
        for stanza in re.split(r"\n\s*\n", path.read_text(errors="replace")):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if ":" in line and not line.startswith(("#", " ", "\t")):
                    name, value = line.split(":", 1)
                    fields[name.strip().lower()] = value.strip()
            if "deb" in fields.get("types", "").split() and fields.get("enabled") != "no":
                for uri in fields.get("uris", "").split():
                    entries.append((uri, fields.get("suites", "").split()))
    for uri, suites in entries:
        if suite in suites:
            return uri
    for uri, suites in entries:
        if "security" not in uri and any("-" not in name for name in suites):
            return uri
    raise Unavailable("no Debian archive found in apt's sources for the stand-in base image")


def remove_rootfs(rootfs: Path) -> None:
    """Delete a debootstrap tree, never through a /proc or /sys it left mounted."""
    mounts = [
        line.split()[1]
        for line in Path("/proc/mounts").read_text().splitlines()
        if line.split()[1].startswith(f"{rootfs}/")
    ]
    for mount in sorted(mounts, reverse=True):
        subprocess.run(["umount", "--lazy", mount], capture_output=True, check=False)
    if any(
        line.split()[1].startswith(f"{rootfs}/")
        for line in Path("/proc/mounts").read_text().splitlines()
    ):
        log.warning("left %s in place: something is still mounted in it", rootfs)
        return
    shutil.rmtree(rootfs, ignore_errors=True)


def ensure_base_image(engine: Engine, tag: str, scratch: Path) -> None:
    """Make ``tag`` (``python:3.11.14-slim-bookworm``) exist in the engine: as found, or as
    a stand-in built from Debian's packages (debootstrap, then ``docker import``)."""
    if engine.has_image(tag):
        log.info("base image %s is present", tag)
        return
    pinned = re.fullmatch(r"python:(\d+\.\d+)\.\d+-slim-(\w+)", tag)
    if not pinned:
        raise Unavailable(f"{tag} is not in the engine, and no stand-in is known for it")
    python, suite = pinned.groups()
    if DEBIAN_PYTHON.get(suite) != python:
        raise Unavailable(f"{tag} is not in the engine; Debian {suite} has no Python {python}")
    if not is_root():
        raise Unavailable(f"{tag} is not in the engine, and building a stand-in needs root")
    if not shutil.which("debootstrap"):
        if not shutil.which("apt-get"):
            raise Unavailable(f"{tag} is not in the engine, and debootstrap is missing")
        apt_install("debootstrap")
    started = time.monotonic()
    scratch.mkdir(parents=True, exist_ok=True)
    rootfs = scratch / "rootfs"
    try:
        bootstrap = subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={STAND_IN_PACKAGES}",
                suite,
                str(rootfs),
                debian_mirror(suite),
            ],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if bootstrap.returncode != 0:
            raise Unavailable(
                f"debootstrap failed: {(bootstrap.stdout + bootstrap.stderr)[-1500:]}"
            )
        # What the official image gives: `python` and `pip`, and pip allowed to install
        # into the system Python (the Dockerfile runs `pip install .` as root).
        for name, target in (("python", "python3"), ("pip", "pip3")):
            if not (rootfs / "usr/bin" / name).exists():
                (rootfs / "usr/bin" / name).symlink_to(target)
        (rootfs / f"usr/lib/python{python}/EXTERNALLY-MANAGED").unlink(missing_ok=True)
        # This machine's trust and index settings (a proxy's CA), so pip inside a build
        # reaches the package index as pip does here.
        certificates = Path("/etc/ssl/certs/ca-certificates.crt")
        if certificates.is_file():
            shutil.copy2(certificates, rootfs / "etc/ssl/certs/ca-certificates.crt")
        if Path("/etc/pip.conf").is_file():
            shutil.copy2("/etc/pip.conf", rootfs / "etc/pip.conf")
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(
            [
                engine.docker,
                "import",
                "--change",
                "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "--change",
                "ENV LANG=C.UTF-8",
                "--change",
                'CMD ["python3"]',
                "-",
                tag,
            ],
            stdin=tar.stdout,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert tar.stdout is not None
        tar.stdout.close()
        if tar.wait() != 0 or imported.returncode != 0:
            raise Unavailable(f"importing the stand-in failed: {imported.stderr[-1500:]}")
    finally:
        remove_rootfs(rootfs)
    log.info("built the stand-in %s in %.1f s", tag, time.monotonic() - started)
