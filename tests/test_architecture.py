"""
The package's architecture (docs/architecture.md): no import cycles, the layer contracts of `lint-imports`, and
modules of a readable size. Deterministic; no statistics.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp

import art_stn

PACKAGE = Path(art_stn.__file__).parent
ROOT = PACKAGE.parent


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """
    :param graph: The import graph of the package.
    :return: Every cycle found by a depth-first search, as the list of modules on it.
    """
    modules = sorted(m for m in graph.modules if m.startswith("art_stn."))
    imports = {
        m: sorted(i for i in graph.find_modules_directly_imported_by(m) if i.startswith("art_stn.")) for m in modules
    }
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    found: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in imports[module]:
            if state.get(target) == 1:
                found.append(path[path.index(target) :] + [target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in modules:
        if module not in state:
            visit(module, [module])
    return found


def test_no_import_cycles_between_modules() -> None:
    # Function-level imports count too; imports under `if TYPE_CHECKING:` do not (they never run).
    # The package's __init__ (which re-exports the public names of its modules) is left out of the graph walk.
    graph = grimp.build_graph("art_stn", exclude_type_checking_imports=True)
    assert len([m for m in graph.modules if m.startswith("art_stn.")]) >= 20
    assert _cycles(graph) == []


def test_layer_contracts_hold() -> None:
    result = subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports")), "--config", str(ROOT / "pyproject.toml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


def test_modules_stay_readable() -> None:
    sizes = {p.name: len(p.read_text(encoding="utf-8").splitlines()) for p in PACKAGE.glob("*.py")}
    assert max(sizes.values()) <= 480, sorted(sizes.items(), key=lambda kv: -kv[1])[:3]
