"""The template's ladder, read as Copier reads it: the questions (``copier.yml``), the
levels, capabilities and datasets (``extensions/context.py``); and which levels, CI
providers and runs are under test (``$LEVELS``, ``$CI_PROVIDERS``, as CI's matrix sets
them)."""

from __future__ import annotations

import importlib.util
import os
import sys
from functools import cache
from types import ModuleType
from typing import Any

import yaml

from mlops_harness.paths import ROOT


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


# The dataset answer of a project made for a user's own file (docs/your-data.md).
OWN_DATA = "own"


def selected_runs() -> list[tuple[int, str, str]]:
    """(level, dataset, installer) triples the slow tier executes: every built level once,
    on its dataset (LEVEL_DATASETS, else the default), installed by uv (pip at PIP_LEVEL),
    filtered by ``$LEVELS`` like the levels. The highest built level runs on a user's own
    table instead (OWN_DATA: docs/your-data.md's commands, then the guide), once for both."""
    default = str(questions()["dataset"]["default"])
    built = [level for level in ladder().LEVELS if level.built]
    top = built[-1].number if built else None
    return [
        (
            level,
            OWN_DATA if level == top and level >= 1 else LEVEL_DATASETS.get(level, default),
            "pip" if level == PIP_LEVEL else "uv",
        )
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


def default_provider() -> str:
    """The ``ci_provider`` a project gets on the defaults: the renders most tests read."""
    return str(questions()["ci_provider"]["default"])


def selected_providers() -> list[str]:
    """The CI providers under test: every choice of ``ci_provider``, or those in
    ``$CI_PROVIDERS`` (``CI_PROVIDERS=gitlab``), as CI's matrix sets it."""
    providers = [str(provider) for provider in choices("ci_provider")]
    wanted = os.environ.get("CI_PROVIDERS", "").strip()
    if wanted:
        providers = [provider for provider in providers if provider in wanted.split(",")]
    return providers


def other_providers() -> list[str]:
    """The providers under test beside the default: their renders are made for them."""
    return [provider for provider in selected_providers() if provider != default_provider()]


def described_files(capability: Any, package: str) -> str:
    """A capability's files for the docs, in Markdown: those every project has, then each
    CI provider's (``github: `.github/workflows/ci.yml`, ...``)."""

    def listed(paths: tuple[str, ...]) -> str:
        return ", ".join(f"`{path.format(package=package)}`" for path in paths)

    parts = [listed(capability.paths)] if capability.paths else []
    parts += [f"{provider}: {listed(paths)}" for provider, paths in capability.ci.items()]
    return "; ".join(parts)
