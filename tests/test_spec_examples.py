"""The examples in spec_examples/ (one per part of the language) build their exact models."""

import functools
from pathlib import Path

import pytest

from dlx import api

EXAMPLES = Path(__file__).parent / "spec_examples"

# (trainable, non-trainable) parameters of each example's model.
PARAMS = {
    # conv 3x3x1x32+32; dense (4*4*32)x10+10 after pooling 2.
    "stack.yaml": (320 + 5130, 0),
    "file.yaml": (320 + 5130, 0),  # the same stack, with a parameterless plugin layer
    # dense 32x64+64 (h1), 64x64+64 (h2, reading h1), add (none), dense 64x1+1.
    "graph.yaml": (32 * 64 + 64 + 64 * 64 + 64 + 64 + 1, 0),
    # dense 784x3136+3136; reshape to 7x7x64, pooling 2 leaves 3x3x64; dense 576x10+10.
    "notation.yaml": (784 * 3136 + 3136 + 576 * 10 + 10, 0),
    # dense 8x64+64; bidirectional LSTM 2 x 4x(64x64 + 64x64 + 64).
    "object_arguments.yaml": (8 * 64 + 64 + 2 * 4 * (64 * 64 + 64 * 64 + 64), 0),
    # residual: conv 3x3x8x16+16, batch norm 2x16 (+2x16 statistics), shortcut 1x1x8x16+16;
    # residual: conv 3x3x16x16+16; parallel: 1x1x16x8+8, 3x3x16x8+8; dense 16x10+10.
    "residual_parallel.yaml": (1168 + 32 + 144 + 2320 + 136 + 1160 + 170, 32),
    # conv 3x3x3x32+32, 3x3x32x64+64, 3x3x64x64+64; batch norm: 2 trainable and 2 moving
    # statistics per channel.
    "blocks.yaml": (896 + 18_496 + 36_928 + 2 * (32 + 64 + 64), 2 * (32 + 64 + 64)),
    # three stages of two (conv 3x3x16x16+16, batch norm 2x16 (+2x16)); dense (8*8*16)x4+4.
    "nested_blocks.yaml": (3 * 2 * (2320 + 32) + 1024 * 4 + 4, 3 * 2 * 32),
}


@functools.cache
def _inspect(name):
    """`dlx inspect --format json` of an example, built once for all the tests of this file."""
    return api.inspect(EXAMPLES / name).as_dict()


def test_every_example_has_its_parameter_counts():
    assert sorted(p.name for p in EXAMPLES.glob("*.yaml")) == sorted(PARAMS)


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_spec_example_builds_its_exact_model(name):
    summary = _inspect(name)

    assert (summary["trainable_params"], summary["non_trainable_params"]) == PARAMS[name]


def test_graph_has_the_skip_connection():
    summary = _inspect("graph.yaml")
    by_name = {layer["name"]: layer for layer in summary["layers"]}
    assert by_name["skip"]["class_name"] == "Add"
    assert by_name["y"]["output_shape"] == [None, 1]
    assert summary["params"] == 32 * 64 + 64 + 64 * 64 + 64 + 64 + 1


def test_blocks_repeat_and_defaults():
    summary = _inspect("blocks.yaml")
    convs = [layer for layer in summary["layers"] if layer["class_name"] == "Conv2D"]
    assert [c["output_shape"][-1] for c in convs] == [32, 64, 64]
    # 3x3 kernels (the block's default), biases; then batch norm's 4 weights per channel.
    assert [c["params"] for c in convs] == [3 * 9 * 32 + 32, 32 * 9 * 64 + 64, 64 * 9 * 64 + 64]


def test_block_names_are_unique_per_use():
    summary = _inspect("nested_blocks.yaml")
    names = [layer["name"] for layer in summary["layers"]]
    assert len(names) == len(set(names))
    assert "stage_a_first_conv" in names and "stage_a_second_bn_16" in names
    assert "stage_2_first_conv" in names and "stage_3_first_conv" in names
