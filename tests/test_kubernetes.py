"""The Kubernetes manifests (kustomize base and overlays) of the levels that have them:
each overlay renders with kubectl's built-in kustomize, as `make deploy` applies it,
passes the Kubernetes schemas strictly, and says what its environment needs."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlops_harness.ladder import capabilities, ladder, selected_levels
from mlops_harness.paths import tool
from mlops_harness.processes import run
from mlops_harness.rendering import Render

KUBERNETES = Path("deploy") / "kubernetes"
ENVIRONMENTS = ("staging", "production")
LEVEL = next(cap.level for cap in ladder().CAPABILITIES if cap.name == "has_kubernetes")
# The newest schemas kubernetes-validate bundles, and an older release, so that no field
# newer than the clusters teams still run slips in.
VERSIONS = ("1.30.0", "1.37.0")
PROJECTS = {
    "loan-default-risk": {"project_name": "Loan Default Risk"},
    # The longest names the questions allow: every name and label must still fit.
    "longest-names": {"project_slug": "b" * 50, "package_name": "a" * 30},
}
KINDS = {
    "Namespace",
    "ConfigMap",
    "Deployment",
    "Service",
    "HorizontalPodAutoscaler",
    "PodDisruptionBudget",
    "NetworkPolicy",
}
DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")  # Namespace and Service names
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")


def kubectl() -> str:
    found = shutil.which("kubectl")
    if not found:
        pytest.skip("kubectl is not installed: its built-in kustomize renders the overlays")
    return found


@dataclass
class Overlay:
    """One environment's manifests, as `kubectl kustomize` renders them."""

    environment: str
    slug: str
    folder: Path  # the overlay in the project
    stream: Path  # the rendered stream, for the validator
    resources: list[dict[str, Any]]

    @property
    def namespace(self) -> str:
        return f"{self.slug}-{self.environment}"

    def one(self, kind: str) -> dict[str, Any]:
        found = [resource for resource in self.resources if resource["kind"] == kind]
        assert len(found) == 1, f"{len(found)} {kind} objects in {self.environment}"
        return found[0]

    @property
    def pod(self) -> dict[str, Any]:
        spec: dict[str, Any] = self.one("Deployment")["spec"]["template"]
        return spec

    @property
    def container(self) -> dict[str, Any]:
        containers = self.pod["spec"]["containers"]
        assert len(containers) == 1, "one container per pod: the service"
        found: dict[str, Any] = containers[0]
        return found

    @property
    def settings(self) -> dict[str, str]:
        data: dict[str, str] = self.one("ConfigMap")["data"]
        return data


def kustomize(project: Path, environment: str, scratch: Path) -> Overlay:
    folder = project / KUBERNETES / "overlays" / environment
    result = run([kubectl(), "kustomize", str(folder)], project)
    stream = scratch / f"{environment}.yaml"
    stream.write_text(result.stdout, encoding="utf-8")
    resources = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text(encoding="utf-8"))
    return Overlay(environment, str(answers["project_slug"]), folder, stream, resources)


def problems(stream: Path, resources: int) -> list[str]:
    """What `kubernetes-validate --strict` finds in a stream of ``resources`` objects,
    against each of VERSIONS. It only warns, and exits 0, on a kind or apiVersion it has
    no schema for: a resource it did not pass is a problem too."""
    versions = [option for version in VERSIONS for option in ("--kubernetes-version", version)]
    result = run(
        [tool("kubernetes-validate"), "--strict", *versions, str(stream)],
        stream.parent,
        check=False,
    )
    found = re.findall(r"^(?:ERROR|WARN|FATAL) .*$", result.stdout, re.M)
    if result.returncode and not found:
        found.append(str(result))
    passed = re.findall(r"^INFO .* passed for resource ", result.stdout, re.M)
    if len(passed) != resources * len(VERSIONS):
        found.append(f"{len(passed)} passed of {resources} resources x {len(VERSIONS)} versions")
    return found


@pytest.fixture(scope="module")
def projects(render: Render) -> dict[str, Path]:
    if LEVEL not in selected_levels():
        pytest.skip(f"level {LEVEL}, the first with Kubernetes manifests, is not in $LEVELS")
    kubectl()
    return {
        name: render(name, maturity_level=LEVEL, **answers) for name, answers in PROJECTS.items()
    }


@pytest.fixture(
    scope="module",
    params=[(name, environment) for name in PROJECTS for environment in ENVIRONMENTS],
    ids=lambda param: "-".join(param),
)
def overlay(
    request: pytest.FixtureRequest,
    projects: dict[str, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Overlay:
    name, environment = request.param
    return kustomize(projects[name], environment, tmp_path_factory.mktemp(environment))


def test_only_the_levels_with_kubernetes_render_its_manifests(rendered: tuple[int, Path]) -> None:
    level, project = rendered
    if not capabilities(level)["has_kubernetes"]:
        assert not (project / KUBERNETES).exists(), f"level {level} has no Kubernetes manifests"
        return
    overlays = project / KUBERNETES / "overlays"
    assert (project / KUBERNETES / "base" / "kustomization.yaml").is_file()
    # Every overlay the project has is one this module renders and validates.
    assert sorted(path.name for path in overlays.iterdir()) == sorted(ENVIRONMENTS)


def test_each_overlay_passes_the_kubernetes_schemas_strictly(overlay: Overlay) -> None:
    assert {resource["kind"] for resource in overlay.resources} == KINDS
    assert len(overlay.resources) == len(KINDS)
    assert not problems(overlay.stream, len(overlay.resources))


def test_each_overlay_serves_its_own_alias_in_its_own_namespace(overlay: Overlay) -> None:
    namespace = overlay.one("Namespace")
    assert namespace["metadata"]["name"] == overlay.namespace
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for resource in overlay.resources:
        if resource["kind"] != "Namespace":
            assert resource["metadata"]["namespace"] == overlay.namespace, resource["kind"]

    settings = overlay.settings
    assert settings["SERVING_MODEL_ALIAS"] == overlay.environment
    assert settings["SERVING_MODEL_NAME"] == overlay.slug
    assert settings["SERVING_CHALLENGER_ALIAS"] == "challenger"
    assert 0 <= float(settings["SERVING_AB_SHARE"]) <= 1
    assert settings["SERVING_METRICS"] == "true"
    container = overlay.container
    assert container["envFrom"] == [
        {"configMapRef": {"name": overlay.one("ConfigMap")["metadata"]["name"]}}
    ]

    # The registry is the team's MLflow server, named by an optional Secret; so is the
    # store of the logs.
    secrets = {
        variable["name"]: variable["valueFrom"]["secretKeyRef"]
        for variable in container["env"]
        if "secretKeyRef" in variable.get("valueFrom", {})
    }
    assert secrets == {
        "MLFLOW_TRACKING_URI": {
            "name": f"{overlay.slug}-mlflow",
            "key": "tracking-uri",
            "optional": True,
        },
        "MLFLOW_TRACKING_TOKEN": {
            "name": f"{overlay.slug}-mlflow",
            "key": "token",
            "optional": True,
        },
        # deploy/mlflow's server wants a login (basic auth), and a bearer token none
        "MLFLOW_TRACKING_USERNAME": {
            "name": f"{overlay.slug}-mlflow",
            "key": "username",
            "optional": True,
        },
        "MLFLOW_TRACKING_PASSWORD": {
            "name": f"{overlay.slug}-mlflow",
            "key": "password",
            "optional": True,
        },
    } | {  # the store the logs are shipped to (SERVING_LOG_SHIP_TO), by another Secret
        variable: {"name": f"{overlay.slug}-log-store", "key": key, "optional": True}
        for variable, key in (
            ("AWS_ACCESS_KEY_ID", "access-key-id"),
            ("AWS_SECRET_ACCESS_KEY", "secret-access-key"),
            ("AWS_ENDPOINT_URL", "endpoint-url"),
        )
    }

    # The image `make image` builds, tagged by the overlay's kustomize `images:`.
    kustomization = yaml.safe_load((overlay.folder / "kustomization.yaml").read_text())
    (image,) = kustomization["images"]
    assert image["name"] == overlay.slug
    assert container["image"] == f"{overlay.slug}:{image['newTag']}"


def test_the_probes_ask_health_and_readiness_on_the_service_port(overlay: Overlay) -> None:
    container = overlay.container
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"http": 8000}
    probes = {
        name: (container[name]["httpGet"]["path"], ports[container[name]["httpGet"]["port"]])
        for name in ("startupProbe", "livenessProbe", "readinessProbe")
    }
    assert probes == {
        "startupProbe": ("/health", 8000),
        "livenessProbe": ("/health", 8000),
        "readinessProbe": ("/ready", 8000),  # 503 until a model is loaded
    }
    assert overlay.settings["SERVING_PORT"] == "8000"
    annotations = overlay.pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "8000"
    assert annotations["prometheus.io/path"] == "/metrics"
    for kind in ("requests", "limits"):
        assert set(container["resources"][kind]) == {"cpu", "memory"}, kind


def test_the_pods_run_as_the_image_s_user_on_a_read_only_root(overlay: Overlay) -> None:
    dockerfile = (overlay.folder.parents[3] / "Dockerfile").read_text()
    user = re.search(r"^USER (\d+)$", dockerfile, re.M)
    assert user, "the Dockerfile sets a numeric USER"
    uid = int(user.group(1))

    pod = overlay.pod["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == pod["securityContext"]["runAsGroup"] == uid
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = overlay.container["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == uid
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}

    # Writable places: /tmp (an emptyDir) and the logs' folder (the shared claim); the
    # keys are a Secret, read-only, where SERVING_API_KEYS_FILE points.
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounts = {mount["mountPath"]: mount for mount in overlay.container["volumeMounts"]}
    keys = overlay.settings["SERVING_API_KEYS_FILE"]
    assert set(mounts) == {"/tmp", "/app/logs", keys}
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    assert mounts[keys]["readOnly"] is True
    assert volumes[mounts[keys]["name"]]["secret"]["optional"] is True


def test_each_pod_writes_its_own_logs_and_can_keep_them_past_the_pod(
    overlay: Overlay, tmp_path: Path
) -> None:
    """Each pod writes its prediction log (and feedback log) under its own name. By default
    the folder is the pod's emptyDir; an overlay that takes the persistent-logs component,
    as its comment says to, mounts a ReadWriteMany claim there instead, in its namespace."""
    env = {entry["name"]: entry for entry in overlay.container["env"]}
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    names = [name for name in env if name in ("SERVING_PREDICTION_LOG", "SERVING_FEEDBACK_LOG")]
    assert "SERVING_PREDICTION_LOG" in names
    for name in names:
        path = Path(env[name]["value"])
        assert path.parent == Path("/app/logs/$(POD_NAME)"), path  # expanded by the kubelet
        assert name not in overlay.settings, f"{name} is set twice"
    listed = list(env)
    assert listed.index("POD_NAME") < listed.index("SERVING_PREDICTION_LOG")  # defined first

    def logs_volume(rendered: Overlay) -> dict[str, Any]:
        volumes = {volume["name"]: volume for volume in rendered.pod["spec"]["volumes"]}
        mounts = {mount["mountPath"]: mount["name"] for mount in rendered.container["volumeMounts"]}
        found: dict[str, Any] = volumes[mounts["/app/logs"]]
        return found

    assert "emptyDir" in logs_volume(overlay)
    # The overlay with the component taken, in a copy of the project's manifests.
    project = overlay.folder.parents[3]
    copy = tmp_path / "project"
    shutil.copytree(project / KUBERNETES, copy / KUBERNETES)
    shutil.copy(project / ".copier-answers.yml", copy / ".copier-answers.yml")
    kustomization = copy / KUBERNETES / "overlays" / overlay.environment / "kustomization.yaml"
    text = kustomization.read_text()
    commented = "# components:\n#   - ../../components/persistent-logs\n"
    assert commented in text, "the overlay says how to take the component"
    kustomization.write_text(text.replace(commented, commented.replace("# ", "")))
    kept = kustomize(copy, overlay.environment, tmp_path)
    assert not problems(kept.stream, len(kept.resources))
    logs = logs_volume(kept)
    assert set(logs) == {"name", "persistentVolumeClaim"}, logs
    claim = kept.one("PersistentVolumeClaim")
    assert logs["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert claim["metadata"]["namespace"] == overlay.namespace
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]  # pods on several nodes


def test_the_autoscaler_service_and_budget_find_the_deployment(overlay: Overlay) -> None:
    deployment = overlay.one("Deployment")
    pods = deployment["spec"]["selector"]["matchLabels"]
    assert pods.items() <= overlay.pod["metadata"]["labels"].items()
    # The HorizontalPodAutoscaler owns the replica count: an applied one would reset it.
    assert "replicas" not in deployment["spec"]

    autoscaler = overlay.one("HorizontalPodAutoscaler")
    assert autoscaler["apiVersion"] == "autoscaling/v2"
    assert autoscaler["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    (metric,) = autoscaler["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"]["type"] == "Utilization"
    assert 1 <= autoscaler["spec"]["minReplicas"] <= autoscaler["spec"]["maxReplicas"]

    service = overlay.one("Service")
    assert service["spec"]["selector"] == pods
    ports = {port["name"] for port in overlay.container["ports"]}
    assert {port["targetPort"] for port in service["spec"]["ports"]} <= ports
    assert overlay.one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"] == pods
    # In, only the service port; out, only DNS and the registry's and the store's ports.
    policy = overlay.one("NetworkPolicy")["spec"]
    assert policy["podSelector"]["matchLabels"] == pods
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    (ingress,) = policy["ingress"]
    assert [port["port"] for port in ingress["ports"]] == ["http"] and "from" not in ingress
    reached = {port["port"] for rule in policy["egress"] for port in rule["ports"]}
    assert reached == {53, 443, 5000, 9000}


def test_names_and_recommended_labels_fit_kubernetes(overlay: Overlay) -> None:
    recommended = {
        "app.kubernetes.io/name": overlay.slug,
        "app.kubernetes.io/instance": overlay.namespace,
        "app.kubernetes.io/component": "serving",
        "app.kubernetes.io/part-of": overlay.slug,
        "app.kubernetes.io/managed-by": "kustomize",
    }
    labelled = [resource["metadata"] for resource in overlay.resources]
    labelled.append(overlay.pod["metadata"])
    for metadata in labelled:
        labels = metadata["labels"]
        for value in labels.values():
            assert LABEL_VALUE.match(value), f"label value {value!r} is not valid"
        if metadata.get("namespace"):  # everything but the Namespace itself
            assert recommended.items() <= labels.items(), metadata["name"]
    for kind in ("Namespace", "Service"):
        name = overlay.one(kind)["metadata"]["name"]
        assert DNS_LABEL.match(name), f"{kind} name {name!r} is not a DNS label"


def test_production_runs_more_pods_than_staging(projects: dict[str, Path], tmp_path: Path) -> None:
    bounds = {}
    for environment in ENVIRONMENTS:
        overlay = kustomize(projects["loan-default-risk"], environment, tmp_path)
        spec = overlay.one("HorizontalPodAutoscaler")["spec"]
        bounds[environment] = (spec["minReplicas"], spec["maxReplicas"])
    assert bounds["production"][0] >= 2, "production survives losing a pod"
    assert bounds["production"] > bounds["staging"]


@pytest.mark.parametrize(
    ("right", "wrong", "message"),
    [
        ("containers:", "containerz:", "'containers' is a required property"),
        # Only --strict catches a misspelled optional field, which silently does nothing.
        (
            "readOnlyRootFilesystem:",
            "readOnlyRootFileSystem:",
            "'readOnlyRootFileSystem' was unexpected",
        ),
        # The validator has no schema for it, warns and exits 0: the count of passes catches it.
        ("apiVersion: autoscaling/v2", "apiVersion: autoscaling/v9", "autoscaling/v9"),
    ],
    ids=["containerz", "readOnlyRootFileSystem", "autoscaling-v9"],
)
def test_the_validation_catches_a_broken_manifest(
    projects: dict[str, Path], tmp_path: Path, right: str, wrong: str, message: str
) -> None:
    overlay = kustomize(projects["loan-default-risk"], "staging", tmp_path)
    text = overlay.stream.read_text(encoding="utf-8")
    assert text.count(right) == 1, right
    broken = tmp_path / "broken.yaml"
    broken.write_text(text.replace(right, wrong), encoding="utf-8")
    found = problems(broken, len(overlay.resources))
    assert any(message in problem for problem in found), found


def test_the_team_server_s_manifests_pass_strictly_and_take_every_credential_by_secret(
    projects: dict[str, Path], tmp_path: Path
) -> None:
    """deploy/kubernetes/mlflow: the team's tracking server (deploy/mlflow's image, at
    the version its requirements pin, never `latest`), spread over the nodes, probed on
    /health, on a read-only root. Every variable its Dockerfile says it takes is set, and
    each one that is a credential or an address of the user's comes from its Secret."""
    for name, project in projects.items():
        folder = project / KUBERNETES / "mlflow"
        rendered = run([kubectl(), "kustomize", str(folder)], project).stdout
        stream = tmp_path / f"{name}-mlflow.yaml"
        stream.write_text(rendered, encoding="utf-8")
        resources = [doc for doc in yaml.safe_load_all(rendered) if doc]
        kinds = {"Namespace", "Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy"}
        assert sorted(resource["kind"] for resource in resources) == sorted(kinds)
        assert not problems(stream, len(resources))
        slug = yaml.safe_load((project / ".copier-answers.yml").read_text())["project_slug"]
        (deployment,) = [item for item in resources if item["kind"] == "Deployment"]
        assert deployment["metadata"]["namespace"] == f"{slug}-mlflow"
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        requirements = (project / "deploy" / "mlflow" / "requirements.txt").read_text()
        pin = re.search(r"^mlflow\[auth\]==(\S+)", requirements, re.M)
        assert pin and container["image"] == f"{slug}-mlflow:{pin.group(1)}"
        plain = {item["name"] for item in container["env"] if "value" in item}
        secret = {
            item["name"]: item["valueFrom"]["secretKeyRef"]["name"]
            for item in container["env"]
            if "secretKeyRef" in item.get("valueFrom", {})
        }
        assert set(secret.values()) == {f"{slug}-mlflow-server"}
        assert plain == {"MLFLOW_HOST", "MLFLOW_PORT", "MLFLOW_SERVER_ALLOWED_HOSTS", "HOME"}
        dockerfile = (project / "deploy" / "mlflow" / "Dockerfile").read_text()
        header = dockerfile.split("# Then each client", 1)[0]
        taken = set(re.findall(r"\b(?:MLFLOW|AWS|PG)[A-Z0-9_]+\b", header))
        assert taken == set(secret) | {"MLFLOW_SERVER_ALLOWED_HOSTS"}, taken ^ set(secret)
        assert pod["topologySpreadConstraints"][0]["topologyKey"] == "kubernetes.io/hostname"
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["httpGet"]["path"] == "/health", probe
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
