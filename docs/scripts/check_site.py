r"""
Render the built documentation in headless Chromium and check what a reader sees.

Builds the site (`mkdocs build --strict`), serves it on 127.0.0.1, loads every page in Debian's headless Chromium
and checks what its scripts left in the page: Home shows the quickstart, the API page has the entries of the public
names, every formula is rendered by the site's own KaTeX (each `arithmatex` span holds a `.katex` element, the
Theory page has rendered formulas, no `katex-error`), no raw `\(` or `\[` is left in the visible text of any
page (code blocks aside), and no list runs on as text: a paragraph, list item or table cell with a line that starts
with "- ", "* " or "1. " is a list Markdown did not see (it needs a blank line before it). It saves a screenshot of
each page into `--out`.

It also checks the layout in a 1280-pixel-wide window (`WIDTH`), measured by a script it adds to the pages it serves
(`LAYOUT_SCRIPT`): no table and no code block is wider than the page's content area (a table wider than the column,
even inside Material's scroll wrapper, and a code block whose box runs past it fail, with the heading they sit under;
a code block whose lines scroll inside its own box, behind Material's visible scroll bar, is listed as a note), the
page does not scroll sideways, and no inline code of a command-line flag (text that starts with "--") is broken
across lines at a hyphen or mid-word (`docs/hooks/flags.py` and `docs/stylesheets/extra.css` keep flags whole).
Every problem is printed with its page and element, and listed again at the end; the exit status is 1 when there is
any.

Usage: `python docs/scripts/check_site.py [--install] [--out DIR]` (`--install` runs `apt-get install chromium`
when it is missing, and `fonts-roboto`, the site's text font, so that widths do not depend on reaching Google Fonts;
root only). CI keeps the screenshots in `ci-artifacts/screens/`.
"""

from __future__ import annotations

import argparse
import functools
import html
import html.parser
import http.server
import json
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
#: The window the layout is checked in (and the screenshots taken in): a laptop screen, both sidebars shown.
WIDTH, HEIGHT = 1280, 1600
#: Added before `</body>` of every page served to Chromium: once the page, its scripts and fonts are loaded, it
#: measures the layout and writes what it found, as JSON, into the `data-check-site` attribute of `<html>`.
LAYOUT_SCRIPT = """<script id="check-site-layout">
(() => {
  const round = (x) => Math.round(x);
  const heading = (el) => {
    const h = document.evaluate("preceding::*[self::h1 or self::h2 or self::h3 or self::h4 or self::h5][1]", el, null,
      XPathResult.FIRST_ORDERED_NODE_TYPE, null).singleNodeValue;
    return h ? (h.id || h.textContent.replace(/\\s+/g, " ").replace(/\u00b6/g, "").trim()) : "";
  };
  const measure = () => {
    const article = document.querySelector("article.md-content__inner") || document.body;
    const style = getComputedStyle(article), box = article.getBoundingClientRect();
    const left = box.left + parseFloat(style.paddingLeft), right = box.right - parseFloat(style.paddingRight);
    const found = {viewport: innerWidth, page: document.documentElement.scrollWidth, content: round(right - left),
                   tables: [], code: [], flags: []};
    article.querySelectorAll("table").forEach((table, i) => {
      const edge = table.getBoundingClientRect().left + table.scrollWidth;
      if (edge > right + 1) {
        const head = [...(table.rows[0] ? table.rows[0].cells : [])].map((c) => c.textContent.trim()).join(" | ");
        found.tables.push({index: i + 1, width: round(table.scrollWidth), over: round(edge - right),
                           heading: heading(table), head: head.slice(0, 80)});
      }
    });
    article.querySelectorAll("pre").forEach((pre, i) => {
      const code = pre.querySelector("code") || pre;
      const edge = pre.getBoundingClientRect().right;
      if (code.scrollWidth > code.clientWidth + 1 || edge > right + 1) {
        const lines = code.textContent.split("\\n");
        const line = lines.reduce((a, b) => (b.length > a.length ? b : a), "");
        found.code.push({index: i + 1, width: round(code.scrollWidth), visible: round(code.clientWidth),
                         heading: heading(pre), line: line.slice(0, 100), chars: line.length,
                         box: edge > right + 1});
      }
    });
    article.querySelectorAll("code").forEach((code) => {
      const text = code.textContent;
      if (code.closest("pre") || !text.trim().startsWith("--")) return;
      const chars = [];  // the visible characters: [character, top of its box, its height, whether a space precedes]
      let space = false;
      const walker = document.createTreeWalker(code, NodeFilter.SHOW_TEXT);
      for (let node = walker.nextNode(); node; node = walker.nextNode()) {
        for (let k = 0; k < node.data.length; k++) {
          if (/\\s/.test(node.data[k])) {  // a line may break at a space (where the space collapses)
            space = true;
            continue;
          }
          const range = document.createRange();
          range.setStart(node, k);
          range.setEnd(node, k + 1);
          const rect = range.getClientRects()[0];
          if (rect && rect.width > 0) chars.push([node.data[k], rect.top, rect.height, space]);
          space = false;
        }
      }
      for (let k = 1; k < chars.length; k++) {
        const [before, top0, height] = chars[k - 1], [after, top1, , spaced] = chars[k];
        if (top1 > top0 + height / 2 && !spaced) {
          const shown = (cs) => cs.map((c) => (c[3] ? " " : "") + c[0]).join("").trim();
          found.flags.push({text: text.slice(0, 80), at: shown(chars.slice(0, k)) + "|" + shown(chars.slice(k)),
                            hyphen: before === "-" || after === "-", heading: heading(code)});
          break;
        }
      }
    });
    document.documentElement.setAttribute("data-check-site", JSON.stringify(found));
  };
  addEventListener("load", () => (document.fonts ? document.fonts.ready : Promise.resolve())
    .then(() => setTimeout(measure, 500)));
})();
</script>
"""
LAYOUT_RESULT = re.compile(r'\sdata-check-site="([^"]*)"')
LAYOUT_ELEMENT = re.compile(r'<script id="check-site-layout">.*?</script>\s*', re.DOTALL)
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


def add_layout_script(site: Path) -> None:
    """
    :param site: A built site: the layout script goes before `</body>` of each of its pages (to be served to
        Chromium only; `mkdocs build` output stays as it is).
    """
    for page in site.rglob("*.html"):
        text = page.read_text()
        if "</body>" in text and 'id="check-site-layout"' not in text:
            page.write_text(text.replace("</body>", LAYOUT_SCRIPT + "</body>", 1))


def layout(dom: str) -> tuple[dict | None, str]:
    """
    :param dom: A page's DOM after the scripts ran, the layout script among them.
    :return: What the layout script measured (None when it did not run) and the DOM without the script and its
        result (so the other checks see the page alone).
    """
    match = LAYOUT_RESULT.search(dom)
    found = json.loads(html.unescape(match.group(1))) if match else None
    return found, LAYOUT_ELEMENT.sub("", LAYOUT_RESULT.sub("", dom))


def check_layout(found: dict | None) -> list[str]:
    """
    :param found: What the layout script measured on a page (`layout`), or None.
    :return: One problem per table or code block wider than the content area, per flag broken across lines and for
        a page that scrolls sideways (empty when there is none).
    """
    if found is None:
        return ["layout not measured (the page's scripts did not finish)"]
    content = found["content"]
    problems = [
        f"table {t['index']} under {t['heading']!r} (header {t['head']!r}) is {t['width']} px wide, "
        f"{t['over']} px wider than the {content} px content area"
        for t in found["tables"]
    ]
    problems += [
        f"code block {c['index']} under {c['heading']!r} is {c['width']} px wide: its box runs past the {content} px "
        f"content area (its longest line has {c['chars']} characters: {c['line']!r})"
        for c in found["code"]
        if c.get("box", True)
    ]
    problems += [
        f"flag {f['text']!r} under {f['heading']!r} is broken across lines "
        f"{'at a hyphen' if f['hyphen'] else 'mid-word'} ({f['at']!r})"
        for f in found["flags"]
    ]
    if found["page"] > found["viewport"]:
        problems.append(f"the page is {found['page']} px wide in a {found['viewport']} px window (it scrolls sideways)")
    return problems


def layout_notes(found: dict | None) -> list[str]:
    """
    :param found: What the layout script measured on a page (`layout`), or None.
    :return: One note per code block whose lines scroll sideways inside its own box: Material shows a scroll bar
        there (a visible scroll cue), so it is reported, not failed.
    """
    return [
        f"code block {c['index']} under {c['heading']!r} scrolls sideways in its {c['visible']} px box "
        f"(longest line {c['chars']} characters)"
        for c in (found or {}).get("code", [])
        if not c.get("box", True)
    ]


def build_site(site: Path) -> Path:
    """
    :param site: The folder to build the site into (`mkdocs build --strict`, the CI's build).
    :return: `site`.
    :raises subprocess.CalledProcessError: when the build fails (a warning fails it, strict mode).
    """
    subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(site)],
        cwd=ROOT,
        check=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    return site


def chromium(install: bool) -> str:
    """
    :param install: Install Debian's chromium package when it is missing.
    :return: The path of the chromium binary.
    """
    path = shutil.which("chromium")
    missing = ["chromium"] * (path is None) + ["fonts-roboto"] * (not has_roboto())
    if missing and install:
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", *missing],
            check=True,
            env={"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        )
        path = shutil.which("chromium")
    if path is None:
        sys.exit("chromium is not installed: run with --install (apt-get install chromium)")
    if not has_roboto():
        print(
            "note: the Roboto font is not installed (apt-get install fonts-roboto, or --install): where Google Fonts "
            "cannot be reached, text is measured in a wider fallback font and tables may be reported too wide"
        )
    return path


def has_roboto() -> bool:
    """:return: Whether the site's text font, Roboto, is installed (Material loads it from Google Fonts otherwise)."""
    if shutil.which("fc-match") is None:
        return False
    found = subprocess.run(["fc-match", "-f", "%{family}", "Roboto"], capture_output=True, text=True, check=False)
    return "Roboto" in found.stdout


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
    site = build_site(Path(tempfile.mkdtemp()) / "site")
    add_layout_script(site)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:  # noqa: D102 - keep the output to the checks
            pass

    handler = functools.partial(Quiet, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    failures: dict[str, list[str]] = {}
    pages = sorted(str(p.relative_to(site)) for p in site.rglob("index.html") if "assets" not in p.parts)
    try:
        for page in pages:
            words = EXPECTED.get(page, [])
            profile = tempfile.mkdtemp()
            common = [browser, *FLAGS, f"--user-data-dir={profile}", f"--window-size={WIDTH},{HEIGHT}"]
            found, dom = layout(
                subprocess.run(
                    [*common, "--dump-dom", base + page], capture_output=True, text=True, timeout=120, check=True
                ).stdout
            )
            problems = [f"missing {w!r}" for w in words if w not in dom] + check_math(page, dom) + check_lists(dom)
            problems += check_layout(found)
            shot = out / ((page.replace("/index.html", "") if page != "index.html" else "index") + ".png")
            subprocess.run(
                [*common, f"--screenshot={shot}", base + page],
                capture_output=True,
                timeout=120,
                check=True,
            )
            if shot.stat().st_size <= 10_000:
                problems.append("blank screenshot")
            math = dom.count('class="katex"')
            status = "ok" if not problems else "; ".join(problems)
            notes = layout_notes(found)
            status += f" (notes: {'; '.join(notes)})" if notes else ""
            print(f"{page}: {len(dom):,} bytes of DOM, {math} formulas, screenshot {shot}: {status}")
            if problems:
                failures[page] = problems
    finally:
        server.shutdown()
    if failures:
        print(f"\n{sum(map(len, failures.values()))} problems on {len(failures)} of {len(pages)} pages:")
        for page, problems in failures.items():
            print("".join(f"  {page}: {problem}\n" for problem in problems), end="")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
