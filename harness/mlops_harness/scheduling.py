"""How the suite shares out over processes (pytest-xdist), and which checks run once: a
pytest plugin (tests/conftest.py loads it) that reads both from each test module's
markers, registered in pyproject.toml. A test module says at its top, in ``pytestmark``:

- ``pytest.mark.xdist_scope("test")``: its tests are cheap or independent, and go to
  the processes one by one;
- ``pytest.mark.xdist_scope("parameter")``: each parameter (an executed level) goes to
  one process with its tests, so that the module fixture it makes is made once;
- nothing, or ``pytest.mark.xdist_scope("module")``: the whole module goes to one
  process, so that an expensive module-scoped fixture (a project rendered, installed and
  trained; a Docker engine) is made once. A new module starts here: the safe choice,
  which only costs time;
- ``pytest.mark.level_independent``: its checks do not depend on the level (the
  questions, the docs and the site, the release update and the object-store remote at
  their fixed level). The CI matrix runs them once, in their own job (`make test-once`:
  ``$LEVEL_INDEPENDENT=only``), not in every level's cell: with ``$LEVELS`` set they are
  left out, unless ``$LEVEL_INDEPENDENT`` is set (to anything else, they run too);
- ``pytest.mark.own_data``, on a test of test_execute's guided runs: it checks the run
  made for a user's own table, and is deselected for the runs on bundled datasets;
- a test that takes a CI provider (the ``rendered_elsewhere`` fixture, or a parameter
  named ``ci_provider``) is the only kind that runs in a CI matrix cell whose
  ``$CI_PROVIDERS`` leaves out the default provider: the rest runs in the default's cells.

Under xdist the workers collect the tests and the controller schedules them by node id
alone: it has no items, so no markers. Each worker writes the scope of every test it
collected, from the test's markers, into a folder the controller gives it, before it
reports its collection; the controller's scheduler reads the file with the collection.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

from mlops_harness.ladder import OWN_DATA, default_provider, selected_providers

SCOPE_MARKER = "xdist_scope"
SPLITS = ("module", "parameter", "test")  # what xdist_scope takes; "module" if unmarked
LEVEL_INDEPENDENT = "level_independent"
OWN_DATA_MARKER = "own_data"
SCOPES_FOLDER = "mlops_harness_scopes"  # the workerinput key: where the workers write
FOLDER_KEY = pytest.StashKey[Path]()


def xdist_scope(nodeid: str, split: str = "module") -> str:
    """The scope a test is scheduled with (tests of one scope go to one process), for the
    split its module's marker asks for."""
    module = nodeid.split("::", 1)[0]
    if split == "test":
        return nodeid
    if split == "parameter" and nodeid.endswith("]"):
        return module + "[" + nodeid.rsplit("[", 1)[1]
    return module


def split_of(item: pytest.Item) -> str:
    """What the test's ``xdist_scope`` marker says ("module" without one)."""
    marker = item.get_closest_marker(SCOPE_MARKER)
    if marker is None:
        return "module"
    split = marker.args[0] if marker.args else marker.kwargs.get("split")
    if split not in SPLITS or len(marker.args) + len(marker.kwargs) != 1:
        raise pytest.UsageError(
            f"{item.nodeid}: xdist_scope takes one of {', '.join(SPLITS)}, not {marker}"
        )
    return str(split)


def scopes_file(folder: Path, workerinput: dict[str, Any]) -> Path:
    """Where a worker writes its tests' scopes, in the controller's folder."""
    return folder / f"{workerinput['workerid']}.json"


def is_level_independent(item: pytest.Item) -> bool:
    return item.get_closest_marker(LEVEL_INDEPENDENT) is not None


def is_for_another_run(item: pytest.Item) -> bool:
    """A test marked own_data, on a guided run of a bundled dataset (not the user's own)."""
    if item.get_closest_marker(OWN_DATA_MARKER) is None:
        return False
    callspec = getattr(item, "callspec", None)
    run = callspec.params.get("guided_run") if callspec else None
    if run is None:
        raise pytest.UsageError(f"{item.nodeid}: own_data marks a test of a guided run")
    return bool(run[1] != OWN_DATA)


PROVIDER_PARAMETERS = {"rendered_elsewhere", "ci_provider"}


def takes_a_provider(item: pytest.Item) -> bool:
    callspec = getattr(item, "callspec", None)
    return bool(callspec and PROVIDER_PARAMETERS & set(callspec.params))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The own_data tests of the other guided runs are left out, and, where
    ``$CI_PROVIDERS`` leaves out the default provider, every test that takes none. Then,
    ``$LEVEL_INDEPENDENT=only``: the level-independent tests alone; ``$LEVELS`` set (and
    ``$LEVEL_INDEPENDENT`` not): all but them; otherwise every test."""
    for item in items:
        split_of(item)  # a misspelt split fails every run, not only one under xdist
    providers_only = default_provider() not in selected_providers()
    elsewhere = [
        item
        for item in items
        if is_for_another_run(item) or (providers_only and not takes_a_provider(item))
    ]
    if elsewhere:
        config.hook.pytest_deselected(items=elsewhere)
        items[:] = [item for item in items if item not in elsewhere]
    mode = os.environ.get("LEVEL_INDEPENDENT", "")
    if mode == "only":
        wanted = True
    elif os.environ.get("LEVELS", "").strip() and not mode:
        wanted = False
    else:
        return
    kept = [item for item in items if is_level_independent(item) == wanted]
    config.hook.pytest_deselected(items=[item for item in items if item not in kept])
    items[:] = kept


# The controller's side: a folder for the workers' scopes, and the scheduler that reads them.


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    config = node.config
    if FOLDER_KEY not in config.stash:
        config.stash[FOLDER_KEY] = Path(tempfile.mkdtemp(prefix="xdist-scopes-"))
    node.workerinput[SCOPES_FOLDER] = str(config.stash[FOLDER_KEY])


def pytest_unconfigure(config: pytest.Config) -> None:
    if FOLDER_KEY in config.stash:
        shutil.rmtree(config.stash[FOLDER_KEY], ignore_errors=True)


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    from xdist.scheduler import LoadScopeScheduling

    class ByMarkedScope(LoadScopeScheduling):
        """xdist's scope scheduling, with each test's scope from its worker's file."""

        def __init__(self, config: pytest.Config, log: Any = None) -> None:
            super().__init__(config, log)
            self.scopes: dict[str, str] = {}

        def add_node_collection(self, node: Any, collection: Any) -> None:
            super().add_node_collection(node, collection)
            written = scopes_file(Path(node.workerinput[SCOPES_FOLDER]), node.workerinput)
            if written.is_file():  # none if the worker failed before collecting
                self.scopes.update(json.loads(written.read_text(encoding="utf-8")))

        def _split_scope(self, nodeid: str) -> str:
            return self.scopes.get(nodeid) or xdist_scope(nodeid)

    return ByMarkedScope(config, log)


# The worker's side: each collected test's scope, written before xdist reports the
# collection (tryfirst: before xdist's own hook sends it).


@pytest.hookimpl(tryfirst=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    workerinput = getattr(session.config, "workerinput", None)
    if workerinput is None or SCOPES_FOLDER not in workerinput:
        return  # not an xdist worker: nothing to schedule
    scopes = {item.nodeid: xdist_scope(item.nodeid, split_of(item)) for item in session.items}
    written = scopes_file(Path(workerinput[SCOPES_FOLDER]), workerinput)
    written.write_text(json.dumps(scopes), encoding="utf-8")
