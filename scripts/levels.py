"""Print the maturity levels copier.yml offers, as a GitHub Actions output line:
``levels=[0, 1, 2, 3, 4]``. The template's CI matrix reads it."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    questions = yaml.safe_load((ROOT / "copier.yml").read_text(encoding="utf-8"))
    levels = sorted(questions["maturity_level"]["choices"].values())
    print(f"levels={json.dumps(levels)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
