"""
MkDocs hook: command-line flags in running text never break across lines at a hyphen.

Material lets inline code break anywhere (`word-break: break-word`), so `--dataset` could end a line with "-" and
start the next with "-dataset". This hook gives inline code that starts with "--" (not code blocks) the class `flag`
and puts each of its words in a `<span>`; `docs/stylesheets/extra.css` keeps those words whole (`white-space:
nowrap`), so a flag with a value (`--sigma 0.25`) may still break at its spaces, and nowhere else. The text, and what a
reader copies, are unchanged. `docs/scripts/check_site.py` checks the result in Chromium.
"""

from __future__ import annotations

import re

#: Inline code whose text starts with "--" (its content is escaped text: Markdown puts no tags in inline code).
FLAG = re.compile(r"<code>(\s*--[^<]*)</code>")
#: A code block, left as it is.
PRE = re.compile(r"(<pre\b.*?</pre>)", re.DOTALL)


def mark_flags(html: str) -> str:
    """
    :param html: A page's HTML.
    :return: The HTML with each inline flag as `<code class="flag"><span>--word</span> <span>value</span></code>`.
    """

    def flag(match: re.Match) -> str:
        words = re.sub(r"(\S+)", r"<span>\1</span>", match.group(1))
        return f'<code class="flag">{words}</code>'

    return "".join(part if part.startswith("<pre") else FLAG.sub(flag, part) for part in PRE.split(html))


def on_page_content(html: str, **kwargs) -> str:
    """
    MkDocs event: mark the flags of the page's HTML (after Markdown and mkdocstrings rendered it).

    :param html: The page's HTML.
    :return: The HTML with its flags marked.
    """
    return mark_flags(html)
