"""A user's edits to a generated project before an update (`copier update` must keep
them), and the conflict markers an update must not leave."""

from __future__ import annotations

import re
from pathlib import Path

CONFLICT = re.compile(r"^(<{7}|>{7}|={7})( |$)", re.M)

# A user's own edits: a comment at the end of a module, a line in the README under its
# title, a Makefile target of their own, a module of their own.
OWN_COMMENT = "\n\n# Ours: the team reviews a change to this module before it is merged.\n"
OWN_README = "\nOwned by the risk team (#risk-models). Data questions: ask before you retrain.\n"
OWN_TARGET = (
    "\n.PHONY: where\n"
    "where: ## Our own task: print where the raw snapshot lives\n"
    "\t@echo $(RAW_DATA)\n"
)
OWN_MODULE = '''"""Our own rule, not the template's: what the model's mistakes cost us."""

from __future__ import annotations


def cost(false_alarms: int, misses: int) -> float:
    """A missed case costs ten false alarms."""
    return float(false_alarms + 10 * misses)
'''


def append(path: Path, text: str) -> str:
    """``text`` added at the end of ``path``; the text, to look for later."""
    with path.open("a", encoding="utf-8") as module:
        module.write(text)
    return text


def edit(path: Path, old: str, new: str) -> str:
    """Replace the first ``old`` in ``path`` with ``new``; the new text, to look for later."""
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} is not in {path.name}: the edit no longer applies"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return new
