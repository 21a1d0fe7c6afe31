"""What the program says speaks to its user: no internal words in anything it can print,
a --version, every --help agreeing with docs/cli.md, the guides' links resolving."""
from __future__ import annotations

import argparse
import ast
import re
from pathlib import Path

import pytest

import graphcnn as gc
from graphcnn.cli import build_parser, main

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "graphcnn"
INTERNAL = re.compile(r"\bissues?\b", re.I)


def strings_that_can_be_printed(source: str) -> list[tuple[int, str]]:
    """Every string literal of a module (f-string parts included) except docstrings:
    messages, help texts, printed lines."""
    tree = ast.parse(source)
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and id(node) not in docstrings]


def test_no_string_in_graphcnn_says_issue():
    found = [f"{path.relative_to(ROOT)}:{line}: {text[:60]!r}"
             for path in sorted(PACKAGE.rglob("*.py"))
             for line, text in strings_that_can_be_printed(path.read_text())
             if INTERNAL.search(text)]
    assert not found, "\n".join(found)


def test_the_check_finds_a_printed_issue():
    code = 'print(f"Targets (issue {n}): met")\ndef f():\n    """an issue here is a docstring"""\n'
    assert [t for _, t in strings_that_can_be_printed(code) if INTERNAL.search(t)] == \
        ["Targets (issue "]


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"graphcnn {gc.__version__}"


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def documented_options() -> dict[str, set[str]]:
    """Per command, the options and arguments docs/cli.md's table lists."""
    text = (ROOT / "docs" / "cli.md").read_text()
    out: dict[str, set[str]] = {}
    for section in re.split(r"^## graphcnn ", text, flags=re.M)[1:]:
        name = section.split()[0]
        names = set()
        for cell in re.findall(r"^\| `([^`]+)` \|", section, re.M):
            for part in cell.split(", "):
                names.add(part.split()[0])
        out[name] = names
    return out


def parser_options(parser: argparse.ArgumentParser) -> set[str]:
    names = set()
    for action in parser._actions:
        if action.dest in ("help", "debug"):   # every command has them: the page says so
            continue
        names |= set(action.option_strings) or {action.metavar or action.dest.upper()}
    return names


def test_every_help_agrees_with_the_cli_page():
    documented = documented_options()
    commands = subcommands()
    assert set(documented) == set(commands)
    for name, parser in commands.items():
        assert documented[name] == parser_options(parser), name


def test_opt_level_choices_are_the_pipelines():
    from graphcnn.passes import PIPELINES
    for name in ("compile", "inspect", "bench"):
        action = next(a for a in subcommands()[name]._actions if a.dest == "opt_level")
        assert tuple(action.choices) == tuple(sorted(PIPELINES)), name


def test_the_dump_pass_names_on_the_cli_page_are_the_pipelines():
    from graphcnn.passes.pipeline import pass_names
    text = (ROOT / "docs" / "cli.md").read_text()
    listed = re.search(r"the pass names\s+are (.*?) \(an unknown", text, re.S).group(1)
    assert sorted(re.findall(r"`(\w+)`", listed)) == sorted(pass_names())


def test_inspect_help_names_onnx_files(capsys):
    with pytest.raises(SystemExit):
        main(["inspect", "--help"])
    assert ".onnx" in capsys.readouterr().out


def test_the_links_of_readme_and_guides_resolve():
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text()):
            if "://" in target:
                continue
            assert (path.parent / target).exists(), f"{path.name}: broken link {target}"


def test_unknown_dump_pass_is_a_one_line_cli_error(capsys, monkeypatch):
    monkeypatch.setenv("GRAPHCNN_DUMP_AFTER", "fuse_operator")
    assert main(["compile", "lenet5", "--backend", "reference"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "unknown pass name(s) fuse_operator" in err and "fuse_operators" in err
