"""
MkDocs hook: publish the example notebooks of `examples/` with the site (under `examples/`), so that the docs can
link them and a reader can download them from the site itself.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """
    MkDocs event: add every `examples/*.ipynb` to the site's files.

    :param files: The files of the site.
    :param config: The MkDocs configuration.
    :return: The files, with the notebooks.
    """
    for notebook in sorted(EXAMPLES.glob("*.ipynb")):
        files.append(File.generated(config, f"examples/{notebook.name}", abs_src_path=str(notebook)))
    return files
