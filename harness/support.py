"""Shared by the template's tests and scripts: the ladder's tables, rendering and updating
projects with Copier, the shared project environment, running commands and servers."""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import numpy as np
import pandas as pd
import yaml
from copier import run_copy, run_update

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache"  # git-ignored: the shared project environment and tool caches

# Never let a test talk to a real git identity or the network by accident.
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Template Tests",
    "GIT_AUTHOR_EMAIL": "tests@example.com",
    "GIT_COMMITTER_NAME": "Template Tests",
    "GIT_COMMITTER_EMAIL": "tests@example.com",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}


@contextmanager
def exclusive(name: str) -> Iterator[None]:
    """Hold a lock shared by every test process (the suite runs on several, see
    conftest.py), while one of them makes something under .cache/ that all of them use."""
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


@cache
def ladder() -> ModuleType:
    """``extensions/context.py``, loaded by path as Copier loads it."""
    spec = importlib.util.spec_from_file_location("ladder_context", ROOT / "extensions/context.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while building
    spec.loader.exec_module(module)
    return module


@cache
def questions() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "copier.yml").read_text(encoding="utf-8"))
    return data


def choices(question: str) -> list[Any]:
    spec = questions()[question]["choices"]
    return list(spec.values()) if isinstance(spec, dict) else list(spec)


def selected_levels(built_only: bool = False) -> list[int]:
    """The levels under test: all, or those in ``$LEVELS`` (``LEVELS=0,1``), as CI's matrix
    sets it. With ``built_only``, only the levels whose capabilities are all built."""
    levels = [level.number for level in ladder().LEVELS if level.built or not built_only]
    wanted = os.environ.get("LEVELS", "").strip()
    if wanted:
        levels = [level for level in levels if str(level) in wanted.split(",")]
    return levels


def dataset_named(name: str) -> Any:
    """The dataset table's record for ``name``."""
    return next(dataset for dataset in ladder().DATASETS if dataset.name == name)


# The dataset each level executes on, where it is not the default: mixed types, missing
# values and text labels at level 1; a regression at level 2. Every level runs once, and
# every kind of data at some level (each level includes the ones below it).
LEVEL_DATASETS = {1: "penguins", 2: "diabetes"}


# How each level's guide run installs the project: with uv on PATH, as the README says,
# but for one level, which installs with pip (no uv anywhere), as a user without uv does.
PIP_LEVEL = 0


def selected_runs() -> list[tuple[int, str, str]]:
    """(level, dataset, installer) triples the slow tier executes: every built level once,
    on its dataset (LEVEL_DATASETS, else the default), installed by uv (pip at PIP_LEVEL),
    filtered by ``$LEVELS`` like the levels."""
    default = str(questions()["dataset"]["default"])
    return [
        (level, LEVEL_DATASETS.get(level, default), "pip" if level == PIP_LEVEL else "uv")
        for level in selected_levels(built_only=True)
    ]


def run_id(run: tuple[int, str, str]) -> str:
    return f"level-{run[0]}-{run[1]}-{run[2]}"


def capabilities(level: int) -> dict[str, bool]:
    caps: dict[str, bool] = ladder().capabilities_at(level)
    return caps


def lowest_built_level_with(capability: str) -> int | None:
    """The lowest built level (among $LEVELS) that has ``capability``, or None."""
    levels = [
        level for level in selected_levels(built_only=True) if capabilities(level)[capability]
    ]
    return levels[0] if levels else None


@dataclass
class Run:
    """A command's result, with both streams kept for the failure message."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return (
            f"$ {' '.join(self.args)}\n(exit {self.returncode})\n"
            f"--- stdout ---\n{clip(self.stdout)}\n--- stderr ---\n{clip(self.stderr)}"
        )


def clip(text: str, keep: int = 20000) -> str:
    """Long output without its middle: failures show up at the start or the end."""
    if len(text) <= 2 * keep:
        return text
    return f"{text[:keep]}\n[... {len(text) - 2 * keep} characters ...]\n{text[-keep:]}"


def run(
    args: list[str],
    cwd: Path,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    timeout: float = 900,
) -> Run:
    completed = subprocess.run(
        args,
        cwd=cwd,
        env=dict(env) if env is not None else None,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    result = Run(list(args), completed.returncode, completed.stdout, completed.stderr)
    if check:
        assert result.returncode == 0, str(result)
    return result


def git(cwd: Path, *args: str, check: bool = True) -> Run:
    return run(["git", *args], cwd, env={**os.environ, **GIT_ENV}, check=check)


SNAPSHOT_TAG = "v0.0.0"  # a snapshot's one tag (Copier copies from the newest tag)


def snapshot_template(destination: Path) -> Path:
    """The template as it is in this working tree (committed or not), as a fresh git
    repository with one tagged commit: what Copier needs to copy and to update from."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=False,
    )
    if listed.returncode == 0:
        names = [name for name in listed.stdout.decode().split("\0") if name]
    else:  # not a git checkout (an unpacked archive): take everything but caches
        names = [
            str(path.relative_to(ROOT))
            for path in ROOT.rglob("*")
            if path.is_file() and not {".git", ".venv", ".cache"} & set(path.parts)
        ]
    for name in names:
        source = ROOT / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    git(destination, "init", "--quiet", "--initial-branch=main")
    git(destination, "add", "--all")
    git(destination, "commit", "--quiet", "--message", "Template under test")
    git(destination, "tag", SNAPSHOT_TAG)
    return destination


def rendered_files(project: Path) -> set[str]:
    return {
        path.relative_to(project).as_posix()
        for path in project.rglob("*")
        if path.is_file() and ".git" not in path.relative_to(project).parts
    }


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

    def env_for(self, project: Path, activated: bool = False, **extra: str) -> dict[str, str]:
        """The environment a project's command runs in: the machine's settings, a git
        identity, and on PATH the system's programs and uv, as a user's plain shell has
        them (see guide.user_env); with ``activated``, this environment's programs first,
        as `source .venv/bin/activate` puts them (the guide says to, for bare `dvc ...`).
        Nothing else: a command that needs the environment on PATH and does not put it
        there itself fails here as it would for the user."""
        from guide import SYSTEM_PATH, user_bin

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
            UV_COMPILE_BYTECODE="1",
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
    a plain shell (see guide.user_env): nothing else on PATH but the system's programs and,
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
        from guide import user_env

        env = user_env(self.uv, **extra)
        if activated:
            env["PATH"] = os.pathsep.join([str(self.venv / "bin"), env["PATH"]])
            env["VIRTUAL_ENV"] = str(self.venv)
        return env


@dataclass
class Project:
    """A rendered project and how to run its own commands."""

    path: Path
    level: int
    answers: dict[str, Any]
    tools: ProjectEnv | UserShell
    caps: dict[str, bool] = field(init=False)

    def __post_init__(self) -> None:
        self.caps = capabilities(self.level)

    @property
    def package(self) -> str:
        return str(self.answers["package_name"])

    @property
    def contract(self) -> dict[str, Any]:
        """The project's data contract, as YAML reads it."""
        text = (self.path / "data" / "contract.yaml").read_text(encoding="utf-8")
        contract: dict[str, Any] = yaml.safe_load(text)
        return contract

    @property
    def target(self) -> str:
        return str(self.contract["target"]["name"])

    @property
    def features(self) -> list[str]:
        return [str(feature["name"]) for feature in self.contract["features"]]

    @property
    def classifies(self) -> bool:
        return bool(self.contract["task"] == "classification")

    @property
    def served_tolerance(self) -> float:
        """How far a served probability (or value, in target std devs) may be from the
        scikit-learn pipeline's: ONNX Runtime (level 3+) computes in float32, within the
        parity tolerance the register stage checked; below it the pipeline itself serves."""
        if not self.caps["has_fast_serving"]:
            return 1e-9
        params = yaml.safe_load((self.path / "params.yaml").read_text(encoding="utf-8"))
        return float(params["register"]["onnx_tolerance"])

    @property
    def env(self) -> dict[str, str]:
        return self.tools.env_for(self.path)

    @property
    def activated_env(self) -> dict[str, str]:
        """As after `source .venv/bin/activate`: for the bare tools (`dvc exp run`), whose
        stages run the `python` that comes first on PATH."""
        return self.tools.env_for(self.path, activated=True)

    def make(self, *targets: str, check: bool = True, **variables: str) -> Run:
        assignments = [f"{name}={value}" for name, value in variables.items()]
        return run(
            ["make", *targets, *self.tools.make_variables, *assignments],
            self.path,
            self.env,
            check=check,
        )

    def python(self, *args: str, check: bool = True) -> Run:
        return run([str(self.tools.python), *args], self.path, self.env, check=check)


def open_project(path: Path, tools: ProjectEnv | UserShell) -> Project:
    """A rendered project, at the level its answers file records."""
    answers = yaml.safe_load((path / ".copier-answers.yml").read_text(encoding="utf-8"))
    level = int(answers["maturity_level"])
    if isinstance(tools, ProjectEnv):  # the shared environment for this level's pins
        tools = shared_project_env(tracked=capabilities(level)["has_tracking"])
    return Project(path, level, answers, tools)


def render_project(
    template: Path, destination: Path, ref: str = SNAPSHOT_TAG, **answers: Any
) -> Path:
    """Copier's copy of ``template`` at ``ref`` (by default a snapshot: see
    snapshot_template) into ``destination``, on the defaults plus ``answers``, trusted."""
    run_copy(
        str(template),
        destination,
        data=answers,
        defaults=True,
        unsafe=True,
        quiet=True,
        vcs_ref=ref,
    )
    return destination


def update_project(project: Path, ref: str | None = None, **answers: Any) -> None:
    """`copier update --trust --defaults [--vcs-ref ref] --data ...` in ``project``: the
    template's newest release (or ``ref``), with ``answers`` changed and the rest kept."""
    run_update(
        project,
        data=answers,
        defaults=True,
        overwrite=True,
        unsafe=True,
        quiet=True,
        skip_answered=True,
        vcs_ref=ref,
    )


def own_data_project(scratch: Path) -> Project:
    """A level-0 project for a user's own data (the answer that needs no shipped
    contract), rendered from this working tree into ``scratch`` and installed in the
    shared environment: its contract module infers contracts for the scripts."""
    destination = render_project(
        snapshot_template(scratch / "template"),
        scratch / "project",
        maturity_level=0,
        dataset="own",
        data_source="data/external/x.csv",
    )
    project = open_project(destination, shared_project_env())
    project.make("install")
    return project


def installed(path: Path, tools: ProjectEnv | UserShell) -> Project:
    """A rendered project after its own `make install`, with everything committed once."""
    project = open_project(path, tools)
    project.make("install")
    git(path, "add", "--all")
    git(path, "commit", "--quiet", "--message", "Generate project")
    return project


def trained_project(path: Path, tools: ProjectEnv) -> Project:
    """A rendered project installed (see installed) and trained by `make train`, that run
    committed; ``raw_rows`` is its raw snapshot's size then, before any live row."""
    project = installed(path, tools)
    project.make("train")
    git(path, "add", "--all")
    git(path, "commit", "--quiet", "--message", "First training run")
    project.raw_rows = len(pd.read_csv(path / "data" / "raw" / "data.csv"))  # type: ignore[attr-defined]
    return project


# The project's lock file (uv.lock, written by its first `make install`) ------------------

# What Python writes into every environment it makes, and uv's sync leaves alone or not:
# not the project's dependencies, so neither in its lock nor compared with it.
SEED_PACKAGES = frozenset({"pip", "setuptools", "wheel"})


def normalised(name: str) -> str:
    """A distribution's name as the Python packaging rules compare them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_versions(project: Path) -> dict[str, set[str]]:
    """Each package uv.lock records, with the versions it pins: one, or one per range of
    Python versions or platforms the lock resolved apart."""
    lock = tomllib.loads((project / "uv.lock").read_text(encoding="utf-8"))
    versions: dict[str, set[str]] = {}
    for package in lock["package"]:
        versions.setdefault(normalised(package["name"]), set()).add(package["version"])
    return versions


_REQUIRES = """
import json
from importlib.metadata import distributions
print(json.dumps({d.metadata["Name"]: d.requires or [] for d in distributions()}))
"""


def forced_moves(
    project: Path, python: Path, moved: Mapping[str, tuple[set[str], set[str]]]
) -> dict[str, str]:
    """Of the packages whose locked version moved, those a requirement of a locked
    distribution (as installed in ``python``'s environment) now rules out at the old
    version: package to the distribution and the requirement that forced it. A move no
    requirement forces is a re-lock the user did not ask for."""
    from packaging.requirements import Requirement

    locked = locked_versions(project)
    requires = json.loads(
        subprocess.run([python, "-c", _REQUIRES], check=True, capture_output=True, text=True).stdout
    )
    forced: dict[str, str] = {}
    for dist, lines in requires.items():
        if normalised(dist) not in locked:
            continue  # another project's, where several share one environment
        for line in lines:
            requirement = Requirement(line)
            if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
                continue  # an extra no one installed, or another platform's requirement
            name = normalised(requirement.name)
            if name in moved and not any(
                requirement.specifier.contains(old, prereleases=True) for old in moved[name][0]
            ):
                forced[name] = f"{dist} requires {line}"
    return forced


def pinned_versions(project: Path, runtime: bool = True, dev: bool = True) -> dict[str, str]:
    """pyproject.toml's direct pins (the dependencies, the dev group, or both) for this
    machine (a pin whose environment marker does not hold here is left out): name to
    version."""
    from packaging.requirements import Requirement

    pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    lines = [
        *(pyproject["project"]["dependencies"] if runtime else []),
        *(pyproject["dependency-groups"]["dev"] if dev else []),
    ]
    pins: dict[str, str] = {}
    for line in lines:
        requirement = Requirement(line)
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        (pin,) = requirement.specifier
        assert pin.operator == "==", f"not a pin: {line}"
        pins[normalised(requirement.name)] = pin.version
    return pins


def not_as_locked(present: Mapping[str, str], locked: Mapping[str, set[str]]) -> dict[str, str]:
    """The installed distributions (``present``) at no version the lock records, but for
    the seed packages every environment has."""
    return {
        name: version
        for name, version in present.items()
        if version not in locked.get(name, set()) and name not in SEED_PACKAGES
    }


INSTALLED = (
    "import importlib.metadata as m, json; "
    "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))"
)


def installed_versions(python: Path | str, cwd: Path, env: Mapping[str, str]) -> dict[str, str]:
    """Each distribution installed in ``python``'s environment, with its version."""
    printed = run([str(python), "-c", INSTALLED], cwd, env).stdout
    return {normalised(name): version for name, version in json.loads(printed).items()}


PIPELINE_STAGES = ("ingest", "validate", "features", "train", "evaluate", "register")
# The stages level 3 adds (profile after evaluate, promote after register), by capability.
LEVEL_STAGES = {
    "has_reference_profile": ("evaluate", "profile"),
    "has_promotion": ("register", "promote"),
}


def pipeline_stages(project: Project) -> tuple[str, ...]:
    """The project's ``dvc.yaml`` stages in order, for its level."""
    stages = list(PIPELINE_STAGES)
    for capability, (after, stage) in LEVEL_STAGES.items():
        if project.caps[capability]:
            stages.insert(stages.index(after) + 1, stage)
    return tuple(stages)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def recorded_md5(project: Project, path: Path) -> str:
    """The DVC hash recorded for a data file: its .dvc pointer, or dvc.lock's stage."""
    relative = path.relative_to(project.path).as_posix()
    if project.caps["has_pipeline"]:
        lock = yaml.safe_load((project.path / "dvc.lock").read_text())
        outs = [out for stage in lock["stages"].values() for out in stage.get("outs", [])]
        return str(next(out["md5"] for out in outs if out["path"] == relative))
    pointer = yaml.safe_load(path.with_name(path.name + ".dvc").read_text())
    return str(pointer["outs"][0]["md5"])


def raw_data(project: Project) -> Path:
    return project.path / "data" / "raw" / "data.csv"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def appended(log: Path, offset: int, lines: int, timeout: float = 30) -> bytes:
    """What ``log`` gained past ``offset`` bytes, once that is ``lines`` lines or more (a
    service writes its logs off the request path, once a second), or at ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        with log.open("rb") as handle:
            handle.seek(offset)
            added = handle.read()
        if added.count(b"\n") >= lines or time.monotonic() > deadline:
            return added
        time.sleep(0.1)


def wait_for_http(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the server exited with {process.returncode} before answering")
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {timeout} s")


def wait_until_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 120) -> None:
    """From level 3 the service is alive (/health) before its model is loaded (/ready);
    below it there is no /ready (404), and alive means ready."""
    deadline = time.monotonic() + timeout
    while httpx.get(f"{url}/ready", timeout=10).status_code == 503:
        if process.poll() is not None or time.monotonic() > deadline:
            return  # let the test see the service as it is
        time.sleep(0.2)


def served_by(predicted: str) -> str | None:
    """The registry version `make predict` said it predicted with ("predict:
    models:/<name>/<version>, as the service serves it"), if it named one."""
    found = re.search(r"predict: models:/[^/\s]+/(\d+)", predicted)
    return found.group(1) if found else None


def wait_until_serving(url: str, version: str | None, timeout: float = 60) -> None:
    """From level 4 the service reloads a new champion within SERVING_RELOAD_SECONDS: wait
    until its /version is ``version`` (a service with no /version, or no version to wait
    for: at once)."""
    deadline = time.monotonic() + timeout
    while version is not None and time.monotonic() < deadline:
        answer = httpx.get(f"{url}/version", timeout=10)
        if answer.status_code != 200 or answer.json().get("version") == version:
            return
        time.sleep(0.5)


def spawn(
    args: list[str], output: Path, env: Mapping[str, str], cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """A long-running command (a server) in a session of its own, so that stop_group ends
    it with everything it starts; its output goes to the file ``output`` (a pipe nobody
    reads fills up and blocks it)."""
    with output.open("wb") as sink:
        return subprocess.Popen(
            args,
            cwd=cwd,
            env=dict(env),
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def stop_group(process: subprocess.Popen[bytes], timeout: float = 20) -> None:
    """Interrupt a process started in its own session, with everything it started; kill
    the group if it has not ended within ``timeout`` seconds."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@dataclass
class Server:
    """A generated project's service, running as a real process."""

    url: str
    process: subprocess.Popen[bytes]
    stdout: Path  # a file, not a pipe: an unread pipe fills up and blocks the server

    def stop(self) -> str:
        """Stop it (the whole process group: make and the Python it started); its output."""
        stop_group(self.process)
        return self.stdout.read_text()


@contextmanager
def serving(
    project: Project, stdout: Path, ready: bool = True, **settings: str
) -> Iterator[Server]:
    """`make serve` on a free port, answering `/health` (and, with ``ready``, `/ready` once
    it can: a test of a service with no model yet says ``ready=False``); stopped by its
    process group. ``settings`` are more environment variables (``SERVING_LOG_LEVEL=...``)."""
    port = free_port()
    with stdout.open("wb") as sink:
        process = subprocess.Popen(
            ["make", "serve", *project.tools.make_variables],
            cwd=project.path,
            env=project.tools.env_for(project.path, SERVING_PORT=str(port), **settings),
            stdout=sink,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    running = Server(f"http://127.0.0.1:{port}", process, stdout)
    try:
        wait_for_http(f"{running.url}/health", process)
        if ready:
            wait_until_ready(running.url, process)
        yield running
    finally:
        running.stop()


def awkward_table(rows: int = 400, seed: int = 7) -> pd.DataFrame:
    """A user's table nobody designed for the template: headers with capitals, spaces and
    dots, an identifier, shuffled row numbers, a constant, a flag, float32 values, a
    protected attribute, a column written after the decision (a leak), missing values in
    numbers and categories, and text labels that follow from the features (so a model can
    learn them)."""
    rng = np.random.default_rng(seed)
    income = rng.normal(52_000, 15_000, rows).round(2)
    home = rng.choice(["RENT", "OWN", "MORTGAGE"], rows)
    approved = (income > 50_000) | (home == "OWN")
    frame = pd.DataFrame(
        {
            "Loan ID": [f"L-{index:06d}" for index in range(rows)],
            "Row": rng.permutation(np.arange(1, rows + 1)),
            "Annual Income": income,
            "Home Ownership": home,
            "Yrs Since.PhD": rng.integers(0, 40, rows),
            # Ten rates, as a float32 pipeline wrote them: 3.0999999046325684, ...
            "Interest Rate": rng.choice(np.arange(31, 41) / 10, rows)
            .astype(np.float32)
            .astype(np.float64),
            "Has Co-Signer": rng.choice([True, False], rows),
            "Applicant Race": rng.choice(["A", "B", "C", "D"], rows),
            "Branch": "Wellington",
            "Decision Code": np.where(approved, "APR", "REJ"),
            "Loan Status": np.where(approved, "approved", "rejected"),
        }
    )
    frame.loc[rng.choice(rows, 15, replace=False), "Annual Income"] = np.nan
    frame.loc[0, "Annual Income"] = np.nan  # the first row too: tests that take it must cope
    frame["Home Ownership"] = frame["Home Ownership"].astype(object)
    frame.loc[rng.choice(rows, 10, replace=False), "Home Ownership"] = None
    return frame


AWKWARD_TARGET = "Loan Status"


def registry_state(project: Project) -> dict[str, Any]:
    """Aliases, and every version with its tags and its run's metrics, from MLflow."""
    script = f"""
import json
from {project.package}.mlops import config, tracking
client = tracking.client()
model = client.get_registered_model(config.MODEL_NAME)
versions = client.search_model_versions(f"name = '{{config.MODEL_NAME}}'")
print(json.dumps({{
    "aliases": {{alias: str(version) for alias, version in model.aliases.items()}},
    "versions": {{str(v.version): {{"tags": v.tags, "run_id": v.run_id,
                  "metrics": client.get_run(v.run_id).data.metrics}} for v in versions}},
}}))
"""
    return json.loads(project.python("-c", script).stdout)


def set_alias(project: Project, alias: str, version: str) -> None:
    script = (
        f"from {project.package}.mlops import config, tracking\n"
        f"tracking.client().set_registered_model_alias(config.MODEL_NAME, {alias!r}, {version!r})"
    )
    project.python("-c", script)


# Screenshots with headless Chromium (Debian's `chromium`) ------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Where the screenshot tests also save their pictures: scripts/screenshots.py sets it to
# docs/screenshots, for the docs site.
SCREENSHOTS = os.environ.get("SCREENSHOTS_DIR", "")


def screenshot(url: str, path: Path, wait_ms: int = 8000) -> str:
    """A 1280x900 picture of ``url`` as Chromium draws it (after up to ``wait_ms`` of the
    page's own scripts), saved at ``path`` (and in $SCREENSHOTS_DIR); the page's title."""
    if CHROMIUM is None:
        import pytest

        pytest.skip("no Chromium here (Debian's chromium package): no screenshot taken")
    common = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
        "--no-first-run", f"--virtual-time-budget={wait_ms}", "--window-size=1280,900",
    ]  # fmt: skip
    run([*common, f"--screenshot={path}", url], path.parent, timeout=120)
    dom = run([*common, "--dump-dom", url], path.parent, timeout=120).stdout
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(SCREENSHOTS) / path.name)
    start, end = dom.find("<title>"), dom.find("</title>")
    return dom[start + len("<title>") : end].strip() if 0 <= start < end else ""


def png_colours(path: Path, most: int = 64) -> int:
    """How many distinct byte values the PNG's pixels hold (up to ``most``): 1 or 2 for a
    blank page, dozens for one with text and pictures. Standard library only."""
    import struct
    import zlib

    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    position, compressed = 8, b""
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        if kind == b"IDAT":
            compressed += data[position + 8 : position + 8 + length]
        position += 12 + length
    pixels = zlib.decompress(compressed)
    return min(len(set(pixels[::7])), most)
