"""Print the maturity levels and the CI providers copier.yml offers, as GitHub Actions
output lines: ``levels=[0, 1, 2, 3, 4]`` and ``providers=["github", "gitlab"]``. The
template's CI matrix reads them."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    questions = yaml.safe_load((ROOT / "copier.yml").read_text(encoding="utf-8"))
    levels = sorted(questions["maturity_level"]["choices"].values())
    print(f"levels={json.dumps(levels)}")
    providers = list(questions["ci_provider"]["choices"].values())
    print(f"providers={json.dumps(providers)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
