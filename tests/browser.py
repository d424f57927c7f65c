"""Headless Chromium (Debian's ``chromium``, software WebGL) for the viewer tests: load a page,
let it run, read a JSON probe the test injects, and take a screenshot."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--use-gl=angle",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--window-size=1024,768",
    "--virtual-time-budget=15000",
]

# counts of what the viser client drew: visible point objects and points, and scene-tree nodes
VISER_PROBE = """<script>
setInterval(() => {
  const m = window.__viserMutable, tree = window.__viserSceneTree;
  if (!m || !m.scene || !tree) return;
  let objects = 0, points = 0;
  const shown = (o) => { for (; o; o = o.parent) if (!o.visible) return false; return true; };
  m.scene.traverse((o) => {
    if (o.isPoints && shown(o)) { objects += 1; points += o.geometry.attributes.position.count; }
  });
  const nodes = Object.keys(tree.getState());
  document.documentElement.setAttribute("data-probe", JSON.stringify({objects, points, nodes}));
}, 250);
</script>"""


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "Debian's chromium is missing: `make setup` installs it"
    return found


def probe_page(
    page: Path, probe: str, work: Path, screenshot: bool = True
) -> tuple[dict | None, Path | None]:
    """``(the probe's JSON, a screenshot or None)`` of ``page`` with ``probe`` injected before
    ``</head>`` (into a copy; the page itself is not changed)."""
    text = page.read_text(encoding="utf-8")
    at = text.index("</head>")
    copy = work / f"probed_{page.name}"
    copy.write_text(text[:at] + probe + text[at:], encoding="utf-8")
    url = copy.resolve().as_uri()
    dom = subprocess.run(
        [chromium(), *FLAGS, "--dump-dom", url], capture_output=True, text=True, timeout=120
    ).stdout
    shot = work / f"{page.stem}.png" if screenshot else None
    if shot is not None:
        subprocess.run(
            [chromium(), *FLAGS, f"--screenshot={shot}", url], capture_output=True, timeout=120
        )
    found = re.search(r'data-probe="([^"]*)"', dom)
    return (json.loads(html.unescape(found.group(1))) if found else None), shot
