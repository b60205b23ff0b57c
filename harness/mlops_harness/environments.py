"""Where a generated project's commands run: a plain shell (``user_env``: what a user has
before any environment), the project's own ``.venv`` from such a shell (``UserShell``),
or the one byte-compiled environment the projects share (``ProjectEnv``: fast, for the
tests that check something else than how a user installs)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from mlops_harness.paths import CACHE, exclusive, tool
from mlops_harness.processes import GIT_ENV, run


def user_bin() -> Path:
    """A folder with uv and copier alone: what a user has on PATH after `pipx install uv`
    and the README's `pipx install copier && pipx inject copier copier-template-extensions`
    (the template's own environment has both)."""
    folder = CACHE / "user-bin"
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("uv", "copier"):
        link = folder / name
        if not link.exists():
            link.symlink_to(Path(sys.executable).parent / name)
    return folder


SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def user_env(uv: bool = True, **extra: str) -> dict[str, str]:
    """A plain shell's environment: the machine's settings (proxies, certificates, the
    package index), a git identity, and on PATH the system's programs and, with ``uv``,
    uv alone. No virtual environment, no PYTHONPATH, none of the template's tools; Python
    writes its byte code, as it does by default."""
    dropped = {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONDONTWRITEBYTECODE", "MAKELEVEL", "MAKEFLAGS",
               "MFLAGS", "CONDA_PREFIX", "PYTHONHOME"}  # fmt: skip
    env = {key: value for key, value in os.environ.items() if key not in dropped}
    env.update(GIT_ENV)
    env["PATH"] = f"{user_bin()}:{SYSTEM_PATH}" if uv else SYSTEM_PATH
    env["DVC_NO_ANALYTICS"] = "1"
    env["PRE_COMMIT_HOME"] = str(CACHE / "pre-commit")  # a cache, as ~/.cache/pre-commit is
    # mypy's cache, shared the same way: keyed on each file's content, so the verdict is a
    # cold run's; the third-party packages every project imports are analysed once.
    env["MYPY_CACHE_DIR"] = str(CACHE / "mypy" / "users")
    env.update(extra)
    return env


@dataclass
class ProjectEnv:
    """The one virtual environment every generated project runs in (byte-compiled): fast,
    for the tests that check something else than how a user installs and runs it."""

    venv: Path
    pre_commit_home: Path

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def make_variables(self) -> list[str]:
        """What each `make` is told: this environment's Python, not the project's .venv."""
        return [f"PYTHON={self.python}"]

    def compile_new(self, installed: str) -> None:
        """Byte-compile what a `make install` (its output, ``installed``) added. The suite
        runs with PYTHONDONTWRITEBYTECODE=1, so nothing compiles itself on import, and
        `import mlflow` costs 4-5 s instead of 1.5 s. uv's UV_COMPILE_BYTECODE recompiles
        the whole environment on every sync (23 s at level 4, with KFP's SDK); compileall
        skips what is compiled already, and runs only when uv installed a package (not
        just the project itself, which every project's install replaces)."""
        added = [line for line in installed.splitlines() if line.startswith(" + ")]
        if all("(from file://" in line for line in added):
            return
        site = next((self.venv / "lib").glob("python3*/site-packages"))
        subprocess.run(
            [str(self.python), "-m", "compileall", "-q", "-j", "0", str(site)],
            capture_output=True,
            check=False,
        )

    def env_for(self, project: Path, activated: bool = False, **extra: str) -> dict[str, str]:
        """The environment a project's command runs in: the machine's settings, a git
        identity, and on PATH the system's programs and uv, as a user's plain shell has
        them (see user_env); with ``activated``, this environment's programs first,
        as `source .venv/bin/activate` puts them (the guide says to, for bare `dvc ...`).
        Nothing else: a command that needs the environment on PATH and does not put it
        there itself fails here as it would for the user."""
        # Not the template's own make's variables: a nested make would print "Entering
        # directory" lines into the output the tests parse (CI runs the suite from make).
        inherited = {"VIRTUAL_ENV", "MAKELEVEL", "MAKEFLAGS", "MFLAGS"}
        env = {key: value for key, value in os.environ.items() if key not in inherited}
        env.update(GIT_ENV)
        path = [str(user_bin()), SYSTEM_PATH]
        env.update(
            PATH=os.pathsep.join([str(self.venv / "bin"), *path] if activated else path),
            # Several projects share one environment; each must import its own code.
            PYTHONPATH=str(project / "src"),
            DVC_NO_ANALYTICS="1",
            PRE_COMMIT_HOME=str(self.pre_commit_home),
            # One mypy cache for the projects of one environment: the same third-party code.
            MYPY_CACHE_DIR=str(CACHE / "mypy" / self.venv.name),
            PYTHONWARNINGS="ignore::DeprecationWarning",
        )
        env.update(extra)
        return env


def shared_project_env(tracked: bool = True) -> ProjectEnv:
    """A byte-compiled environment the generated projects share, under .cache/ (kept
    between runs; `make install` then only checks it). Projects install themselves into
    it with their own `make install`, so two projects whose locks pin one package at two
    versions would swap it back and forth under a test running in the other process:
    the levels without tracking (0-1) lock some of MLflow's dependencies at other
    versions than the levels with it, and get an environment of their own (``tracked``
    false; open_project chooses). A project with other such pins needs its own .venv
    (UserShell)."""
    name = "project-env" if tracked else "project-env-untracked"
    venv = CACHE / name
    with exclusive(name):
        if not (venv / "bin" / "python").exists():
            run([tool("uv"), "venv", "--quiet", "--python", sys.executable, str(venv)], CACHE)
    return ProjectEnv(venv=venv, pre_commit_home=CACHE / "pre-commit")


@dataclass
class UserShell:
    """A project as its user has it: its own .venv (its `make install` makes it), run from
    a plain shell (see user_env): nothing else on PATH but the system's programs and,
    with ``uv``, uv."""

    project: Path
    uv: bool = True

    @property
    def venv(self) -> Path:
        return self.project / ".venv"

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def make_variables(self) -> list[str]:
        return []  # the Makefile's own default: .venv

    def env_for(self, project: Path, activated: bool = False, **extra: str) -> dict[str, str]:
        env = user_env(self.uv, **extra)
        if activated:
            env["PATH"] = os.pathsep.join([str(self.venv / "bin"), env["PATH"]])
            env["VIRTUAL_ENV"] = str(self.venv)
        return env
