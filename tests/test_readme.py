"""The slow tier: the README's first command, `make demo`, as a new user runs it: from a
plain shell (the system's programs on PATH, no environment), in a fresh copy of this
repository (its own `.venv` and Node tools, as on a fresh machine). It sets up, renders a
project at the highest built level, runs it end to end, and shows the steps and their
results, not the service's request log, DVC's hints or MLflow's progress bars. (The
README's second command, `make test`, is what CI runs: `.ci/run`.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mlops_harness.environments import SYSTEM_PATH, user_env
from mlops_harness.ladder import ladder
from mlops_harness.processes import run
from mlops_harness.rendering import snapshot_template

pytestmark = [pytest.mark.slow, pytest.mark.level_independent]


def test_make_demo_runs_end_to_end_and_shows_only_the_steps(tmp_path: Path) -> None:
    copy = snapshot_template(tmp_path / "repository")  # the working tree, committed once
    readme = (copy / "README.md").read_text(encoding="utf-8")
    assert readme.split("```bash\n", 1)[1].startswith("make demo "), "the README's first command"
    env = user_env(uv=False)
    assert env["PATH"] == SYSTEM_PATH
    demo = run(["make", "demo"], copy, env, timeout=1200)
    output = demo.stdout + demo.stderr
    level = max(level.number for level in ladder().LEVELS if level.built)
    assert f"Done: level {level} project in" in output
    assert '"predictions"' in output, "the served prediction"
    assert not re.search(r'^\{"time"', output, re.MULTILINE), "the request log is in the output"
    for noise in ("To track the changes with git", "Downloading artifacts", "Detected uv"):
        assert noise not in output, noise
    assert (copy / "build" / "demo" / "logs" / "serve.log").read_text().count('"path"') > 0
