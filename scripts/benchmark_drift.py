"""Benchmark the level-4 projects' drift check (mlops/drift) against Evidently's data-drift
report on the same data, side by side in one run.

Both sides run in environments of their own, made under .cache/ on first use with uv
(Evidently does not import with pandas 3, so it gets pandas<3; mlops/drift runs on
the generated projects' pins). mlops/drift is rendered from the template itself.

Runs both sides as subprocesses on data written once as ``.npz`` files:

* ours: ``Reference.build`` + ``Accumulator.update`` over in-memory chunks
  (and, with ``--csv``, over ``pd.read_csv(chunksize=...)``), in this venv;
* Evidently: ``Report([DataDriftPreset(num_method="ks", cat_method="chisquare")])``
  in its own venv (Evidently needs pandas < 3).

Usage::

    .venv/bin/python scripts/benchmark_drift.py --sizes 100000,1000000 --repeat 3
    .venv/bin/python scripts/benchmark_drift.py --sizes 100000 --skip-evidently

It prints a table and draws the times (docs/benchmarks/drift.svg; ``--plot ''`` for none).

The worker modes (``--worker ours|evidently``) are internal.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlops_harness import plots
from mlops_harness.paths import CACHE, ROOT

DRIFT_PACKAGE = (
    ROOT / "template/src/{{ package_name }}/mlops/{% if has_drift_detection %}drift{% endif %}"
)
# The generated projects' pins (template/pyproject.toml.jinja) for our side; Evidently's own.
OURS_PACKAGES = ["numpy==2.4.6", "pandas==3.1.1", "pyarrow==26.0.1", "scipy==1.17.1"]
EVIDENTLY_PACKAGES = ["evidently==0.7.23", "pandas<3", "pyarrow"]


def environment(name: str, packages: list[str]) -> str:
    """The Python of .cache/<name>, made with uv and ``packages`` on first use."""
    venv = CACHE / name
    python = venv / "bin" / "python"
    if not python.exists():
        uv = str(Path(sys.executable).parent / "uv")
        print(f"making {venv} ({', '.join(packages)})", file=sys.stderr, flush=True)
        subprocess.run([uv, "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
        subprocess.run(
            [uv, "pip", "install", "--quiet", "--python", str(python), *packages], check=True
        )
    return str(python)


N_FEATURES = 20


# --------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------


def _numeric_column(
    i: int, rng: np.random.Generator, n: int, shift: str | None
) -> tuple[np.ndarray, str]:
    """Feature ``i`` of a fixed family of distributions; ``shift`` alters it."""
    family = i % 5
    if family == 0:
        mu, sd = float(i), 1.0 + i / 10
        x = rng.normal(mu, sd, n)
        if shift == "mean":
            x += 0.5 * sd
        elif shift == "scale":
            x = mu + (x - mu) * 2.0
        return x, "numeric"
    if family == 1:
        x = rng.lognormal(0.0, 0.5, n)
        if shift is not None:
            x = rng.lognormal(0.4, 0.5, n)
        return x, "numeric"
    if family == 2:
        return rng.uniform(0.0, 10.0, n), "numeric"
    if family == 3:
        return rng.gamma(2.0, 2.0, n), "numeric"
    lam = 3.0 + i / 5
    if shift is not None:
        lam *= 1.5
    return rng.poisson(lam, n).astype(np.int64), "integer"


def _category_probs(k: int) -> np.ndarray:
    p: np.ndarray = 1.0 / np.arange(1, k + 1)
    return np.asarray(p / p.sum(), dtype=np.float64)


def _categorical_column(j: int, rng: np.random.Generator, n: int, shift: bool) -> np.ndarray:
    k = [3, 4, 5, 6, 8, 10][j % 6]
    p = _category_probs(k)
    if shift:  # frequency change: half-way towards the reversed frequencies
        p = 0.5 * p + 0.5 * p[::-1]
    names: np.ndarray = np.asarray([f"c{j}_{v}" for v in range(k)])
    return names[rng.choice(k, n, p=p)]


def dataset_spec(name: str) -> tuple[list[str], dict[str, str]]:
    """Column names and the truly shifted columns (name -> kind of shift)."""
    if name == "numeric":
        cols = [f"f{i:02d}" for i in range(N_FEATURES)]
        return cols, {"f05": "mean", "f10": "scale", "f04": "poisson λ x1.5"}
    if name == "mixed":
        cols = [f"n{i:02d}" for i in range(14)] + [f"c{j:02d}" for j in range(6)]
        return cols, {"n05": "mean", "n10": "scale", "c03": "category frequencies"}
    raise ValueError(name)


def make_frame(
    name: str, n: int, seed: int, shifted: bool
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Generate one side of a dataset: columns and their drift kinds."""
    rng = np.random.default_rng(seed)
    cols, shifts = dataset_spec(name)
    data: dict[str, np.ndarray] = {}
    kinds: dict[str, str] = {}
    for col in cols:
        shift = shifts.get(col) if shifted else None
        if col.startswith("c"):
            data[col] = _categorical_column(int(col[1:]), rng, n, shift is not None)
            kinds[col] = "categorical"
        else:
            data[col], kinds[col] = _numeric_column(int(col[1:]), rng, n, shift)
    return data, kinds


def prepare(workdir: Path, name: str, n_ref: int, size: int, seed: int) -> dict[str, Any]:
    """Write reference/current ``.npz`` files once; return their metadata."""
    workdir.mkdir(parents=True, exist_ok=True)
    ref_path = workdir / f"{name}_ref{n_ref}_s{seed}.npz"
    cur_path = workdir / f"{name}_cur{size}_s{seed}.npz"
    ref, kinds = make_frame(name, n_ref, seed, shifted=False)
    if not ref_path.exists():
        np.savez(ref_path, allow_pickle=False, **ref)
    if not cur_path.exists():
        cur, _ = make_frame(name, size, seed + size, shifted=True)
        np.savez(cur_path, allow_pickle=False, **cur)
    _, shifts = dataset_spec(name)
    return {"ref": str(ref_path), "cur": str(cur_path), "kinds": kinds, "shifted": sorted(shifts)}


def load_frame(path: str) -> pd.DataFrame:
    """Load an ``.npz`` written by :func:`prepare` as a DataFrame."""
    with np.load(path) as npz:
        return pd.DataFrame({key: npz[key] for key in npz.files})


# --------------------------------------------------------------------------
# memory helpers (Linux)
# --------------------------------------------------------------------------


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) to the current RSS."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return False
    return True


class PeakRss:
    """Peak RSS during a block, over the RSS at its start (MB)."""

    def __enter__(self) -> PeakRss:
        self.reset = _reset_peak_rss()
        self.baseline_kb = _status_kb("VmRSS")
        self.maxrss_before_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return self

    def __exit__(self, *exc: object) -> None:
        peak_kb = (
            _status_kb("VmHWM")
            if self.reset
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        )
        self.peak_over_baseline_mb = max(0, peak_kb - self.baseline_kb) / 1024
        self.baseline_mb = self.baseline_kb / 1024


# --------------------------------------------------------------------------
# workers
# --------------------------------------------------------------------------


def _frame_chunks(frame: pd.DataFrame, size: int) -> Iterator[pd.DataFrame]:
    for start in range(0, len(frame), size):
        yield frame.iloc[start : start + size]


def render_drift(folder: Path) -> str:
    """Render the template's mlops/drift package (its modules import each other by the
    project's package name) into ``folder``, under the package name ``bench``."""
    import jinja2

    package = folder / "bench"
    (package / "mlops" / "drift").mkdir(parents=True, exist_ok=True)
    for init in (package / "__init__.py", package / "mlops" / "__init__.py"):
        init.write_text("")
    for source in DRIFT_PACKAGE.iterdir():
        text = jinja2.Template(source.read_text()).render(package_name="bench")
        (package / "mlops" / "drift" / source.name.removesuffix(".jinja")).write_text(text)
    return str(folder)


def shipped_thresholds() -> dict[str, Any]:
    """The drift thresholds a level-4 project ships with: its params.yaml's ``monitor``
    section, rendered from the template (their one home)."""
    import jinja2
    import yaml

    text = (ROOT / "template" / "params.yaml.jinja").read_text()
    monitor = yaml.safe_load(jinja2.Template(text).render(has_drift_detection=True))["monitor"]
    return {key: monitor[key] for key in ("psi", "missing_rise", "min_rows")}


def load_drift() -> Any:
    """The rendered drift package's public names (the worker runs with its folder on
    PYTHONPATH), in one namespace."""
    import importlib
    import types

    names: dict[str, Any] = {}
    for module in ("columns", "statistics", "reference", "report", "accumulate"):
        loaded = importlib.import_module(f"bench.mlops.drift.{module}")
        names.update({k: v for k, v in vars(loaded).items() if not k.startswith("_")})
    return types.SimpleNamespace(**names)


def worker_ours(args: argparse.Namespace) -> dict[str, Any]:
    """Time mlops/drift on the files given in ``args``; report verdicts and memory."""
    meta = json.loads(args.meta)
    drift = load_drift()
    ref = load_frame(meta["ref"])
    cur = load_frame(meta["cur"])
    kinds = meta["kinds"]

    def run(chunks: Callable[[], Any], **options: Any) -> Any:
        reference = drift.Reference.build(ref, kinds, **options)
        acc = drift.Accumulator(reference)
        for chunk in chunks():
            acc.update(chunk)
        return acc.result(drift.Thresholds(alpha=args.alpha, **meta["thresholds"]))

    def in_memory() -> Iterator[pd.DataFrame]:
        return _frame_chunks(cur, args.chunk)

    times = []
    report = None
    with PeakRss() as mem:
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            report = run(in_memory)
            times.append(time.perf_counter() - t0)
    assert report is not None
    tracemalloc.start()
    run(in_memory)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # the reference summary alone, to separate O(reference) from O(chunk) memory
    tracemalloc.start()
    reference = drift.Reference.build(ref, kinds)
    acc = drift.Accumulator(reference)
    ref_state, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del reference, acc

    csv_seconds = None
    if args.csv:
        csv_path = Path(meta["cur"]).with_suffix(".csv")
        if not csv_path.exists():
            cur.to_csv(csv_path, index=False)
        t0 = time.perf_counter()
        csv_report = run(lambda: pd.read_csv(csv_path, chunksize=args.chunk))
        csv_seconds = time.perf_counter() - t0
        assert csv_report.drifted_features == report.drifted_features

    # The project's defaults count a number within float32's precision of a training
    # value as that value, and compare a number of few values per value: the tests are
    # compared with Evidently's in exact mode, as scipy computes them.
    t0 = time.perf_counter()
    exact = run(in_memory, tolerance=0.0, discrete_values=0)
    exact_seconds = time.perf_counter() - t0
    pvalues = {}
    for f in exact.features:
        pvalues[f.name] = f.ks_pvalue if f.ks_pvalue is not None else f.chi2_pvalue
    return {
        "seconds": min(times),
        "all_seconds": times,
        "csv_seconds": csv_seconds,
        "peak_rss_over_baseline_mb": mem.peak_over_baseline_mb,
        "baseline_rss_mb": mem.baseline_mb,
        "tracemalloc_peak_mb": traced_peak / 2**20,
        "reference_state_mb": ref_state / 2**20,
        "drifted": sorted(report.drifted_features),
        "test_drifted": sorted(f.name for f in exact.features if f.test_drifted),
        "default_test_drifted": sorted(f.name for f in report.features if f.test_drifted),
        "exact_seconds": exact_seconds,
        "pvalues": pvalues,
        "psi": {f.name: f.psi for f in report.features},
    }


def worker_evidently(args: argparse.Namespace) -> dict[str, Any]:
    """Time Evidently's DataDriftPreset (KS / chi-square) on the same files."""
    # only installed in the Evidently venv
    import evidently  # type: ignore[import-not-found, unused-ignore]
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset  # type: ignore[import-not-found, unused-ignore]

    meta = json.loads(args.meta)
    ref = load_frame(meta["ref"])
    cur = load_frame(meta["cur"])
    kinds = meta["kinds"]
    numeric = [c for c, k in kinds.items() if k in ("numeric", "integer")]
    categorical = [c for c, k in kinds.items() if k not in ("numeric", "integer")]

    times = []
    snapshot_dict: dict[str, Any] = {}
    with PeakRss() as mem:
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
            report = Report(
                [
                    DataDriftPreset(
                        num_method="ks",
                        cat_method="chisquare",
                        num_threshold=args.alpha,
                        cat_threshold=args.alpha,
                    )
                ]
            )
            snapshot = report.run(
                current_data=Dataset.from_pandas(cur, data_definition=definition),
                reference_data=Dataset.from_pandas(ref, data_definition=definition),
            )
            snapshot_dict = snapshot.dict()
            times.append(time.perf_counter() - t0)

    drifted = []
    pvalues = {}
    methods = {}
    for metric in snapshot_dict["metrics"]:
        config = metric["config"]
        if not config.get("type", "").endswith("ValueDrift"):
            continue
        column, method, threshold = config["column"], config["method"], config["threshold"]
        pvalue = float(metric["value"])
        pvalues[column] = pvalue
        methods[column] = method
        # Evidently's rules: KS drifts when p <= threshold, chi-square when p < threshold
        if (pvalue <= threshold) if method == "ks" else (pvalue < threshold):
            drifted.append(column)
    return {
        "version": evidently.__version__,
        "pandas": pd.__version__,
        "seconds": min(times),
        "all_seconds": times,
        "peak_rss_over_baseline_mb": mem.peak_over_baseline_mb,
        "drifted": sorted(drifted),
        "pvalues": pvalues,
        "methods": sorted(set(methods.values())),
    }


def _call_worker(
    python: str, mode: str, meta: dict[str, Any], args: argparse.Namespace, repeat: int
) -> dict[str, Any]:
    cmd = [
        python,
        str(Path(__file__).resolve()),
        "--worker",
        mode,
        "--meta",
        json.dumps(meta),
        "--repeat",
        str(repeat),
        "--chunk",
        str(args.chunk),
        "--alpha",
        str(args.alpha),
    ]
    if args.csv and mode == "ours":
        cmd.append("--csv")
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    # The worker is this script, in an environment of its own: it finds the harness (and,
    # for ours, the rendered drift package) on PYTHONPATH.
    where = [meta["drift"]] if mode == "ours" else []
    env["PYTHONPATH"] = os.pathsep.join([*where, str(ROOT / "harness")])
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=args.timeout, env=env, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{mode} worker failed:\n{proc.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------


def _fmt_set(names: list[str]) -> str:
    return "{" + ",".join(names) + "}"


def main(argv: list[str] | None = None) -> int:
    """Parse options; run a worker or the whole benchmark."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes", default="100000,1000000", help="current-window sizes (comma-separated)"
    )
    parser.add_argument("--datasets", default="numeric,mixed")
    parser.add_argument("--ref-rows", type=int, default=100_000)
    parser.add_argument(
        "--repeat", type=int, default=1, help="timed runs of ours (best is reported)"
    )
    parser.add_argument("--evidently-repeat", type=int, default=1, help="timed runs of Evidently")
    parser.add_argument("--skip-evidently", action="store_true")
    parser.add_argument(
        "--csv", action="store_true", help="also time ours streaming from a CSV (chunksize)"
    )
    parser.add_argument("--chunk", type=int, default=100_000)
    parser.add_argument(
        "--alpha", type=float, default=0.05, help="p-value threshold for both tools"
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--workdir", type=Path, default=CACHE / "bench-drift-data")
    parser.add_argument("--evidently-python", default=None, help="default: .cache/evidently-env")
    parser.add_argument("--ours-python", default=None, help="default: .cache/drift-env")
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--json-out", type=Path, default=None, help="write raw results here")
    parser.add_argument(
        "--plot",
        default=str(ROOT / "docs" / "benchmarks" / "drift.svg"),
        help="where to draw the times (an SVG; --plot '' for none)",
    )
    parser.add_argument("--worker", choices=["ours", "evidently"], help=argparse.SUPPRESS)
    parser.add_argument("--meta", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        fn = worker_ours if args.worker == "ours" else worker_evidently
        print(json.dumps(fn(args)))
        return 0

    ours_python = args.ours_python or environment("drift-env", OURS_PACKAGES)
    if not args.skip_evidently and not args.evidently_python:
        args.evidently_python = environment("evidently-env", EVIDENTLY_PACKAGES)
    load_before = os.getloadavg()[0]
    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        for name in args.datasets.split(","):
            meta = prepare(args.workdir, name, args.ref_rows, size, args.seed)
            meta["drift"] = render_drift(args.workdir / "drift-package")
            meta["thresholds"] = shipped_thresholds()
            print(f"[{name} {size:,}] ours ...", file=sys.stderr, flush=True)
            ours = _call_worker(ours_python, "ours", meta, args, args.repeat)
            ev = None
            if not args.skip_evidently:
                print(f"[{name} {size:,}] evidently ...", file=sys.stderr, flush=True)
                ev = _call_worker(
                    args.evidently_python, "evidently", meta, args, args.evidently_repeat
                )
            rows.append(
                {"dataset": name, "rows": size, "meta": meta, "ours": ours, "evidently": ev}
            )

    if args.json_out:
        args.json_out.write_text(json.dumps(rows, indent=1))

    ev_versions = {r["evidently"]["version"] for r in rows if r["evidently"]}
    load_after = os.getloadavg()[0]
    print(
        f"1-min load average before/after the run: {load_before:.1f}/{load_after:.1f} "
        f"on {os.cpu_count()} cores"
    )
    evidently_note = (
        f"; Evidently {', '.join(sorted(ev_versions))} (KS numeric, chi-square categorical)"
    )
    print(
        f"reference rows: {args.ref_rows:,}; 20 features; chunk {args.chunk:,} rows; "
        f"alpha {args.alpha}; "
        f"ours: best of {args.repeat}, Evidently: best of {args.evidently_repeat}"
        + (evidently_note if ev_versions else "")
    )
    header = (
        f"{'dataset':<8} {'rows':>9} {'ours s':>7} {'exact s':>7} {'csv s':>6} {'Evid. s':>8} "
        f"{'ratio':>6} "
        f"{'peakMB':>7} {'tmMB':>6} {'refMB':>6} {'verdicts=':>9} {'tests=':>6} {'max|dp|':>8}"
    )
    print(header)
    print("-" * len(header))
    details = []
    for r in rows:
        ours, ev = r["ours"], r["evidently"]
        csv_s = f"{ours['csv_seconds']:.2f}" if ours["csv_seconds"] is not None else "-"
        if ev:
            ev_s, ratio = f"{ev['seconds']:.2f}", f"{ev['seconds'] / ours['seconds']:.1f}x"
            agree = "yes" if ev["drifted"] == ours["drifted"] else "NO"
            tests = "yes" if ev["drifted"] == ours["test_drifted"] else "NO"
            dp = max(abs(ev["pvalues"][c] - ours["pvalues"][c]) for c in ev["pvalues"])
            dp_s = f"{dp:.1e}"
        else:
            ev_s = ratio = agree = tests = dp_s = "-"
        print(
            f"{r['dataset']:<8} {r['rows']:>9,} {ours['seconds']:>7.2f} "
            f"{ours['exact_seconds']:>7.2f} {csv_s:>6} {ev_s:>8} "
            f"{ratio:>6} "
            f"{ours['peak_rss_over_baseline_mb']:>7.1f} {ours['tracemalloc_peak_mb']:>6.1f} "
            f"{ours['reference_state_mb']:>6.1f} {agree:>9} {tests:>6} {dp_s:>8}"
        )
        details.append(
            f"{r['dataset']} {r['rows']:,}: shifted={_fmt_set(r['meta']['shifted'])} "
            f"ours={_fmt_set(ours['drifted'])}"
            f" ours-tests-only={_fmt_set(ours['test_drifted'])}"
            f" (with the defaults: {_fmt_set(ours['default_test_drifted'])})"
            + (f" evidently={_fmt_set(ev['drifted'])}" if ev else "")
        )
    print()
    print("\n".join(details))
    print(
        "\nours s: Reference.build + streaming the window in chunks from an in-memory frame"
        " (wall clock), with the project's defaults; exact s: one run in exact mode (no float32"
        " tolerance, no per-value numbers), whose tests and p-values are compared;"
        "\ncsv s: the defaults, the window read with pd.read_csv(chunksize);"
        "\nEvid. s: Dataset.from_pandas x2 + Report.run + snapshot.dict();"
        " ratio = Evid. s / ours s;"
        "\npeakMB: ours peak RSS over the RSS after data was loaded; tmMB: tracemalloc peak of one"
        " run; refMB: reference summary + accumulator state;\nverdicts=: ours (KS/chi2 AND PSI, or"
        " missing rise) == Evidently's set; tests=: ours KS/chi2 verdicts alone == Evidently's;"
        "\nmax|dp|: largest difference between our and Evidently's p-values over all columns."
    )
    if args.plot:
        print(f"drawn: {draw(rows, args, Path(args.plot))}")
    return 0


def draw(rows: list[dict[str, Any]], args: argparse.Namespace, path: Path) -> Path:
    """Each window's time, ours beside Evidently's, on a log scale."""
    bars = []
    for r in rows:
        case = f"{r['dataset']}, {r['rows']:,} rows"
        bars.append(plots.Bar(f"{case}: mlops/drift", r["ours"]["seconds"]))
        if r["evidently"]:
            bars.append(plots.Bar(f"{case}: Evidently", r["evidently"]["seconds"], "peer"))
    panel = plots.Panel("seconds (best run)", bars, " s", log=True, digits=2)
    title = f"Drift check, reference {args.ref_rows:,} rows, 20 features ({plots.machine()})"
    return plots.draw(path, title, [panel])


if __name__ == "__main__":
    sys.exit(main())
