"""The dataset table in extensions/context.py is what scikit-learn really ships: the
generated schemas, validation bounds and examples come from it."""

from __future__ import annotations

import json

import pytest
from conftest import Render
from support import ProjectEnv, ladder, open_project

pytestmark = pytest.mark.slow

READ = """
import json, re
from sklearn import datasets
def snake(name): return re.sub(r"[^0-9a-z]+", "_", name.lower()).strip("_")
out = {}
for name in %r:
    bunch = getattr(datasets, "load_" + name)(as_frame=True)
    features = bunch.frame.drop(columns="target")
    out[name] = {
        "features": [snake(c) for c in features.columns],
        "example": [float(v) for v in features.iloc[0]],
        "ranges": [[float(features[c].min()), float(features[c].max())] for c in features],
        "class_names": [str(c) for c in bunch.target_names],
    }
print(json.dumps(out))
"""


def test_the_table_matches_scikit_learn(render: Render, project_env: ProjectEnv) -> None:
    project = open_project(render("datasets", maturity_level=0), project_env)
    project.make("install")
    names = [dataset.name for dataset in ladder().DATASETS]
    shipped = json.loads(project.python("-c", READ % names).stdout)
    for dataset in ladder().DATASETS:
        real = shipped[dataset.name]
        assert list(dataset.features) == real["features"], dataset.name
        assert list(dataset.example) == real["example"], dataset.name
        assert [list(pair) for pair in dataset.ranges] == real["ranges"], dataset.name
        assert list(dataset.class_names) == real["class_names"], dataset.name
        for (_, low, high), (seen_low, seen_high) in zip(
            dataset.bounds, dataset.ranges, strict=True
        ):
            assert low <= seen_low and seen_high <= high, dataset.name
