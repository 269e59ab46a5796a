"""`dlx.deploy.scoring_app`: the nesting of a JSON body, counted without recursion (the limits
themselves are asked of a real server in test_serve.py)."""

import pytest

from dlx.deploy.scoring_app import json_depth


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        (b"", 0),
        (b"3.5", 0),
        (b'{"inputs": [[1, 2], [3, 4]]}', 3),
        (b'{"inputs": {"numbers": [[1]], "flags": [[[0]]]}}', 5),
        (b'{"inputs": ["[[[{{{", "}}]]"]}', 2),  # brackets in strings do not count
        (b'{"a": "quote \\" [[[ and backslash \\\\", "b": [[]]}', 3),  # nor past escapes
        (b"[" * 100_000 + b"]" * 100_000, 100_000),
    ],
)
def test_depth_counts_arrays_and_objects_outside_strings(text, depth):
    assert json_depth(text) == depth


def test_depth_is_counted_across_the_chunks_of_a_large_body():
    """Its deepest point comes two chunks in, at the level the chunks before it ended on."""
    body = b"[[" + b"[], " * 2**22 + b"[[[]]]" + b"]]"
    assert json_depth(body) == 5
