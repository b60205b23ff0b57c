"""The update migration for moved modules (extensions/migrate.py), stage by stage, on a
project in git: an edited module follows its move, merged into the template's new
version; a clash is marked, not resolved; a file the old template never rendered is the
user's and stays; a module the template dropped comes back where the user had it.
(test_release runs it inside a real `copier update`; here the old render, Copier's first
step, is a folder the test writes.)"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from types import ModuleType

import pytest

from mlops_harness.paths import ROOT
from mlops_harness.processes import git

PACKAGE = "pkg"


def migrate_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("migrate", ROOT / "extensions" / "migrate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def migrate(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> ModuleType:
    """The migration, its old render a folder of the test's (``tmp_path / "old"``)."""
    module = migrate_module()
    old = tmp_path / "old"

    def render(template: str, answers: dict[str, object], destination: Path) -> Path:
        shutil.copytree(old, destination)
        return destination

    monkeypatch.setattr(module, "old_render", render)
    return module


def project_with(tmp_path: Path, files: dict[str, str], old: dict[str, str]) -> Path:
    """A project in git holding ``files``, whose old template rendered ``old``."""
    project = tmp_path / "project"
    for name, text in {".copier-answers.yml": f"package_name: {PACKAGE}\n", **files}.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text)
    (tmp_path / "old").mkdir()
    for name, text in old.items():
        (tmp_path / "old" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "old" / name).write_text(text)
    git(project, "init", "--quiet")
    return project


def update(migrate: ModuleType, project: Path, new: dict[str, str]) -> None:
    """before, then what Copier does (the new files written, the old ones removed), then
    after."""
    migrate.before(project, "template", ".copier-answers.yml")
    for old_path in migrate.moves(PACKAGE):
        (project / old_path).unlink(missing_ok=True)
    for name, text in new.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text)
    migrate.after(project)


OLD = "def a():\n    return 1\n\n\ndef b():\n    return 2\n"
NEW = "def a():\n    return 1\n\n\ndef b():\n    return 3\n"  # the template's own change
CARD, MOVED = f"src/{PACKAGE}/card.py", f"src/{PACKAGE}/mlops/card.py"


def moved_card(migrate: ModuleType, tmp_path: Path, ours: str) -> tuple[Path, str]:
    """The project after an update that moved card.py, which the user holds as ``ours``
    (the old template rendered OLD there, the new one renders NEW at MOVED); the module at
    its new path."""
    project = project_with(tmp_path, {CARD: ours}, {CARD: OLD})
    update(migrate, project, {MOVED: NEW})
    return project, (project / MOVED).read_text()


def test_an_edit_follows_the_module_it_was_made_in(
    migrate: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project, merged = moved_card(migrate, tmp_path, OLD.replace("return 1", "return 10"))
    assert "return 10" in merged and "return 3" in merged and "<<<<<<<" not in merged
    assert not (project / CARD).exists()
    assert f"your edits to {CARD} are merged into {MOVED}" in capsys.readouterr().err


def test_a_clash_is_marked_and_reported(
    migrate: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, merged = moved_card(migrate, tmp_path, OLD.replace("return 2", "return 20"))
    assert "<<<<<<< yours" in merged and "return 20" in merged and "return 3" in merged
    assert "resolve the conflict markers" in capsys.readouterr().err


def test_an_unedited_module_is_left_to_the_update(migrate: ModuleType, tmp_path: Path) -> None:
    assert moved_card(migrate, tmp_path, OLD)[1] == NEW


def test_a_file_the_old_template_never_rendered_is_the_user_s(
    migrate: ModuleType, tmp_path: Path
) -> None:
    mine = "# our own plots\n"
    project = project_with(tmp_path, {f"src/{PACKAGE}/plots.py": mine}, {})
    migrate.before(project, "template", ".copier-answers.yml")
    (project / f"src/{PACKAGE}/mlops").mkdir(parents=True)
    (project / f"src/{PACKAGE}/mlops/plots.py").write_text(NEW)
    migrate.after(project)
    assert (project / f"src/{PACKAGE}/plots.py").read_text() == mine
    assert (project / f"src/{PACKAGE}/mlops/plots.py").read_text() == NEW


def test_a_module_the_template_dropped_comes_back_where_it_was(
    migrate: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ours = OLD + "\n\n# ours\n"
    project = project_with(
        tmp_path, {f"src/{PACKAGE}/plots.py": ours}, {f"src/{PACKAGE}/plots.py": OLD}
    )
    update(migrate, project, {})
    assert (project / f"src/{PACKAGE}/plots.py").read_text() == ours
    assert "the template no longer has" in capsys.readouterr().err


def after_a_split(migrate: ModuleType, tmp_path: Path, module: str, new: str) -> tuple[Path, str]:
    """The project after an update that split ``module`` (edited: the text returned) into a
    package, of which the new template renders ``new``."""
    ours = OLD + "\n\n# ours\n"
    project = project_with(tmp_path, {module: ours}, {module: OLD})
    update(migrate, project, {new: NEW})
    return project, ours


def test_a_module_the_template_split_comes_back_where_it_was(
    migrate: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    drift = f"src/{PACKAGE}/drift.py"
    project, ours = after_a_split(migrate, tmp_path, drift, f"src/{PACKAGE}/mlops/drift/report.py")
    assert (project / drift).read_text() == ours
    assert f"the template split {drift} into src/{PACKAGE}/mlops/drift/" in capsys.readouterr().err


def test_a_module_split_in_place_is_kept_beside_its_package(
    migrate: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = f"src/{PACKAGE}/serving/settings.py"
    new = f"src/{PACKAGE}/serving/settings/__init__.py"
    project, ours = after_a_split(migrate, tmp_path, settings, new)
    assert not (project / settings).exists()  # a module beside its package: never imported
    assert (project / f"{settings}.yours").read_text() == ours
    assert f"kept at {settings}.yours" in capsys.readouterr().err
