"""
Check the built distributions before they are installed: the wheel holds the package (with its `py.typed` marker)
and its metadata only, no tests or docs; its metadata has the version of `art_stn/__init__.py` (the one place the
version is written), the license, project URLs, classifiers and extras. Usage: `python .ci/check_dist.py DIST_DIR`.
"""

from __future__ import annotations

import re
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(dist: Path) -> int:
    """
    :param dist: The folder `python -m build` wrote into.
    :return: The exit status (0 when every check passes).
    """
    version = re.search(r'^__version__ = "([^"]+)"', (ROOT / "art_stn" / "__init__.py").read_text(), re.M).group(1)
    wheels, sdists = list(dist.glob("art_stn-*.whl")), list(dist.glob("art_stn-*.tar.gz"))
    problems = [] if len(wheels) == len(sdists) == 1 else [f"expected one wheel and one sdist in {dist}"]
    with zipfile.ZipFile(wheels[0]) as whl:
        names = whl.namelist()
        meta_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(whl.read(meta_name).decode())
    info = f"art_stn-{version}.dist-info/"
    stray = [n for n in names if not (n.startswith("art_stn/") or n.startswith(info))]
    extras = set(meta.get_all("Provides-Extra") or [])
    checks = {
        f"files besides the package and its metadata: {stray}": not stray,
        "no art_stn/py.typed": "art_stn/py.typed" in names,
        "no LICENSE": f"{info}licenses/LICENSE" in names,
        f"wheel version {meta['Version']} is not __version__ {version}": meta["Version"] == version,
        "no License-Expression: MIT": meta["License-Expression"] == "MIT",
        "no Project-URL": bool(meta.get_all("Project-URL")),
        "fewer than 5 classifiers": len(meta.get_all("Classifier") or []) >= 5,
        f"extras {sorted(extras)} lack attacks, vision, docs or dev": {"attacks", "vision", "docs", "dev"} <= extras,
    }
    problems += [message for message, ok in checks.items() if not ok]
    modules = sorted(n for n in names if n.startswith("art_stn/") and n.endswith(".py"))
    print(f"{wheels[0].name}: {len(names)} files, {len(modules)} modules, version {version}, extras {sorted(extras)}")
    for problem in problems:
        print(f"PROBLEM: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
