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
    page: Path, probe: str, work: Path, screenshot: bool = True, attempts: int = 3
) -> tuple[dict | None, Path | None]:
    """``(the probe's JSON, a screenshot or None)`` of ``page`` with ``probe`` injected before
    ``</head>`` (into a copy; the page itself is not changed). The page is opened again, up to
    ``attempts`` times, while the probe finds nothing drawn (no JSON, or 0 points): under load
    Chromium's dump can come before the viewer has decoded its scene."""
    text = page.read_text(encoding="utf-8")
    at = text.index("</head>")
    copy = work / f"probed_{page.name}"
    copy.write_text(text[:at] + probe + text[at:], encoding="utf-8")
    url = copy.resolve().as_uri()
    for _ in range(attempts):  # a loaded CPU can dump the page before the scene is decoded
        dom = subprocess.run(
            [chromium(), *FLAGS, "--dump-dom", url], capture_output=True, text=True, timeout=120
        ).stdout
        found = re.search(r'data-probe="([^"]*)"', dom)
        probed = json.loads(html.unescape(found.group(1))) if found else None
        if probed is not None and probed.get("points", 1) > 0:
            break
    shot = work / f"{page.stem}.png" if screenshot else None
    if shot is not None:
        subprocess.run(
            [chromium(), *FLAGS, f"--screenshot={shot}", url], capture_output=True, timeout=120
        )
    return probed, shot


def cdp_screenshot(
    url: str, shot: Path, work: Path, settle: float = 20.0, size=(1200, 800)
) -> Path:
    """Open ``url`` in headless Chromium through the DevTools protocol, wait until two
    screenshots ``settle`` seconds apart... or until the page stops changing, then save the last
    one (for pages that keep loading after the load event, like a WebAssembly viewer)."""
    import asyncio
    import base64
    import time
    import urllib.request

    import websockets

    from pixio_core.network import free_port

    port = free_port()
    process = subprocess.Popen(
        [chromium(), *FLAGS[:-2], f"--window-size={size[0]},{size[1]}",
         f"--remote-debugging-port={port}", f"--user-data-dir={work / 'chromium_profile'}",
         "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip

    async def drive() -> None:
        for _ in range(200):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json") as answer:
                    tabs = json.load(answer)
                target = next(t["webSocketDebuggerUrl"] for t in tabs if t["type"] == "page")
                break
            except (OSError, StopIteration, ValueError):
                await asyncio.sleep(0.1)
        async with websockets.connect(target, max_size=None) as socket_:
            counter = 0

            async def call(method: str, **params):
                nonlocal counter
                counter += 1
                await socket_.send(json.dumps({"id": counter, "method": method, "params": params}))
                while True:
                    message = json.loads(await socket_.recv())
                    if message.get("id") == counter:
                        return message.get("result", {})

            await call("Page.enable")
            await call("Page.navigate", url=url)
            start, previous = time.time(), None
            while True:
                await asyncio.sleep(2.0)
                data = base64.b64decode(
                    (await call("Page.captureScreenshot", format="png"))["data"]
                )
                shot.write_bytes(data)
                if (previous == data and time.time() - start > 6) or time.time() - start > settle:
                    return
                previous = data

    try:
        asyncio.run(drive())
    finally:
        process.terminate()
        process.wait(10)
    return shot
