"""The README, docs/ and CONTRIBUTING.md say what the code does: what they show is checked here.

- Every `mmchat` command in a ```bash or ```console block parses with the real command line
  (its subcommand exists and each flag is one of that subcommand's), and every ```python block
  compiles.
- Each page names the tests that run what it shows (a `## Tested by` list, or on the README a
  `<!-- tested by: ... -->` comment), and each named test exists.
- The README's two set-up commands are the ones it always gave, and `.ci/run` runs the second.
- CONTRIBUTING.md's names of modules, files and functions import (`stale_names` below resolves them),
  and its benchmarks are the modules of the bench package.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import importlib
import importlib.util
import pkgutil
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer.main

import mmchat
from mmchat.cli import app

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CONTRIBUTING = ROOT / "CONTRIBUTING.md"
PAGES = [README, CONTRIBUTING, *sorted((ROOT / "docs").glob("*.md"))]
#: Pages other branches write (`mmchat serve`, KV state): linked from README and docs/index.md before
#: they land; once a page exists its links and commands are checked like the rest.
PENDING = {ROOT / "docs" / "serve.md", ROOT / "docs" / "kv-state.md"}

FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
TESTED = re.compile(r"`?(tests/[\w/]+\.py)::([\w:]+)`?")
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
INSTALL_AND_ASK = (
    'python3 -m venv .venv && .venv/bin/pip install -q . && .venv/bin/mmchat ask "What is in this picture?" '
    "--image examples/photo.jpg --pull"
)
INSTALL = "python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]'"
TEST = ".venv/bin/python -m pytest"


def blocks(page: Path, *langs: str) -> list[str]:
    return [body for lang, body in FENCE.findall(page.read_text(encoding="utf-8")) if lang in langs]


def mmchat_commands(block: str) -> list[list[str]]:
    """Each `mmchat ...` command of a shell block, as argv after `mmchat` (pipes, `&&` and comments split off)."""
    commands = []
    for line in block.splitlines():
        line = line.removeprefix("$ ").strip()
        if "mmchat" not in line or line.startswith("#"):
            continue
        words = shlex.split(line, comments=True)
        command: list[str] | None = None
        for word in [*words, "|"]:
            if word in ("|", "&&", ";", ">", "<"):
                if command is not None:
                    commands.append(command)
                command = None
            elif command is not None:
                command.append(word)
            elif word.split("/")[-1] == "mmchat":
                command = []
    return commands


def _is_group(command: Any) -> bool:
    """typer carries its own copy of click: a group is what has subcommands."""
    return hasattr(command, "list_commands")


def unknown_flags(argv: list[str]) -> list[str]:
    """The words of `mmchat ARGV` that name no subcommand or flag of the real command line."""
    command = typer.main.get_command(app)
    path = ["mmchat"]
    bad = []
    for word in argv:
        ctx = command.context_class(command, info_name=path[-1])
        if _is_group(command) and not word.startswith("-"):
            sub = command.get_command(ctx, word)
            if sub is None:
                return [f"{' '.join(path)} has no command {word!r}"]
            command, path = sub, [*path, word]
        elif word.startswith("-") and word != "-" and not word[1:2].isdigit():
            names = {name for param in command.get_params(ctx) for name in (*param.opts, *param.secondary_opts)}
            if word.split("=", 1)[0] not in names:
                bad.append(f"{' '.join(path)} {word}")
    return bad


@pytest.mark.parametrize("page", [p for p in PAGES if p.exists()], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_mmchat_command_shown_parses_with_the_real_command_line(page):
    shown = [argv for block in blocks(page, "bash", "console") for argv in mmchat_commands(block)]
    bad = [problem for argv in shown for problem in unknown_flags(argv)]
    assert bad == [], f"{page.name}: flags or commands the CLI does not have"


@pytest.mark.parametrize("page", [p for p in PAGES if p.exists()], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_python_example_compiles(page):
    for block in blocks(page, "python"):
        compile(block, str(page), "exec")


def _test_exists(path: str, name: str) -> bool:
    file = ROOT / path
    if not file.exists():
        return False
    scope: list[ast.stmt] = ast.parse(file.read_text(encoding="utf-8")).body
    for part in name.split("::"):
        found = [n for n in scope if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name == part]
        if not found:
            return False
        scope = found[0].body if isinstance(found[0], ast.ClassDef) else []
    return True


def named_tests(page: Path) -> list[tuple[str, str]]:
    text = page.read_text(encoding="utf-8")
    if "## Tested by" in text:
        return TESTED.findall(text[text.index("## Tested by") :])
    comment = re.search(r"<!-- tested by:(.*?)-->", text, re.S)
    return TESTED.findall(comment.group(1)) if comment else []


@pytest.mark.parametrize("page", [README, *sorted((ROOT / "docs").glob("*.md"))], ids=lambda p: p.name)
def test_each_page_names_existing_tests_for_what_it_shows(page):
    shows = blocks(page, "bash", "console", "python")
    named = named_tests(page)
    if shows:
        assert named, f"{page.name} shows commands or code but names no test that runs them ('## Tested by')"
    missing = [f"{path}::{name}" for path, name in named if not _test_exists(path, name)]
    assert missing == [], f"{page.name} names tests that do not exist"


def test_every_relative_link_leads_to_a_file():
    broken = []
    for page in PAGES:
        for target in LINK.findall(page.read_text(encoding="utf-8")):
            if "://" in target or target.startswith("mailto:"):
                continue
            where = (page.parent / target).resolve()
            if not where.exists() and where not in PENDING:
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert broken == []


def test_the_readme_is_a_front_page_with_its_two_set_up_commands_and_ci_runs_the_second():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200, "the README is the front page: the rest goes to docs/"
    commands = [line for block in blocks(README, "bash") for line in block.splitlines()]
    assert INSTALL_AND_ASK in commands and f"{INSTALL} && {TEST}" in commands
    assert (ROOT / "examples" / "photo.jpg").exists()
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert INSTALL in ci and TEST in ci, ".ci/run runs the README's test command"


def test_contributing_names_only_what_the_code_has():
    """Module paths, dotted names and functions named in CONTRIBUTING.md import (tests/docnames.py says how)."""
    assert stale_names(CONTRIBUTING.read_text(encoding="utf-8")) == []


def test_contributing_gives_every_benchmark_as_a_module_of_the_bench_package():
    text = CONTRIBUTING.read_text(encoding="utf-8")
    given = set(re.findall(r"python -m bench\.([a-z_]+)", text))
    assert given == bench_modules(), "CONTRIBUTING's bench table and the modules of bench/ differ"
    as_files = [s for s in code_spans(text) if (m := re.match(r"(python )?bench/(\w+)\.py", s)) and m[2] in given]
    assert as_files == [], "run them as python -m bench.NAME"


# -- CONTRIBUTING's names, resolved against the code -----------------------------------------------------------

SPAN = re.compile(r"`([^`\n]+)`")
#: what CONTRIBUTING names that is no part of mmchat: pip's build variable for llama-cpp-python
OUTSIDE = {"CMAKE_ARGS"}
FILE_ENDINGS = {"toml", "db", "json", "jsonl", "jpg", "py", "md"}


def code_spans(text: str) -> list[str]:
    """The `code` spans of Markdown prose (fenced blocks left out)."""
    return SPAN.findall(FENCE.sub("", text))


def bench_modules() -> set[str]:
    """The benchmarks: bench/'s modules but its shared helpers."""
    return {p.stem for p in (ROOT / "bench").glob("*.py") if not p.stem.startswith("_") and p.stem != "support"}


@functools.cache
def modules() -> dict[str, Any]:
    """Every module of the mmchat package, imported (`python -m mmchat`'s entry point left out)."""
    found = {"mmchat": mmchat}
    for info in pkgutil.walk_packages(mmchat.__path__, "mmchat."):
        if not info.name.endswith("__main__"):
            found[info.name] = importlib.import_module(info.name)
    return found


@functools.cache
def source_names() -> tuple[set[str], set[str]]:
    """Top-level names of tests/ modules, and the string constants of mmchat and tests (environment variables)."""
    names: set[str] = set()
    strings: set[str] = set()
    for file in [*(ROOT / "mmchat").rglob("*.py"), *(ROOT / "tests").rglob("*.py")]:
        tree = ast.parse(file.read_text(encoding="utf-8"))
        strings |= {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
        if file.is_relative_to(ROOT / "tests"):
            for node in tree.body:
                if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                    names.add(node.name)
                elif isinstance(node, (ast.Import, ast.ImportFrom)):
                    names |= {(a.asname or a.name).split(".")[0] for a in node.names}
                elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                    names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return names, strings


def _attribute(obj: Any, chain: list[str]) -> bool:
    """Whether `obj.a.b...` exists; a dataclass field without a default counts."""
    for i, attr in enumerate(chain):
        if hasattr(obj, attr):
            obj = getattr(obj, attr)
        elif dataclasses.is_dataclass(obj) and attr in {f.name for f in dataclasses.fields(obj)}:
            return i == len(chain) - 1
        else:
            return False
    return True


def resolves(dotted: str) -> bool:
    """A dotted name as CONTRIBUTING writes it: `pkg.module.attr`, `module.attr` (a module's last
    name or a path below mmchat), `Class.attr` (a name some mmchat module holds), or a library's."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        prefix = ".".join(parts[:i])
        for name, module in modules().items():
            if (name == prefix or name.endswith("." + prefix)) and _attribute(module, parts[i:]):
                return True
    holders = [vars(m)[parts[0]] for m in modules().values() if parts[0] in vars(m)]
    if any(_attribute(obj, parts[1:]) for obj in holders):
        return True
    try:
        return _attribute(importlib.import_module(parts[0]), parts[1:])
    except ImportError:
        return False


def _file(span: str) -> bool:
    if "/" not in span:
        return any(any((ROOT / folder).rglob(span)) for folder in ("mmchat", "tests"))
    for where in (ROOT / span, ROOT / "mmchat" / span):
        if where.exists():
            if where.suffix == ".py" and where.is_relative_to(ROOT / "mmchat"):
                importlib.import_module(".".join(where.relative_to(ROOT).with_suffix("").parts))
            return True
    return False


def _all_flags() -> set[str]:
    group = typer.main.get_command(app)
    seen: set[str] = set()
    todo = [group]
    while todo:
        command = todo.pop()
        ctx = command.context_class(command)
        seen |= {n for p in command.get_params(ctx) for n in (*p.opts, *p.secondary_opts)}
        if _is_group(command):
            todo += [command.get_command(ctx, n) for n in command.list_commands(ctx)]
    return seen


def stale(span: str) -> str | None:
    """What is wrong with one code span, or None when it names something that exists (or no code)."""
    text = span.strip().removeprefix("@").split("[")[0].removesuffix("()")
    if "NAME" in text or "<" in text or "*" in text:
        return None  # a pattern: cli/NAME.py, do_<name>, MMCHAT_*
    if text.startswith("--"):
        return None if text.split()[0].split("=")[0] in _all_flags() else f"no such flag: {span}"
    if text.startswith("python -m "):
        module = text.split()[2]
        return None if importlib.util.find_spec(module) else f"no module to run: {span}"
    if text.startswith("mmchat "):
        bad = unknown_flags(shlex.split(text)[1:])
        return f"{span}: {bad}" if bad else None
    if " " in text or "=" in text:
        return None
    if re.fullmatch(r"[\w./-]*(/|\.py)", text) or text == ".ci/run":
        return None if _file(text) else f"no such file: {span}"
    text = text.replace("/", ".").removesuffix(".py")
    if re.fullmatch(r"[A-Za-z_]\w*(\.\w+)+", text) and text.rsplit(".", 1)[1] not in FILE_ENDINGS:
        return None if resolves(text) else f"nothing answers to {span}"
    if re.fullmatch(r"[A-Za-z_]\w*", text) and ("_" in text.strip("_") or text != text.lower()):
        names, strings = source_names()
        known = text in OUTSIDE or text in names or text in strings or resolves(text)
        return None if known else f"nothing is named {span}"
    return None


def stale_names(text: str) -> list[str]:
    """CONTRIBUTING's names that the code no longer has: each code span, and each `file.py` `NAME` pair."""
    problems = [problem for span in code_spans(text) if (problem := stale(span))]
    for path, name in re.findall(r"`([\w/]+\.py)` `(\w+)`", FENCE.sub("", text)):
        module = ".".join(("mmchat", *Path(path).with_suffix("").parts))
        if module in modules() and not hasattr(modules()[module], name):
            problems.append(f"{path} has no {name}")
    return problems
