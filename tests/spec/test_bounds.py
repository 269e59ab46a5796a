"""A small spec file cannot make dlx grow without bound, recurse away, or echo megabytes.

Each case runs the command line `dlx validate` as a user would (in this process, through
Typer's runner), bounded in time: exit 2, the problem at its file:line:col, no traceback.
"""

import pytest

from dlx.spec import load_spec
from dlx.spec.document import MAX_DEPTH
from tests.in_process import dlx_in_process

pytestmark = pytest.mark.timeout(60)

HEAD = "version: 1\nmodel:\n  layers:\n    - input: {shape: [4]}\n    - dense: 3\n"


def _alias_bomb() -> str:
    """9 anchors of 9 aliases each, about 0.5 KB: 9**9 values once expanded."""
    lines = ["description:", "  a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"  a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    return "\n".join(lines) + "\n"


def _validate(tmp_path, text, *overrides):
    spec = tmp_path / "spec.yaml"
    spec.write_text(text)
    command = ["validate", "spec.yaml"]
    for override in overrides:
        command += ["--set", override]
    result = dlx_in_process(*command, cwd=tmp_path)
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.returncode == 2, result.stderr[-3000:]
    return result.stderr


@pytest.mark.parametrize(
    ("text", "overrides", "expected"),
    [
        (
            HEAD + _alias_bomb(),
            (),
            "spec.yaml:12:12: error: the alias *a4 makes the spec hold more than 100,000 values",
        ),
        (
            HEAD + "x: &r [*r]\n",
            (),
            "spec.yaml:6:8: error: the alias *r is inside the value it refers to",
        ),
        (
            HEAD,
            ("description=&a [*a]",),
            "--set:1:17: error: description: the alias *a is inside the value it refers to",
        ),
        (
            HEAD + "description: " + "[" * 600 + "]" * 600 + "\n",
            (),
            f"spec.yaml:6:{13 + MAX_DEPTH}: error: lists and mappings are nested more than",
        ),
        (
            HEAD,
            ("description=" + "[" * 600 + "]" * 600,),
            f"--set:1:{13 + MAX_DEPTH}: error: description: lists and mappings are nested",
        ),
        (
            HEAD + "description:\n" + "".join(f"{'  ' * (i + 1)}k{i}:\n" for i in range(500)),
            (),
            f"spec.yaml:{6 + MAX_DEPTH}:201: error: lists and mappings are nested",
        ),
    ],
    ids=["alias-bomb", "recursive-alias", "recursive-alias-set", "deep", "deep-set", "deep-block"],
)
def test_refused_at_its_place(tmp_path, text, overrides, expected):
    assert expected in _validate(tmp_path, text, *overrides)


def test_a_huge_value_is_cut_in_the_message(tmp_path):
    huge = "9" * 5_000_000
    stderr = _validate(tmp_path, HEAD + f'seed: "{huge}"\n')
    assert len(stderr) < 2000
    assert "spec.yaml:6:7: error: seed: expected an integer. Received: '999" in stderr
    assert "… (5,000,002 characters)" in stderr
    source_line = stderr.splitlines()[1]
    assert source_line.startswith('    6 | seed: "999') and source_line.endswith("…")


def test_aliases_within_bounds_still_expand(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(HEAD + "data: {source: &s {sklearn: iris}, validation: {source: *s}}\n")
    loaded = load_spec(spec, ["plugins=[&p a, *p]"])
    assert loaded.spec.data.validation.source == {"sklearn": "iris"}
    assert loaded.spec.plugins == ["a", "a"]
