"""
The documentation: every Python block of the Guide (in order, one namespace) and of the Home page runs; its lists
render as lists; its code fits the page; the public text speaks of the software; quoted demo numbers are generated.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import matplotlib
import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)
#: The longest code line the site shows whole (no horizontal scroll) in a 1280-pixel-wide window: 79 characters
#: fit, measured on a screenshot in headless Chromium.
CODE_WIDTH = 79


def python_blocks(page: str) -> list[str]:
    return BLOCK.findall((ROOT / "docs" / page).read_text())


@pytest.mark.parametrize("page", ["guide.md", "index.md"])
def test_page_code_runs(page, tmp_path, monkeypatch):
    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)
    blocks = python_blocks(page)
    assert blocks, f"no python blocks in {page}"
    namespace: dict = {"__name__": f"docs_{page}"}
    for number, block in enumerate(blocks, start=1):
        try:
            exec(compile(block, f"docs/{page} block {number}", "exec"), namespace)  # noqa: S102
        except Exception as err:  # pragma: no cover - the failure message is the point
            pytest.fail(f"docs/{page} python block {number} failed: {type(err).__name__}: {err}")
    assert os.getcwd() == str(tmp_path)


def test_guide_covers_the_topics():
    text = (ROOT / "docs" / "guide.md").read_text()
    for heading in (
        "Certify a model",
        "Read a certificate",
        "Train with STN",
        "Attack the smoothed classifier",
        "Laplace noise",
        "Choosing sigma, n and alpha",
        "Distributed runs",
    ):
        assert f"## {heading}" in text


def test_guide_covers_the_ecosystem():
    text = (ROOT / "docs" / "guide.md").read_text()
    for heading in (
        "Certify a model trained by ART",
        "AutoAttack with EoT",
        "Which ART attacks run against STNClassifier",
    ):
        assert f"## {heading}" in text


# ---- The published pages: lists render as lists, the pages speak of the software, quoted numbers are generated.

PAGES = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md", ROOT / "examples" / "README.md"]
#: A line of a rendered paragraph, list item or cell that starts like a list item: a list Markdown did not see.
LIST_AS_TEXT = re.compile(r"<(p|li|td)>((?:(?!</\1>).)*?\n\s*(?:[-*+]|\d+\.)\s(?:(?!</\1>).)*)</\1>", re.DOTALL)


def render(text: str) -> str:
    """The page's HTML through the site's own Markdown extensions (mkdocs.yml), without MkDocs' plugins."""
    import markdown
    import yaml

    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    names, options = [], {}
    for entry in config["markdown_extensions"]:
        name, opts = next(iter(entry.items())) if isinstance(entry, dict) else (entry, None)
        names.append(name)
        options[name] = opts or {}
    return markdown.markdown(text, extensions=names, extension_configs=options)


def lists_as_text(text: str) -> list[str]:
    """:return: The rendered lines that begin with a list marker inside running text (empty when there are none)."""
    found = []
    for match in LIST_AS_TEXT.finditer(render(text)):
        found += [line.strip()[:80] for line in match.group(2).split("\n")[1:] if re.match(r"\s*([-*+]|\d+\.)\s", line)]
    return found


def test_the_list_check_sees_a_list_without_its_blank_line():
    assert lists_as_text("Run times:\n- paper protocol: 51 minutes;\n- tight protocol: 81 minutes.\n")
    assert not lists_as_text("Run times:\n\n- paper protocol: 51 minutes;\n- tight protocol: 81 minutes.\n")
    nested = "- a\n    - b\n\n    more about a.\n- c\n"  # the Guide's case: an item after an indented paragraph
    assert lists_as_text(nested) and not lists_as_text(nested.replace("a.\n- c", "a.\n\n- c"))


def docs_script(name: str):
    """The module of `docs/scripts/<name>.py`."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "docs" / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_site_check_sees_a_list_without_its_blank_line():
    """`docs/scripts/check_site.py` runs the same check on every built page (API docstrings included)."""
    check_lists = docs_script("check_site").check_lists
    assert check_lists(render("Run times:\n- paper protocol: 51 minutes;\n- tight protocol: 81 minutes.\n"))
    assert not check_lists(render("Run times:\n\n- paper protocol: 51 minutes;\n- tight protocol: 81 minutes.\n"))
    assert not check_lists("<pre><code>x = 1\n- 2\n</code></pre>")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_lists_render_as_lists(page):
    """Python-Markdown needs a blank line before a list; without it the items run on as text with a literal "- "."""
    assert not lists_as_text(page.read_text()), f"{page.name}: a list renders as running text (add a blank line)"


def docstrings(path: Path) -> list[tuple[str, str]]:
    """`(name, docstring)` of a module, its classes and functions (the API page renders them as Markdown)."""
    import ast

    tree = ast.parse(path.read_text())
    nodes = [tree, *(n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)))]
    return [(getattr(n, "name", path.stem), ast.get_docstring(n)) for n in nodes if ast.get_docstring(n)]


@pytest.mark.parametrize("module", sorted((ROOT / "art_stn").glob("*.py")), ids=lambda p: p.name)
def test_docstring_lists_render_as_lists(module):
    """A wrapped docstring line that starts with "- " is a list item to Markdown: blank line first, or reflow it."""
    bad = {name: found for name, doc in docstrings(module) if (found := lists_as_text(doc))}
    assert not bad, f"{module.name}: {bad}"


#: The project's own process, which a reader of the published pages has no use for: its issues and sessions, and how
#: a page got to what it says (targets and goals, earlier tables, review history, work not done yet).
PROCESS = re.compile(r"\bissues? #?\d+|DESIGN\.md|\bsessions?\b", re.IGNORECASE)
HISTORY = re.compile(
    r"the issue's|\bthe target was\b|\bgoal is not met\b|\bnot measured yet\b|\bthe earlier table\b|"
    r"\bsoundness review\b|\bclose review\b|failed before its fix|stays as it is, documented|\bis not made yet\b",
    re.IGNORECASE,
)


@pytest.mark.parametrize(
    "path",
    PAGES + sorted((ROOT / "art_stn").glob("*.py")) + sorted((ROOT / "examples").glob("*.*")),
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_public_text_speaks_of_the_software(path):
    history = path.name != "changelog.md"  # the changelog is where a page's history goes
    hits = [
        line.strip()[:100]
        for line in path.read_text().splitlines()
        if PROCESS.search(line) or (history and HISTORY.search(line))
    ]
    assert not hits, f"{path.name} speaks of the project's process: {hits}"


def test_site_excludes_the_docs_scripts():
    import yaml

    assert "scripts/" in yaml.safe_load((ROOT / "mkdocs.yml").read_text())["exclude_docs"].split()


def test_reproduce_page_quotes_the_committed_demo_results():
    """The digits-demo numbers on the Reproducing page are those of `results/demo/`, with the commit that made them."""
    module = docs_script("demo_numbers")
    expected = module.expected()
    assert module.on_page((ROOT / "docs" / "reproduce.md").read_text()) == expected, (
        "docs/reproduce.md: run python docs/scripts/demo_numbers.py --write"
    )
    commit = json.loads((ROOT / "results" / "demo" / "provenance.json").read_text())["commit"]
    assert re.fullmatch(r"[0-9a-f]{40}", commit) and f"`{commit[:12]}`" in expected


def test_pages_quote_the_readme_set_up_as_it_is():
    """Installation and the examples' README quote the README's set-up command (the one `.ci/run` runs) verbatim."""
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"^## Set-up.*?^```bash\n(.*?)^```", readme, re.DOTALL | re.MULTILINE).group(1)
    install = block.splitlines()[0]
    assert install.startswith("pip install ")
    for page in (ROOT / "docs" / "installation.md", ROOT / "examples" / "README.md"):
        text = re.sub(r"\s*\n\s*", " ", page.read_text())
        assert install in text, f"{page.name} does not quote the README's set-up command {install!r}"


def test_reproduce_page_leads_with_its_findings():
    text = (ROOT / "docs" / "reproduce.md").read_text()
    headings = re.findall(r"^## (.*)$", text, re.MULTILINE)
    assert headings[0] == "What this shows", headings
    assert text.index("cannot give the paper's numbers") < text.index("## Running the experiments")


@pytest.mark.parametrize("page", ["index.md", "guide.md", "architecture.md", "reproduce.md"])
def test_code_blocks_fit_the_page(page):
    """Code lines no longer than what the site shows without a scroll bar at a 1280-pixel-wide window."""
    text = (ROOT / "docs" / page).read_text()
    long = [
        line
        for block in re.findall(r"^```\w*\n(.*?)^```", text, re.DOTALL | re.MULTILINE)
        for line in block.splitlines()
        if len(line) > CODE_WIDTH
    ]
    assert not long, f"{page}: code lines over {CODE_WIDTH} characters: {long}"


def test_certified_training_page_is_regenerated_from_the_committed_results():
    """The benchmark page's tables are those `docs/scripts/certified_training_report.py` makes from the committed
    results files, and every run it lists was certified with the same protocol."""
    module = docs_script("certified_training_report")
    page = (ROOT / "docs" / "certified-training.md").read_text()
    runs = module.load()
    between = docs_script("generated_block").between
    assert between(page, module.BEGIN, module.END) == module.report(runs), (
        "docs/certified-training.md: run python docs/scripts/certified_training_report.py --write"
    )
    answer = between(page, module.ANSWER_BEGIN, module.ANSWER_END)
    assert answer == module.answer_block(runs), "the answer block: run certified_training_report.py --write"
    assert page.index(answer) < page.index("## How it was run"), "the page opens with its answer"


@pytest.mark.slow
def test_cli_page_examples_match_a_fresh_run():
    """docs/cli.md's example sessions are those its commands print now (numbers and true/false masked: they depend
    on the CPU), so a changed output line or results header shows up here."""
    module = docs_script("cli_examples")
    page = (ROOT / "docs" / "cli.md").read_text()
    old = module.blocks(page)
    assert set(old) == set(module.EXAMPLES), "docs/cli.md lost the markers of a generated example"
    for name, text in module.sessions().items():
        assert module.masked(old[name]) == module.masked(module.block(name, text)), (
            f"docs/cli.md example {name!r} differs from a fresh run: python docs/scripts/cli_examples.py --write"
        )


def test_empirical_page_is_regenerated_from_the_committed_results():
    module = docs_script("empirical_report")
    page = (ROOT / "docs" / "empirical-robustness.md").read_text()
    assert docs_script("generated_block").between(page, module.BEGIN, module.END) == module.report(), (
        "docs/empirical-robustness.md: run python docs/scripts/empirical_report.py --write"
    )


def test_full_protocol_section_is_regenerated_from_the_committed_results():
    module = docs_script("full_protocol_report")
    page = (ROOT / "docs" / "certified-training.md").read_text()
    assert docs_script("generated_block").between(page, module.BEGIN, module.END) == module.report(module.load()), (
        "docs/certified-training.md: run python docs/scripts/full_protocol_report.py --write"
    )


def test_full_protocol_oracle_matches_the_closed_form_for_all_correct_images():
    """An image whose samples all fall in its class: CERTIFY certifies radius r from m samples when
    alpha^(1/m) >= Phi(r / sigma), so the oracle needs ceil(ln alpha / ln Phi(r / sigma)) (about 8,800 at 1.58 and
    29,700 at 1.75 for sigma 0.5, alpha 0.001)."""
    import numpy as np
    from scipy.stats import norm

    module = docs_script("full_protocol_report")
    radii = np.array([0.25, 1.0, 1.58, 1.75])
    found = module.oracle_samples(np.ones(4), np.zeros(4), radii, 0.001, 0.5, "cohen")
    expected = np.ceil(np.log(0.001) / np.log(norm.cdf(radii / 0.5)))
    assert list(found) == list(expected) and found[2] == 8754 and found[3] == 29691
    # An image below the radius's probability is never certified there; more probability needs fewer samples.
    assert module.oracle_samples([0.97], [0.02], [1.75], 0.001, 0.5, "cohen", cap=10**6)[0] == -1
    fewer = module.oracle_samples([0.9995, 0.99999], [0.0, 0.0], [1.5, 1.5], 0.001, 0.5, "cohen")
    assert fewer[0] > fewer[1] > 0


def test_full_protocol_renyi_table_counts_each_radius_and_states_the_cap_ceiling():
    """The Rényi table counts an image at radius r when it is correct and certified at r or more, at the published
    radii and 1.58, and states the Rényi ceiling of the cap's stage (alpha / 2 of 0.001, N = 100,000): 1.59."""
    import numpy as np

    module = docs_script("full_protocol_report")
    t = {
        "idx": np.arange(4),
        "label": np.array([1, 2, 3, 4]),
        "predict": np.array([1, 2, 3, 5]),
        "radius": np.array([0.1, 1.6, 1.58, 1.7]),
    }
    lines = module.renyi_table({("stn-gamma2", "renyi"): ({}, t)})
    assert "largest radius: 1.59," in lines[0]
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ")[1].split(" [")[0] for line in lines[4:-1]}
    assert rows["0"] == "75.0" and rows["0.25"] == "50.0" and rows["1.58"] == "50.0" and rows["1.75"] == "0.0"
    assert list(rows) == ["0", "0.25", "0.5", "0.75", "1", "1.25", "1.5", "1.58", "1.75"]
    assert module.renyi_table({}) == []


def test_full_protocol_paired_gain_compares_the_same_images_under_each_bound():
    """The paired table of a bound uses that bound's runs only, matches images by index (not by row order), adds
    the headline radius 1.58, and stays empty until Gaussian augmentation and another model are certified by it."""
    import numpy as np

    module = docs_script("full_protocol_report")

    def run(radius, order=(0, 1, 2, 3)):
        i = np.array(order)
        return {}, {"idx": i, "label": i, "predict": i, "radius": np.array(radius)[i]}

    gaussian = run([1.6, 1.6, 0.1, 0.1])
    stn = run([1.6, 1.6, 1.6, 0.1], order=(3, 2, 1, 0))  # the same images in another order
    runs = {("gaussian", "renyi"): gaussian, ("stn-gamma2", "renyi"): stn, ("gaussian", "cohen"): gaussian}
    lines = module.paired_gain(runs, "renyi")
    assert "under the Rényi bound" in lines[0] and "STN (gamma = 2) minus Gaussian" in lines[2]
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ")[1].split(" [")[0] for line in lines[4:-1]}
    assert rows["0"] == "+0.0" and rows["1.58"] == "+25.0" and rows["1.75"] == "+0.0"
    # Paired image by image (differences 0, 0, +1, 0 at 1.58), not row by row (-1, 0, +1, +1): the same mean, a
    # narrower interval.
    from art_stn.metrics import paired_difference

    d, lo, hi = paired_difference(np.array([1, 1, 1, 0], bool), np.array([1, 1, 0, 0], bool))
    assert f"| 1.58 | {100 * d:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}] |" in lines
    assert module.paired_gain(runs) == []  # CERTIFY: only Gaussian is certified by it
    assert module.paired_gain({("stn-gamma2", "renyi"): stn}, "renyi") == []
