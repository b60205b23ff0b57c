"""The benchmarks' pictures: horizontal bars, one panel per measure, drawn by matplotlib
as SVG for docs/benchmarks/ (text as paths: no font to fetch; no date inside, so the same
figures draw the same file)."""

from __future__ import annotations

import os
import platform
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

# What each bar is: the template's own code, the peer a user would pick instead, or a
# floor to compare with (a bare route, reading the file and nothing else).
COLOURS = {"ours": "#00897b", "peer": "#9e9e9e", "floor": "#b0bec5"}


def machine() -> str:
    """The machine a benchmark ran on, in a line: CPUs and model, memory, OS, Python."""
    model = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        found = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.MULTILINE)
        model = found.group(1).strip() if found else model
    memory = ""
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        found = re.search(r"^MemTotal:\s*(\d+) kB", meminfo.read_text(), re.MULTILINE)
        memory = f", {int(found.group(1)) / 2**20:.0f} GiB" if found else ""
    return (
        f"{os.cpu_count()} CPUs ({model}){memory}, {platform.system()} {platform.release()},"
        f" Python {platform.python_version()}"
    )


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    kind: str = "ours"  # a key of COLOURS


@dataclass(frozen=True)
class Panel:
    title: str
    bars: Sequence[Bar]
    unit: str = ""  # printed after each bar's figure
    log: bool = False
    digits: int = 0  # decimals of each bar's figure


def draw(path: Path, title: str, panels: Sequence[Panel]) -> Path:
    """One figure of ``panels`` side by side, sharing the bars' labels (the first panel's),
    each bar's figure printed at its end; written to ``path`` as SVG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [bar.label for bar in panels[0].bars]
    assert all([bar.label for bar in panel.bars] == labels for panel in panels), "labels differ"
    figure, axes = plt.subplots(
        1,
        len(panels),
        figsize=(5.5 * len(panels) if len(panels) > 1 else 9, 0.42 * len(labels) + 1.6),
        sharey=True,
        squeeze=False,
    )
    for axis, panel in zip(axes[0], panels, strict=True):
        values = [bar.value for bar in panel.bars]
        axis.barh(range(len(values)), values, color=[COLOURS[bar.kind] for bar in panel.bars])
        if panel.log:
            axis.set_xscale("log")
            axis.set_xlim(right=max(values) * 4)  # room for the figures at the bars' ends
        else:
            axis.set_xlim(0, max(values) * 1.3)
        axis.set_title(panel.title, fontsize=10)
        for index, value in enumerate(values):
            figure_text = f" {value:,.{panel.digits}f}{panel.unit}"
            axis.text(value, index, figure_text, va="center", fontsize=8)
        axis.grid(axis="x", alpha=0.3)
    axes[0][0].set_yticks(range(len(labels)), labels)
    axes[0][0].invert_yaxis()
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="svg", metadata={"Date": None})
    plt.close(figure)
    return path
