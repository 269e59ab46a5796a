"""The one notation: every component is split, and refused, in one place."""

import pytest

from dlx.spec.component import ComponentError, split_component


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("flatten", ("flatten", [], {})),
        ({"dropout": 0.25}, ("dropout", [0.25], {})),
        ({"reshape": [7, 7, 64]}, ("reshape", [[7, 7, 64]], {})),
        ({"dense": {"units": 64}}, ("dense", [], {"units": 64})),
        ({"flatten": None}, ("flatten", [], {})),
    ],
)
def test_split(value, expected):
    assert split_component(value) == expected


@pytest.mark.parametrize(
    ("value", "message", "path", "on_key"),
    [
        (
            {},
            "expected a loss: a name, or a mapping with exactly one key (the name). Received an "
            "empty mapping",
            (),
            False,
        ),
        (5, "Received: 5 (a number)", (), False),
        (True, "Received: True (true or false)", (), False),
        ([1, 2], "Received: [1, 2] (a list)", (), False),
        (None, "Received: None (null)", (), False),
        ("  ", "expected a loss name, not an empty string", (), False),
        ({"a": 1, "b": 2}, "Received 2 keys: 'a', 'b'", (), False),
        ({3: {}}, "expected a loss name as the key. Received: 3", (3,), True),
        (
            {"mse": {"x": 1, 2: 3}},
            "expected an argument name. Received: 2 (a number)",
            ("mse", 2),
            True,
        ),
    ],
)
def test_refusals_say_what_and_where(value, message, path, on_key):
    with pytest.raises(ComponentError) as caught:
        split_component(value, "loss")
    assert message in str(caught.value)
    assert (caught.value.path, caught.value.on_key) == (path, on_key)


def test_a_huge_value_is_cut():
    with pytest.raises(ComponentError) as caught:
        split_component(list(range(100_000)), "layer")
    assert len(str(caught.value)) < 300
