"""A generated project's MLflow registry, read and changed through the project's own
tracking module, in its own environment."""

from __future__ import annotations

import json
from typing import Any

from mlops_harness.projects import Project


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


def unloadable_version(project: Project) -> str:
    """A new version of the project's model whose files are nowhere: what a service is
    asked to load when a registration went wrong. Its number."""
    script = (
        f"from {project.package}.mlops import config, tracking\n"
        "print(tracking.client().create_model_version(config.MODEL_NAME,"
        " source='file:///nowhere/model', run_id=None).version)"
    )
    return project.python("-c", script).stdout.strip().splitlines()[-1]
