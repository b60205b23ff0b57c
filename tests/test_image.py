"""The slow tier, levels with a container: the generated project's serving image, built by
its own `make image` from its own Dockerfile on a real Docker engine, passes its own
`make smoke`, and answers `/predict` as the unprivileged user the Dockerfile names.

Below the registry the image serves the model baked into it (models/model.skops); with
the registry it serves the registered model from the project's MLflow store, which the
Makefile's SMOKE_ARGS mount into the container. Skipped, with the reason, where no engine
can run (see mlops_harness/docker_engine.py: it starts one as root and builds the base image's
stand-in where no registry serves it).
"""

from __future__ import annotations

import json
import logging
import shlex
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pandas as pd
import pytest
import yaml

from mlops_harness.docker_engine import Engine, Unavailable, ensure_base_image, start_engine
from mlops_harness.environments import ProjectEnv
from mlops_harness.ladder import capabilities, ladder, questions, selected_levels
from mlops_harness.locks import (
    INSTALLED,
    locked_versions,
    normalised,
    not_as_locked,
    pinned_versions,
)
from mlops_harness.processes import free_port, run
from mlops_harness.projects import Project, installed
from mlops_harness.rendering import Render

pytestmark = pytest.mark.slow

log = logging.getLogger(__name__)

# The first built level with a container (the model baked into the image) and the highest
# (the model from the registry, with every serving capability built so far): each kind of
# image as its level renders it. Levels between them build the same Dockerfile as one of
# the two, and each build costs a minute or more.
_CONTAINER_LEVELS = [
    level for level in selected_levels(built_only=True) if capabilities(level)["has_container"]
]
IMAGE_LEVELS = sorted({_CONTAINER_LEVELS[0], _CONTAINER_LEVELS[-1]}) if _CONTAINER_LEVELS else []
# The highest level's image is built with both boosting libraries (model_libraries), whose
# compiled parts need what a slim base image may lack (LightGBM: the OpenMP runtime).
LIBRARIES = ["lightgbm", "xgboost"]
SMOKE_PORT = 8000  # `make smoke` publishes this fixed port
APP_USER = "10001"  # the Dockerfile's USER
# What .dockerignore keeps out of the image: history, data, the store, the tests.
KEPT_OUT = (
    "/app/.git",
    "/app/.dvc",
    "/app/data/raw",
    "/app/mlflow.db",
    "/app/mlruns",
    "/app/tests",
)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """A Docker engine: the running one, or a dockerd started for this module and stopped
    after it."""
    try:
        running = start_engine(tmp_path_factory.mktemp("docker"))
    except Unavailable as reason:
        pytest.skip(f"no Docker engine: {reason}")
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def base_image(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The base image the Dockerfile pins for the default Python, in the engine (a stand-in
    from Debian's packages where it cannot be pulled; kept, as a pulled image would be)."""
    tag: str = ladder().BASE_IMAGES[str(questions()["python_version"]["default"])]
    try:
        ensure_base_image(engine, tag, tmp_path_factory.mktemp("base-image"))
    except Unavailable as reason:
        pytest.skip(f"no base image: {reason}")
    return tag


@dataclass
class Built:
    """A trained project and the image its own `make image` built."""

    project: Project
    image: str
    engine: Engine


@pytest.fixture(scope="module", params=IMAGE_LEVELS, ids=lambda level: f"level-{level}")
def built(
    engine: Engine,
    base_image: str,
    request: pytest.FixtureRequest,
    render: Render,
    project_env: ProjectEnv,
) -> Iterator[Built]:
    """A fresh render of the level, trained (`make data` and `make train`; from level 2
    `make train` runs the whole pipeline, registration included), and `make image` under a
    tag of the test's own, removed afterwards."""
    level: int = request.param
    libraries = LIBRARIES if level == IMAGE_LEVELS[-1] else []
    made = render(f"image{level}", maturity_level=level, model_libraries=libraries)
    project = installed(made, project_env)
    dockerfile = (project.path / "Dockerfile").read_text(encoding="utf-8")
    assert f"\nFROM {base_image}\n" in dockerfile, "the Dockerfile pins another base image"
    if not project.caps["has_pipeline"]:
        project.make("data")
    project.make("train")
    image = f"ladder-test-{project.answers['project_slug']}-level-{level}:{uuid.uuid4().hex[:12]}"
    try:
        started = time.monotonic()
        project.make("image", IMAGE=image)
        log.info("level %d: `make image` took %.1f s", level, time.monotonic() - started)
        yield Built(project, image, engine)
    finally:
        engine("image", "rm", "--force", image, check=False)


def smoke_args(project: Project) -> str:
    """The Makefile's SMOKE_ARGS as `make smoke` hands them to the shell (empty below the
    registry): what a container of this project needs to serve locally."""
    printed = run(
        [
            "make",
            "--silent",
            "--no-print-directory",
            "--eval",
            "print-smoke-args: ; @:$(info $(SMOKE_ARGS))",
            "print-smoke-args",
        ],
        project.path,
        project.env,
    )
    return printed.stdout.strip()


def test_the_image_runs_as_its_unprivileged_user_with_only_what_it_needs(built: Built) -> None:
    config = json.loads(built.engine("image", "inspect", built.image).stdout)[0]["Config"]
    assert config["User"] == APP_USER
    assert f"{SMOKE_PORT}/tcp" in config["ExposedPorts"]
    assert config["Healthcheck"]["Test"], "no HEALTHCHECK"
    probe = (
        "import os; from pathlib import Path; print(os.getuid()); "
        "print(*sorted(str(p) for p in Path('/app').rglob('*') "
        "if 'site-packages' not in p.parts and '__pycache__' not in p.parts), sep='\\n')"
    )
    inside = built.engine("run", "--rm", "--entrypoint", "python", built.image, "-c", probe)
    uid, *files = inside.stdout.split()
    assert uid == APP_USER
    baked = "/app/models/model.skops" in files
    assert baked is not built.project.caps["has_registry"], (
        "the model belongs in the image only below the registry"
    )
    leaked = [name for name in files if name.startswith(KEPT_OUT)]
    assert not leaked, f".dockerignore let these in: {leaked}"


def test_the_image_loads_the_boosting_libraries_the_project_chose(built: Built) -> None:
    """Each library the answers chose imports in the container (LightGBM's shared library
    loads only with the OpenMP runtime, which the Dockerfile installs for it)."""
    chosen = built.project.answers.get("model_libraries") or []
    if not chosen:
        pytest.skip("this level's image is built without a boosting library")
    code = "import " + ", ".join(chosen) + "; print('loaded')"
    inside = built.engine("run", "--rm", "--entrypoint", "python", built.image, "-c", code)
    assert inside.stdout.strip() == "loaded", inside


def test_the_image_holds_the_locked_versions_without_the_dev_group(built: Built) -> None:
    """The build stage installed from the project's uv.lock (--locked): every distribution
    in the image is at the lock's version, the runtime pins are all there, and neither the
    dev group nor uv itself reached the final image."""
    inside = built.engine("run", "--rm", "--entrypoint", "python", built.image, "-c", INSTALLED)
    present = {normalised(name): version for name, version in json.loads(inside.stdout).items()}
    stray = not_as_locked(present, locked_versions(built.project.path))
    assert not stray, f"in the image, not as locked: {stray}"
    runtime = pinned_versions(built.project.path, dev=False)
    development = pinned_versions(built.project.path, runtime=False)
    assert set(runtime) <= set(present)
    assert not set(development) & set(present), "the dev group is in the image"
    assert "uv" not in present


def test_make_smoke_passes(built: Built) -> None:
    container = f"{built.project.package}-smoke"  # the name the Makefile gives it
    if built.engine("container", "inspect", container, check=False).returncode == 0:
        pytest.skip(f"a container named {container} (not this test's) already exists")
    try:
        result = built.project.make("smoke", IMAGE=built.image, SMOKE_PORT=str(free_port()))
    finally:
        built.engine("container", "rm", "--force", container, check=False)
    # Below level 3 the smoke waits for /health to say ok; from it, for /ready to say ready.
    ready = '"status":"ready"' if built.project.caps["has_traceable_serving"] else '"status":"ok"'
    assert ready in result.stdout, str(result)
    from_registry = '"model_version":"models:/' in result.stdout
    assert from_registry is built.project.caps["has_registry"], str(result)


def wait_for_health(built: Built, container: str, url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        state = built.engine("container", "inspect", "--format", "{{.State.Running}}", container)
        if state.stdout.strip() != "true":
            break
        time.sleep(0.5)
    logs = built.engine("container", "logs", container, check=False)
    raise AssertionError(f"{url} did not answer 200:\n{logs.stdout}{logs.stderr}")


def probes_fit_the_measured_start(project: Project, healthy: float, ready: float) -> None:
    """The Deployment's probes, timed to the start measured here: the startup probe gives
    /health at least four times what it took (a pod's CPU limit is one core, this
    machine's two), the liveness probe waits for it, and a rollout's deadline leaves
    room for the model to load four times over before the pod is ready."""
    manifest = project.path / "deploy" / "kubernetes" / "base" / "deployment.yaml"
    deployment = yaml.safe_load(manifest.read_text(encoding="utf-8"))
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    startup = container["startupProbe"]
    budget = startup["periodSeconds"] * startup["failureThreshold"]
    assert startup["httpGet"]["path"] == "/health" and budget >= 4 * healthy, (budget, healthy)
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert deployment["spec"].get("progressDeadlineSeconds", 600) >= 4 * ready, ready


def test_the_container_predicts_the_contract_s_example(built: Built, tmp_path: Path) -> None:
    """The image run as a user would, on a free port, with the Makefile's SMOKE_ARGS: the
    example row `make example` prints is predicted as the project's own CLI predicts it."""
    project = built.project
    example = json.loads(project.make("example").stdout)
    port, container = free_port(), f"ladder-test-{uuid.uuid4().hex[:12]}"
    # Through the shell, as make runs it: SMOKE_ARGS may quote and substitute (`$(id -u)`).
    start = (
        f"{shlex.quote(built.engine.docker)} run --detach --name {container} "
        f"--publish 127.0.0.1:{port}:{SMOKE_PORT} {smoke_args(project)} {built.image}"
    )
    try:
        begun = time.monotonic()
        started = subprocess.run(["bash", "-c", start], capture_output=True, text=True, check=False)
        assert started.returncode == 0, started.stderr
        url = f"http://127.0.0.1:{port}"
        # From level 3 /health answers at once, and /ready once the model is loaded.
        wait_for_health(built, container, f"{url}/health")
        healthy = time.monotonic() - begun
        if project.caps["has_traceable_serving"]:
            wait_for_health(built, container, f"{url}/ready")
        ready = time.monotonic() - begun
        response = httpx.post(f"{url}/predict", json=example, timeout=30)
    finally:
        built.engine("container", "rm", "--force", container, check=False)
    print(f"level {project.level}'s container: /health in {healthy:.1f} s, ready in {ready:.1f} s")
    if project.caps["has_kubernetes"]:
        probes_fit_the_measured_start(project, healthy, ready)
    assert response.status_code == 200, response.text
    [served] = response.json()["predictions"]

    rows, output = tmp_path / "rows.csv", tmp_path / "predictions.csv"
    pd.DataFrame([example]).to_csv(rows, index=False)
    project.make("predict", INPUT=str(rows), OUTPUT=str(output))
    expected = pd.read_csv(output, dtype={"label": str}).iloc[0]
    # A model served through ONNX compares in float32: the same labels, nearly the same
    # numbers (0.0014 apart at most, measured on a forest); else the very same model.
    tolerance = 5e-3 if project.caps.get("has_fast_serving") else 1e-9
    if project.classifies:
        assert served["label"] == expected["label"]
        for name, probability in served["probabilities"].items():
            assert probability == pytest.approx(expected[f"proba_{name}"], abs=tolerance)
    else:
        assert served["value"] == pytest.approx(expected["prediction"], abs=tolerance)
