"""
Render the built documentation in headless Chromium and check what a reader sees.

Builds the site (`mkdocs build --strict`), serves it on 127.0.0.1, loads the Home and API pages in Debian's
headless Chromium, checks that Home shows the quickstart and that the API page has the entries of the public
names, and saves a screenshot of each page.

Usage: `python docs/scripts/check_site.py [--install] [--out DIR]` (`--install` runs `apt-get install chromium`
when it is missing; root only).
"""

from __future__ import annotations

import argparse
import functools
import http.server
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
EXPECTED = {
    "index.html": ["Quickstart", "STNClassifier", "certify", "art-stn demo"],
    "api/index.html": [
        "art_stn.classifier.STNClassifier",
        "art_stn.trainer.STNTrainer",
        "art_stn.bounds.renyi_l2_radius",
        "art_stn.confidence.top_two_bounds",
        "certify_report",
        "loss_gradient",
    ],
}


def chromium(install: bool) -> str:
    """
    :param install: Install Debian's chromium package when it is missing.
    :return: The path of the chromium binary.
    """
    path = shutil.which("chromium")
    if path is None and install:
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "chromium"],
            check=True,
            env={"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        )
        path = shutil.which("chromium")
    if path is None:
        sys.exit("chromium is not installed: run with --install (apt-get install chromium)")
    return path


def main() -> int:
    """
    Build, serve, render and check.

    :return: The exit status (0 when every page shows what it should).
    """
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--install", action="store_true")
    parser.add_argument("--out", default=None, help="folder for the screenshots (default: a temporary folder)")
    args = parser.parse_args()
    browser = chromium(args.install)
    out = Path(args.out or tempfile.mkdtemp())
    out.mkdir(parents=True, exist_ok=True)
    site = Path(tempfile.mkdtemp()) / "site"
    subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(site)],
        cwd=ROOT,
        check=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:  # noqa: D102 - keep the output to the checks
            pass

    handler = functools.partial(Quiet, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    failures = []
    try:
        for page, words in EXPECTED.items():
            profile = tempfile.mkdtemp()
            common = [browser, *FLAGS, f"--user-data-dir={profile}"]
            dom = subprocess.run(
                [*common, "--dump-dom", base + page], capture_output=True, text=True, timeout=120, check=True
            ).stdout
            missing = [w for w in words if w not in dom]
            shot = out / (page.replace("/", "_").replace(".html", "") + ".png")
            subprocess.run(
                [*common, "--window-size=1280,1600", f"--screenshot={shot}", base + page],
                capture_output=True,
                timeout=120,
                check=True,
            )
            status = "ok" if not missing and shot.stat().st_size > 10_000 else f"MISSING {missing}"
            print(f"{page}: {len(dom):,} bytes of DOM, screenshot {shot} ({shot.stat().st_size:,} bytes): {status}")
            if status != "ok":
                failures.append(page)
    finally:
        server.shutdown()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
