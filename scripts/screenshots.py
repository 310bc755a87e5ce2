"""Retake the README's screenshots of a run (default: the bundled demo) in headless Chromium.

    .venv/bin/python scripts/screenshots.py [RUN] [--out assets/screenshots]

Serves the dashboard on a free port, opens each page, waits for its heading, and saves a
full-page PNG. Uses Debian's /usr/bin/chromium, never a downloaded browser.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

PAGES = {"home": ("", "irl-lens"), "heatmaps": ("heatmaps", "Token heatmaps"),
         "equivalent": ("equivalent", "Equivalent models"),
         "distributions": ("distributions", "Reward distributions"),
         "training": ("training", "Training"), "wants": ("wants", "What it wants")}  # fmt: skip


def serve(run: str) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "core.cli", "dashboard", run, "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                return server, url
        except OSError:
            time.sleep(0.5)
    server.kill()
    raise SystemExit("the dashboard did not start within 60 s")


def main() -> None:
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", nargs="?", default="demo")
    parser.add_argument("--out", default="assets/screenshots")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    server, url = serve(args.run)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"]
            )
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            for name, (path, heading) in PAGES.items():
                page.goto(f"{url}/{path}")
                page.get_by_role("heading", name=heading).first.wait_for(timeout=120_000)
                page.wait_for_load_state("networkidle")
                # the script run has ended (models loaded, heatmaps drawn): Streamlit's own marker
                page.locator("[data-testid='stApp'][data-test-script-state='notRunning']").wait_for(timeout=300_000)
                page.wait_for_timeout(3000)  # plotly draws after the page settles
                page.screenshot(path=str(out / f"{name}.png"), full_page=True)
                print(out / f"{name}.png")
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=20)


if __name__ == "__main__":
    main()
