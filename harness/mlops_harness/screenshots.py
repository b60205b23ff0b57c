"""Screenshots with headless Chromium (Debian's `chromium`), and a check that a picture is
not blank."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from mlops_harness.processes import run

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Where the screenshot tests also save their pictures: scripts/screenshots.py sets it to
# docs/screenshots, for the docs site.
SCREENSHOTS = os.environ.get("SCREENSHOTS_DIR", "")


def screenshot(url: str, path: Path, wait_ms: int = 8000) -> str:
    """A 1280x900 picture of ``url`` as Chromium draws it (after up to ``wait_ms`` of the
    page's own scripts), saved at ``path`` (and in $SCREENSHOTS_DIR); the page's title."""
    if CHROMIUM is None:
        import pytest

        pytest.skip("no Chromium here (Debian's chromium package): no screenshot taken")
    common = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
        "--no-first-run", f"--virtual-time-budget={wait_ms}", "--window-size=1280,900",
    ]  # fmt: skip
    # One page load: headless Chromium takes the picture and prints the DOM in one run.
    dom = run([*common, f"--screenshot={path}", "--dump-dom", url], path.parent, timeout=120).stdout
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(SCREENSHOTS) / path.name)
    start, end = dom.find("<title>"), dom.find("</title>")
    return dom[start + len("<title>") : end].strip() if 0 <= start < end else ""


def png_colours(path: Path, most: int = 64) -> int:
    """How many distinct byte values the PNG's pixels hold (up to ``most``): 1 or 2 for a
    blank page, dozens for one with text and pictures. Standard library only."""
    import struct
    import zlib

    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    position, compressed = 8, b""
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        if kind == b"IDAT":
            compressed += data[position + 8 : position + 8 + length]
        position += 12 + length
    pixels = zlib.decompress(compressed)
    return min(len(set(pixels[::7])), most)
