"""
The built API page renders the docstrings' Sphinx markup: field lists as Parameters / Returns / Raises sections, roles
(`:class:`X``, `:meth:`y``, ...) as cross-references and ART's "| Paper link: URL" lines as links, none of it left as
literal text. The site is built as CI builds it (`mkdocs build --strict`, through `docs/scripts/check_site.py`).
Inline flags (`--dataset`) are marked so that the style sheet keeps them whole; the site check reports what overflows.
"""

from __future__ import annotations

import html.parser
import importlib.util
import re
from pathlib import Path

import pytest

from tests.test_docs import docs_script

#: Sphinx markup that must not reach the reader.
RAW = (":class:", ":meth:", ":func:", ":mod:", ":data:", ":attr:", ":exc:", ":param", ":return:", ":raises")
RAW += ("| Paper link",)


class Text(html.parser.HTMLParser):
    """The text of a page outside scripts and styles, and the URLs written in it outside links and code."""

    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.text: list[str] = []
        self.bare_urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.stack:
            while self.stack.pop() != tag:
                pass

    def handle_data(self, data: str) -> None:
        if {"script", "style"} & set(self.stack):
            return
        self.text.append(data)
        if not {"a", "code", "pre"} & set(self.stack):
            self.bare_urls += re.findall(r"https?://\S+", data)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    pytest.importorskip("mkdocstrings_handlers.python", reason="the docs extra is not installed")
    return docs_script("check_site").build_site(tmp_path_factory.mktemp("docs") / "site")


@pytest.fixture(scope="module")
def api_page(site) -> str:
    return (site / "api" / "index.html").read_text()


def test_api_page_has_no_raw_sphinx_markup(api_page):
    parser = Text()
    parser.feed(api_page)
    text = "".join(parser.text)
    found = {raw: [m.start() for m in re.finditer(re.escape(raw), text)] for raw in RAW}
    context = {raw: [text[max(0, i - 40) : i + 60] for i in spots[:3]] for raw, spots in found.items() if spots}
    assert not context, f"literal Sphinx markup on the API page: {context}"
    assert not parser.bare_urls, f"URLs that are not links on the API page: {parser.bare_urls}"


def test_api_page_renders_the_field_lists_as_sections(api_page):
    for section in ("Parameters", "Returns", "Raises"):
        tables = re.findall(rf'doc-section-title">{section}:</span></p>\s*<table>', api_page)
        assert len(tables) >= 3, f"{section} sections (a title then a table) on the API page: {len(tables)}"


def test_api_page_renders_roles_and_paper_links_as_links(api_page):
    roles = re.findall(r'<a class="autorefs autorefs-internal"[^>]*href="#art_stn\.[\w.]+"[^>]*><code>', api_page)
    assert len(roles) >= 50, f"cross-references in the API page's text: {len(roles)}"
    assert re.search(r'Paper links?: <a href="https://arxiv\.org/abs/\d{4}\.\d{5}">', api_page)


def flags_hook():
    """The module of `docs/hooks/flags.py`."""
    spec = importlib.util.spec_from_file_location("flags", Path(__file__).resolve().parents[1] / "docs/hooks/flags.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_inline_flags_are_kept_whole():
    mark = flags_hook().mark_flags
    assert mark("<p><code>--dataset</code></p>") == '<p><code class="flag"><span>--dataset</span></code></p>'
    assert mark("<code>--sigma 0.25</code>") == '<code class="flag"><span>--sigma</span> <span>0.25</span></code>'
    for untouched in ("<code>-h</code>", "<code>x--y</code>", "<pre><code>--out x\n</code></pre>"):
        assert mark(untouched) == untouched
    css = (Path(__file__).resolve().parents[1] / "docs/stylesheets/extra.css").read_text()
    assert re.search(r"code\.flag > span \{\s*white-space: nowrap;", css)


def test_the_built_pages_mark_their_flags(site):
    cli = (site / "cli" / "index.html").read_text()
    assert '<code class="flag"><span>--' in cli
    running_text = [part for part in flags_hook().PRE.split(cli) if not part.startswith("<pre")]
    assert not [part for part in running_text if "<code>--" in part], "an inline flag left unmarked"


def test_the_site_check_reports_wide_tables_code_and_broken_flags():
    check_layout = docs_script("check_site").check_layout
    fine = {"viewport": 1280, "page": 1280, "content": 688, "tables": [], "code": [], "flags": []}
    assert check_layout(fine) == []
    assert check_layout(None) == ["layout not measured (the page's scripts did not finish)"]
    table = {"index": 2, "width": 739, "over": 51, "heading": "runs", "head": "a | b"}
    code = {
        "index": 1,
        "width": 900,
        "visible": 688,
        "heading": "cpu",
        "line": "python x.py",
        "chars": 106,
        "box": True,
    }
    scrolled = {**code, "index": 2, "box": False}  # lines scroll inside the box, behind a visible scroll bar
    flag = {"text": "--dataset", "at": "-|-dataset", "hyphen": True, "heading": "train"}
    found = {**fine, "page": 1300, "tables": [table], "code": [code, scrolled], "flags": [flag]}
    problems = check_layout(found)
    assert len(problems) == 4
    assert problems[0].startswith("table 2 under 'runs'") and "51 px wider than the 688 px content area" in problems[0]
    assert problems[1].startswith("code block 1 under 'cpu' is 900 px wide: its box runs past")
    assert docs_script("check_site").layout_notes(found) == [
        "code block 2 under 'cpu' scrolls sideways in its 688 px box (longest line 106 characters)"
    ]
    assert problems[2] == "flag '--dataset' under 'train' is broken across lines at a hyphen ('-|-dataset')"
    assert "1300 px wide in a 1280 px window" in problems[3]
