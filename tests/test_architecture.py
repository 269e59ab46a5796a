"""The boundaries docs/architecture.md claims, checked on dlx's own source.

The import directions are import-linter's contracts (`lint-imports` in .ci/run); these are the
claims that are not about imports.
"""

import ast
import inspect
from pathlib import Path

import pytest

from dlx import api
from dlx.spec import MODEL_KINDS

DLX = Path(__file__).resolve().parents[1] / "dlx"
MODULES = sorted(DLX.rglob("*.py"))
MAX_LINES = 700

WRITES_TO_THE_TERMINAL = {"print", "stdout", "stderr", "exit", "_exit", "echo"}
"""`print(...)`, `sys.stdout`, `sys.stderr`, `sys.exit(...)`, `os._exit(...)`, `typer.echo`."""
MAY_WRITE = {
    # Gives back what TensorFlow's native code wrote to descriptor 2 while it was silenced,
    # when the import fails: TensorFlow's own words, not dlx's.
    DLX / "tensorflow_import.py": {"stderr"},
}
KIND_MODULES = {DLX / "train" / name for name in ("tasks.py", "autoencoder.py", "gan.py")}
"""Where dlx's own model kinds live: the only modules that may name one."""


def _relative(path: Path) -> str:
    return str(path.relative_to(DLX.parent))


def _terminal_writes(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            name = node.func.id
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id not in ("sys", "os", "typer"):
                continue
            name = node.attr
        else:
            continue
        if name in WRITES_TO_THE_TERMINAL:
            found.append((node.lineno, name))
    return found


@pytest.mark.parametrize("path", MODULES, ids=_relative)
def test_only_the_cli_prints_or_exits(path: Path):
    if DLX / "cli" in path.parents:
        return
    allowed = MAY_WRITE.get(path, set())
    writes = [(line, name) for line, name in _terminal_writes(ast.parse(path.read_text()))]

    assert [w for w in writes if w[1] not in allowed] == [], (
        f"{_relative(path)} writes to the terminal or exits: report to the caller instead "
        "(a callback, an event, a result, an exception) and let dlx/cli render it"
    )


def test_the_print_check_finds_what_it_looks_for():
    code = "import sys, os\nprint(1)\nsys.stderr.write('x')\nsys.exit(2)\nos._exit(1)\n"

    found = _terminal_writes(ast.parse(code))

    assert sorted(found) == [(2, "print"), (3, "stderr"), (4, "exit"), (5, "_exit")]


@pytest.mark.parametrize("path", MODULES, ids=_relative)
def test_no_module_is_over_700_lines(path: Path):
    assert len(path.read_text().splitlines()) <= MAX_LINES, _relative(path)


@pytest.mark.parametrize("path", MODULES, ids=_relative)
def test_model_kinds_are_named_only_in_their_own_modules(path: Path):
    """A new kind is its task module plus its spec fields: nothing else branches on a kind."""
    if path in KIND_MODULES or path == DLX / "spec" / "schema.py":
        return
    named = [
        node.lineno
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Compare)
        for operand in [node.left, *node.comparators]
        if isinstance(operand, ast.Constant) and operand.value in MODEL_KINDS
    ]

    assert named == [], f"{_relative(path)} compares with a model kind: ask its task instead"


def test_the_public_api_is_typed_without_any():
    for name in api.__all__:
        function = getattr(api, name)
        if not inspect.isfunction(function):
            continue
        signature = inspect.signature(inspect.unwrap(function))
        annotations = [p.annotation for p in signature.parameters.values()]
        annotations.append(signature.return_annotation)

        assert inspect.Parameter.empty not in annotations, name
        assert not any("Any" in str(annotation) for annotation in annotations), name
