"""The documentation's code runs: every Python block of the Guide (in order, one namespace) and of the Home page."""

from __future__ import annotations

import os
import re
from pathlib import Path

import matplotlib
import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


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
