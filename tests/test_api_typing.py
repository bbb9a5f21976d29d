"""The public API as a type checker sees it: real classes and functions behind the lazy names, not `Any`."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

import mmchat

ROOT = Path(__file__).resolve().parents[1]

SNIPPET = """
import mmchat
from mmchat import ChatCompletionRequest, InputError, Runner, image_part

def use(runner: Runner, request: ChatCompletionRequest, error: InputError, policy: mmchat.MediaPolicy) -> None:
    reveal_type(runner)
    reveal_type(request)
    reveal_type(error)
    reveal_type(policy)
    reveal_type(image_part)
    reveal_type(runner.chat)
    mmchat.Runnr
"""


@pytest.mark.model  # a process: mypy run in this one keeps ~900k objects and its gc settings, slowing every later test
def test_mypy_reveals_the_classes_behind_the_lazy_names(tmp_path):
    """A script author's editor and mypy know what `from mmchat import Runner` is (the package ships py.typed)."""
    (tmp_path / "script.py").write_text(SNIPPET)
    checked = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--follow-imports=silent",
            "--cache-dir",
            str(tmp_path / "cache"),
            str(tmp_path / "script.py"),
        ],
        cwd=ROOT,  # mmchat from this checkout, as an installed copy would be found
        capture_output=True,
        text=True,
    )
    out, err = checked.stdout, checked.stderr
    revealed = re.findall(r'Revealed type is "(.*)"', out)
    assert revealed[:4] == [
        "mmchat.runner.Runner",
        "mmchat.request.ChatCompletionRequest",
        "mmchat.errors.InputError",
        "mmchat.inputs.policy.MediaPolicy",
    ], out + err
    assert revealed[4].startswith("def (url: "), out  # a function with its signature
    assert "-> mmchat.results.ChatCompletion" in revealed[5], out
    assert 'Module has no attribute "Runnr"' in out, out  # a misspelt name is an error, not Any


def _type_checking_imports() -> dict[str, str]:
    """name -> module of the `from .module import Name as Name` lines under `if TYPE_CHECKING:`."""
    tree = ast.parse((ROOT / "mmchat" / "__init__.py").read_text())
    block = next(n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING")
    seen: dict[str, str] = {}
    for node in block.body:
        assert isinstance(node, ast.ImportFrom) and node.level == 1, ast.unparse(node)
        for alias in node.names:
            assert alias.asname == alias.name, f"{ast.unparse(node)}: re-export it as itself ('X as X')"
            seen[alias.name] = node.module or ""
    return seen


def test_the_names_type_checkers_read_are_the_export_table():
    """The TYPE_CHECKING imports repeat `_EXPORTS` for type checkers; a name in one and not the other is named."""
    imports = _type_checking_imports()
    assert sorted(set(mmchat._EXPORTS) - set(imports)) == [], "in _EXPORTS, not imported under TYPE_CHECKING"
    assert sorted(set(imports) - set(mmchat._EXPORTS)) == [], "imported under TYPE_CHECKING, not in _EXPORTS"
    assert {n: m for n, m in imports.items() if mmchat._EXPORTS[n] != m} == {}, "imported from another module"
