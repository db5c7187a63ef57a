"""
MkDocs hook: the site serves KaTeX itself (no CDN), so its formulas render offline and behind a proxy.

On a build that finds no KaTeX in `docs/assets/katex/` (git-ignored), it fetches the pinned release with npm
(`npm pack katex@VERSION`, the registry's own client), checks the tarball's SHA-512 against the one pinned here, and
unpacks KaTeX's script, auto-render extension, style sheet, fonts and MIT license there. Later builds reuse them, so
`mkdocs build --strict` stays one command. `docs/javascripts/katex.js` renders the `\\( \\)` and `\\[ \\]` spans that
`pymdownx.arithmatex` (generic mode) writes.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError

KATEX_VERSION = "0.19.1"
#: npm's `integrity` of katex-0.19.1.tgz (SHA-512, base64).
KATEX_SHA512 = "jG8uKntjSEcm2EpQOh0XturpPuuC9r3Sq5HLHdsFdWZT27E672SF19QEi+of0/YeOy15lDgRhKvr5614uRrEfA=="
#: Members of the npm tarball that the site needs, by prefix, and where they go under assets/katex/.
MEMBERS = {
    "package/LICENSE": "LICENSE",
    "package/dist/katex.min.js": "katex.min.js",
    "package/dist/katex.min.css": "katex.min.css",
    "package/dist/contrib/auto-render.min.js": "contrib/auto-render.min.js",
    "package/dist/fonts/": "fonts/",
}


def fetch_katex(target: Path) -> None:
    """
    Put the pinned KaTeX release into `target`, unless it is there already.

    :param target: The folder, `docs/assets/katex`.
    :raises PluginError: when npm is missing, the download fails or the checksum does not match.
    """
    stamp = target / "VERSION"
    if stamp.is_file() and stamp.read_text().strip() == KATEX_VERSION:
        return
    npm = shutil.which("npm")
    if npm is None:
        raise PluginError(
            f"KaTeX {KATEX_VERSION} is not in {target} and npm is not installed: install Node.js and npm "
            "(apt-get install npm) so that the docs build can fetch it from the npm registry."
        )
    with tempfile.TemporaryDirectory() as tmp:
        result = subprocess.run(
            [npm, "pack", f"katex@{KATEX_VERSION}", "--pack-destination", tmp, "--silent"],
            capture_output=True,
            text=True,
            check=False,
        )
        tarballs = list(Path(tmp).glob("katex-*.tgz"))
        if result.returncode != 0 or len(tarballs) != 1:
            raise PluginError(f"npm pack katex@{KATEX_VERSION} failed: {result.stderr.strip()[-500:]}")
        digest = base64.b64encode(hashlib.sha512(tarballs[0].read_bytes()).digest()).decode()
        if digest != KATEX_SHA512:
            raise PluginError(f"katex-{KATEX_VERSION}.tgz has SHA-512 {digest}, not the pinned {KATEX_SHA512}.")
        staging = Path(tmp) / "katex"
        with tarfile.open(tarballs[0]) as tar:
            for member in tar.getmembers():
                for prefix, dest in MEMBERS.items():
                    if member.isfile() and member.name.startswith(prefix):
                        out = staging / (dest + member.name[len(prefix) :] if dest.endswith("/") else dest)
                        out.parent.mkdir(parents=True, exist_ok=True)
                        out.write_bytes(tar.extractfile(member).read())
        (staging / "VERSION").write_text(KATEX_VERSION + "\n")
        if target.exists():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(staging, target)


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    """
    MkDocs event: make sure the KaTeX assets are in the docs folder before its files are collected.

    :param config: The MkDocs configuration.
    :return: The configuration, unchanged.
    """
    fetch_katex(Path(config["docs_dir"]) / "assets" / "katex")
    return config
