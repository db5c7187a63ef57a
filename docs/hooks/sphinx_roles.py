"""
Griffe extension (loaded by mkdocstrings-python, see `extensions:` in mkdocs.yml): render the Sphinx markup of ART-style
docstrings on the API page.

The docstrings' field lists (`:param x:`, `:return:`, `:raises E:`) are parsed by griffe's Sphinx parser
(`docstring_style: sphinx`); this extension handles the rest of the markup before the docstrings are parsed:

- Sphinx roles (`:class:`, `:meth:`, `:func:`, `:mod:`, `:data:`, `:attr:`, `:exc:`, `:obj:`, `:const:`, with or
  without the `py:` domain, `~` and `title <target>` forms) become cross-references: the target is resolved in the
  docstring's scope (as Sphinx does) to the object's canonical path, and written as an optional autoref, a link when
  the object is rendered on the site and plain code otherwise (never a warning, so `mkdocs build --strict` holds).
- ART's `| Paper link: URL (note)` / `| Paper links: URL, URL` lines (a reStructuredText line block) become a
  paragraph of their own, `Paper link: <URL> (note)`, with clickable links.

The Python sources are not changed: only the docstrings griffe loaded for the site are.
"""

from __future__ import annotations

import html
import re
from typing import Any

import griffe

#: A Sphinx Python-domain role: `:class:`X``, `:py:meth:`~a.b.c``, `:func:`title <a.b>``.
ROLE = re.compile(r":(?:py:)?(?:class|meth|func|mod|data|attr|exc|obj|const):`(?P<text>[^`]+)`")
#: ART's line block with the paper link(s), and its indented continuation lines.
PAPER = re.compile(r"^\|[ \t]*(?P<label>Paper links?):[ \t]*(?P<rest>.*(?:\n[ \t]+\S.*)*)", re.MULTILINE)
URL = re.compile(r"https?://[^\s<>()]*[^\s<>().,;:]")
PACKAGE = "art_stn"


def find(path: str, collection: Any) -> Any:
    """
    :param path: A dotted path.
    :param collection: Griffe's modules collection.
    :return: The object at `path` (aliases followed to their target, inherited members included), or None.
    """
    head, *parts = path.split(".")
    obj = collection.members.get(head)
    try:
        for part in parts:
            if obj is None:
                return None
            obj = obj.final_target if obj.is_alias else obj
            members = obj.all_members if obj.is_class else obj.members
            obj = members.get(part)
        return None if obj is None else obj.final_target if obj.is_alias else obj
    except (griffe.AliasResolutionError, griffe.CyclicAliasError, KeyError, ValueError):
        return None


def resolve(scope: griffe.Object, target: str) -> str:
    """
    The identifier a role's target stands for, looked up like Sphinx does: in the docstring's scope (its object, then
    the enclosing class and module), then as an absolute path, then in the package's modules.

    :param scope: The object whose docstring holds the role.
    :param target: The role's target, e.g. `certify`, `art_stn.STNClassifier.certify_report`.
    :return: The canonical path of the object, or the target as written when it is not in the loaded package.
    """
    target = target.lstrip(".")
    head, _, tail = target.partition(".")
    collection = scope.modules_collection
    guesses = []
    enclosing = scope
    while enclosing is not None:  # members of the object and its parents, inherited ones included
        guesses.append(f"{enclosing.path}.{target}")
        enclosing = enclosing.parent
    try:
        base = scope.resolve(head)
        guesses.append(base + (f".{tail}" if tail else ""))
    except (griffe.NameResolutionError, griffe.AliasResolutionError, griffe.CyclicAliasError, KeyError):
        pass
    guesses.append(target)
    package = collection.members.get(PACKAGE)
    if package is not None:
        rest = target[len(PACKAGE) + 1 :] if target.startswith(PACKAGE + ".") else target
        guesses += [f"{module.path}.{rest}" for module in package.modules.values()]
    for guess in guesses:
        obj = find(guess, collection)
        if obj is not None:
            return obj.path
    return target


def render_role(scope: griffe.Object, text: str) -> str:
    """
    :param scope: The object whose docstring holds the role.
    :param text: The role's content: `target`, `~target` or `title <target>`.
    :return: An optional autoref (Markdown inline HTML) to the target, shown as code.
    """
    text = " ".join(text.split())
    if (match := re.fullmatch(r"(?P<title>.*?)\s*<(?P<target>[^<>]+)>", text)) and match["title"]:
        title, target = match["title"], match["target"]
    else:
        target = text.lstrip("!")
        title = target.lstrip("~.")
        if target.startswith("~"):
            target, title = target[1:], title.rsplit(".", 1)[-1]
    identifier = resolve(scope, target)
    return f'<autoref identifier="{html.escape(identifier)}" optional><code>{html.escape(title)}</code></autoref>'


def paper_links(match: re.Match) -> str:
    """:return: The line block `| Paper link: URL (note)` as a paragraph with clickable links."""
    rest = URL.sub(lambda url: f"<{url.group(0)}>", " ".join(match["rest"].split()))
    return f"{match['label']}: {rest}"


def rewrite(scope: griffe.Object, text: str) -> str:
    """
    :param scope: The object whose docstring this is.
    :param text: The docstring.
    :return: The docstring with its roles as cross-references and its paper links as links.
    """
    text = ROLE.sub(lambda match: render_role(scope, match["text"]), text)
    # A line block starts a new line in reStructuredText: give it a paragraph of its own in Markdown.
    text = re.sub(r"(?<=\S)\n(?=\|[ \t]*Paper links?:)", "\n\n", text)
    return PAPER.sub(paper_links, text)


class SphinxRoles(griffe.Extension):
    """Rewrite the Sphinx markup of every docstring of a loaded package (before griffe parses the docstrings)."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:  # noqa: ARG002
        """
        :param pkg: The package, completely loaded (so roles to its other modules resolve).
        :param loader: The loader.
        """
        seen: set[int] = set()

        def visit(obj: griffe.Object) -> None:
            if id(obj) in seen:
                return
            seen.add(id(obj))
            if obj.docstring is not None:
                obj.docstring.value = rewrite(obj, obj.docstring.value)
            for member in list(obj.members.values()):
                if not member.is_alias:
                    visit(member)

        visit(pkg)
