"""The project's lock file (uv.lock, written by its first `make install`), its direct pins
(pyproject.toml), and what an environment has installed, compared."""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from collections.abc import Mapping
from pathlib import Path

from mlops_harness.processes import run

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
    groups = pyproject["dependency-groups"]

    def group(name: str) -> list[str]:  # with the groups it includes (PEP 735)
        return [
            line
            for entry in groups[name]
            for line in (group(entry["include-group"]) if isinstance(entry, dict) else [entry])
        ]

    lines = [
        *(pyproject["project"]["dependencies"] if runtime else []),
        *(group("dev") if dev else []),
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
