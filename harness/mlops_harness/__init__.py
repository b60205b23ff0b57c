"""The template's test harness: what its tests, its scripts and its docs hook share.

One module per job; import from the module (``from mlops_harness.rendering import
render_project``). ``make setup`` installs the package editable into ``.venv``.

- ``paths``: the checkout, its git-ignored cache, the template's own tools, a lock
  shared by the test processes;
- ``ladder``: the template's questions, levels, capabilities and datasets, and the levels
  and runs under test (``$LEVELS``);
- ``processes``: commands (``run``, ``git``), ports, processes in their own session;
- ``rendering``: the template snapshot, Copier's copy and update;
- ``environments``: where a project's commands run: a plain shell, its own ``.venv``, or
  the environment the projects share;
- ``projects``: a rendered project, installed, trained; its pipeline stages and data;
- ``locks``: a project's ``uv.lock`` and pins against what is installed;
- ``servers``: a project's service running (``serving``), and waiting on it;
- ``registry``: a project's MLflow registry; ``data``: a user's awkward table;
- ``edits``: a user's edits to a project, for the update tests;
- ``releases``: the release record (``releases.yml``) and its tags;
- ``guide``: a project's guide, run as a user follows it;
- ``screenshots``, ``plots``: pictures (headless Chromium; the benchmarks' SVG bars);
- ``promtool``, ``docker_engine``: tools some tests need, fetched or started here;
- ``scheduling``: the pytest plugin that shares the suite out over processes, from each
  test module's markers.
"""
