r"""
Render the built documentation in headless Chromium and check what a reader sees.

Builds the site (`mkdocs build --strict`), serves it on 127.0.0.1, loads every page in Debian's headless Chromium
and checks what its scripts left in the page: Home shows the quickstart, the API page has the entries of the public
names, every formula is rendered by the site's own KaTeX (each `arithmatex` span holds a `.katex` element, the
Theory page has rendered formulas, no `katex-error`), no raw `\(` or `\[` is left in the visible text of any
page (code blocks aside), and no list runs on as text: a paragraph, list item or table cell with a line that starts
with "- ", "* " or "1. " is a list Markdown did not see (it needs a blank line before it). It saves a screenshot of
each page into `--out`.

Usage: `python docs/scripts/check_site.py [--install] [--out DIR]` (`--install` runs `apt-get install chromium`
when it is missing; root only). CI keeps the screenshots in `ci-artifacts/screens/`.
"""

from __future__ import annotations

import argparse
import functools
import html.parser
import http.server
import os
import re
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
    "--virtual-time-budget=15000",  # let the page's scripts (KaTeX) finish before the DOM is dumped
]
#: Pages that must hold rendered formulas.
MATH_PAGES = ("theory/index.html",)
#: Raw TeX delimiters that must not survive rendering.
RAW_TEX = ("\\(", "\\[")
#: A paragraph, list item or table cell of the DOM holding a line that starts with a list marker.
LIST_AS_TEXT = re.compile(r"<(p|li|td)\b[^>]*>((?:(?!</\1>).)*?\n\s*(?:[-*+]|\d+\.)\s(?:(?!</\1>).)*)</\1>", re.DOTALL)
LIST_LINE = re.compile(r"\s*(?:[-*+]|\d+\.)\s")
EXPECTED = {
    "index.html": ["Quickstart", "STNClassifier", "certify", "art-stn demo"],
    "api/index.html": [
        "art_stn.classifier.STNClassifier",
        "art_stn.trainer.STNTrainer",
        "art_stn.bounds.renyi_l2_radius",
        "art_stn.confidence.top_two_bounds",
        "certify_report",
        "loss_gradient",
        "from_estimator",
        "art_stn.attacks.eot_autoattack",
    ],
}


class VisibleText(html.parser.HTMLParser):
    """
    The text a reader sees in a dumped DOM (no scripts, styles, code or KaTeX's hidden MathML copy), and counts of
    the math elements: `arithmatex` spans, rendered `katex` elements and `katex-error` ones.
    """

    HIDDEN = {"script", "style", "pre", "code", "annotation", "noscript", "template"}
    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[bool] = []  # per open element: whether it hides its content
        self.text: list[str] = []
        self.counts = {"arithmatex": 0, "katex": 0, "katex-error": 0}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:  # noqa: D102
        classes = (dict(attrs).get("class") or "").split()
        for name in self.counts:
            self.counts[name] += name in classes
        if tag not in self.VOID:
            self.stack.append(tag in self.HIDDEN or "katex-mathml" in classes)

    def handle_endtag(self, tag: str) -> None:  # noqa: D102
        if tag not in self.VOID and self.stack:
            self.stack.pop()

    def handle_data(self, data: str) -> None:  # noqa: D102
        if not any(self.stack):
            self.text.append(data)


def check_math(page: str, dom: str) -> list[str]:
    """
    :param page: The page's path in the site.
    :param dom: Its DOM after the scripts ran.
    :return: What is wrong with its formulas (empty when nothing is).
    """
    parser = VisibleText()
    parser.feed(dom)
    text, counts = "".join(parser.text), parser.counts
    problems = [f"raw {tex!r} in the visible text" for tex in RAW_TEX if tex in text]
    if counts["katex"] < counts["arithmatex"]:
        problems.append(f"{counts['arithmatex']} formulas but {counts['katex']} rendered")
    if counts["katex-error"]:
        problems.append(f"{counts['katex-error']} KaTeX errors")
    if page in MATH_PAGES and counts["katex"] == 0:
        problems.append("no rendered formulas")
    return problems


def check_lists(dom: str) -> list[str]:
    """
    :param dom: A page's DOM.
    :return: One problem per line of running text that starts like a list item (empty when there is none).
    """
    dom = re.sub(r"<pre\b.*?</pre>", "", dom, flags=re.DOTALL)  # code blocks may hold such lines
    lines = [
        line.strip()
        for match in LIST_AS_TEXT.finditer(dom)
        for line in match.group(2).split("\n")[1:]
        if LIST_LINE.match(line)
    ]
    return [f"a list renders as running text: {re.sub('<[^>]+>', '', line)[:60]!r}" for line in lines]


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
    pages = sorted(str(p.relative_to(site)) for p in site.rglob("index.html") if "assets" not in p.parts)
    try:
        for page in pages:
            words = EXPECTED.get(page, [])
            profile = tempfile.mkdtemp()
            common = [browser, *FLAGS, f"--user-data-dir={profile}"]
            dom = subprocess.run(
                [*common, "--dump-dom", base + page], capture_output=True, text=True, timeout=120, check=True
            ).stdout
            problems = [f"missing {w!r}" for w in words if w not in dom] + check_math(page, dom) + check_lists(dom)
            shot = out / ((page.replace("/index.html", "") if page != "index.html" else "index") + ".png")
            subprocess.run(
                [*common, "--window-size=1280,1600", f"--screenshot={shot}", base + page],
                capture_output=True,
                timeout=120,
                check=True,
            )
            if shot.stat().st_size <= 10_000:
                problems.append("blank screenshot")
            math = dom.count('class="katex"')
            status = "ok" if not problems else "; ".join(problems)
            print(f"{page}: {len(dom):,} bytes of DOM, {math} formulas, screenshot {shot}: {status}")
            if problems:
                failures.append(page)
    finally:
        server.shutdown()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
