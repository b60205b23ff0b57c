"""Take the docs site's screenshots: the service's interactive docs, `make plots`' page,
the MLflow UI (`make ui`), the drift report and Prometheus' alerts page with an alert
firing (`make observe`), each drawn by headless Chromium on a real project, into
docs/screenshots/.

    .venv/bin/python scripts/screenshots.py

It runs the suite's screenshot tests (which also check each picture: its page's title,
and that it is not blank) with SCREENSHOTS_DIR set, so the pictures in the docs are the
ones the tests looked at. The level-4 GUIDE shows two of them: they are copied into the
template too (GUIDE_PICTURES). Needs Debian's `chromium`; about ten minutes (it trains
and serves a level-2 and a level-4 project).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "docs" / "screenshots"
# The pictures a level-4 project's GUIDE shows, in its monitoring/pictures/.
GUIDE_PICTURES = (
    ROOT
    / "template"
    / "{% if has_observe_stack %}monitoring{% endif %}"
    / "{% if has_alerting %}pictures{% endif %}"
)
TESTS = [
    "tests/test_execute.py::test_the_interactive_docs_look_right_in_a_browser",
    "tests/test_pipeline.py::test_the_plots_page_looks_right_in_a_browser",
    "tests/test_pipeline.py::test_make_ui_shows_the_pipeline_s_run_and_model",
    "tests/test_operations.py::test_the_drift_report_looks_right_in_a_browser",
    "tests/test_operations.py::test_the_service_down_then_failing_then_back_fires_and_resolves_its_alerts",
]


def main() -> int:
    env = {**os.environ, "SCREENSHOTS_DIR": str(SCREENSHOTS), "LEVELS": "4"}
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs", *TESTS]
    code = subprocess.run(command, cwd=ROOT, env=env, check=False).returncode
    for picture in GUIDE_PICTURES.iterdir():
        shutil.copyfile(SCREENSHOTS / picture.name, picture)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
