"""The code's shape as issue 25 set it, kept: a new module or a long function fails here, naming itself.

A reader finds a concern by its package, reads any module in one sitting and any function on one
screen; the core (everything but the CLI, the REPL and the terminal previews) never reaches for the
CLI's process environment (mmchat/env.py), so a Python user's program is not the CLI's.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "mmchat"
MAX_FLAT_MODULES, MAX_MODULE_LINES, MAX_FUNCTION_LINES = 17, 400, 60
#: the terminal's side: they may use mmchat.env (streams, ttys, NO_COLOR)
TERMINAL_PACKAGES = {"cli", "chat", "preview"}


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _name(path: Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


def test_the_top_level_holds_at_most_seventeen_modules():
    flat = [p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py" and p.name != "__main__.py"]
    assert len(flat) <= MAX_FLAT_MODULES, sorted(flat)


def test_no_module_is_longer_than_four_hundred_lines():
    long = {
        _name(p): n for p in _modules() if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}


def test_no_function_is_longer_than_sixty_lines():
    long = {}
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long[f"{_name(path)}:{node.lineno} {node.name}"] = lines
    assert long == {}


def test_only_the_terminals_side_imports_the_clis_environment():
    found = []
    for path in _modules():
        name = _name(path)
        if name.split("/")[0] in TERMINAL_PACKAGES or name == "env.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                names = {a.name for a in node.names}
                if (node.module or "").endswith("env") and node.level or (node.module in ("", None) and "env" in names):
                    found.append(f"{name}:{node.lineno}")
                elif node.module == "mmchat.env" or (node.module == "mmchat" and "env" in names):
                    found.append(f"{name}:{node.lineno}")
    assert found == []


def test_the_checks_see_what_they_measure():
    """Each limit is near what the code has: a check that measured nothing would pass forever."""
    sizes = [len(p.read_text(encoding="utf-8").splitlines()) for p in _modules()]
    assert max(sizes) > MAX_MODULE_LINES * 0.9
    assert len(list(PACKAGE.glob("*.py"))) > 10
