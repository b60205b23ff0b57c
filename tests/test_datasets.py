"""The bundled datasets' contracts (extensions/contracts/) are exactly what the generated
project's own `make contract` infers from the data the dependencies ship: a difference
fails here, so a shipped contract can neither drift from the data nor be typed by hand."""

from __future__ import annotations

import pytest
import yaml

from mlops_harness.ladder import ladder
from mlops_harness.paths import ROOT, tool
from mlops_harness.processes import run

pytestmark = [pytest.mark.slow, pytest.mark.xdist_scope("test")]


def test_the_shipped_contracts_are_what_inference_writes() -> None:
    result = run([tool("python"), "scripts/contracts.py", "--check"], ROOT, check=False)
    assert result.returncode == 0, str(result)


def test_every_bundled_dataset_has_a_contract_of_its_task() -> None:
    for dataset in ladder().DATASETS:
        contract = yaml.safe_load(dataset.contract_file.read_text())
        assert contract["source"] == dataset.source
        assert contract["task"] == dataset.task
        assert contract["target"]["column"] == dataset.target
