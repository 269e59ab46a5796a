"""Every example of SPEC.md sections 1, 2 and 4.1-4.3 validates and builds (spec_examples/)."""

from pathlib import Path

import pytest

from dlx import api

EXAMPLES = Path(__file__).parent / "spec_examples"


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_spec_example_builds(name):
    validated = api.validate(EXAMPLES / name)
    assert validated.built.model.count_params() > 0


def test_section_4_2_graph_has_the_skip_connection():
    summary = api.inspect(EXAMPLES / "section4_2_graph.yaml")
    by_name = {layer["name"]: layer for layer in summary["layers"]}
    assert by_name["skip"]["class_name"] == "Add"
    assert by_name["y"]["output_shape"] == [None, 1]
    assert summary["params"] == 32 * 64 + 64 + 64 * 64 + 64 + 64 + 1


def test_section_4_3_blocks_repeat_and_defaults():
    summary = api.inspect(EXAMPLES / "section4_3_blocks.yaml")
    convs = [layer for layer in summary["layers"] if layer["class_name"] == "Conv2D"]
    assert [c["output_shape"][-1] for c in convs] == [32, 64, 64]
    # 3x3 kernels (the block's default), biases; then batch norm's 4 weights per channel.
    assert [c["params"] for c in convs] == [3 * 9 * 32 + 32, 32 * 9 * 64 + 64, 64 * 9 * 64 + 64]


def test_section_4_3_block_names_are_unique_per_use():
    summary = api.inspect(EXAMPLES / "section4_3_nested_blocks.yaml")
    names = [layer["name"] for layer in summary["layers"]]
    assert len(names) == len(set(names))
    assert "stage_a_first_conv" in names and "stage_a_second_bn_16" in names
    assert "stage_2_first_conv" in names and "stage_3_first_conv" in names
