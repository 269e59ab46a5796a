"""Reading YAML with positions: floats, duplicates, tags, merges and --set overrides."""

import pytest

from dlx.errors import SpecError
from dlx.spec import apply_overrides, load_spec, read_document

MINIMAL = """\
version: 1
model:
  layers:
    - input: {shape: [4]}
    - dense: {units: 3, kernel_regularizer: {l2: 1e-4}}
train:
  epochs: 2
  optimizer: {adam: {learning_rate: 2e-3}}
"""


@pytest.fixture
def spec_file(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(MINIMAL)
    return path


def test_exponent_floats_are_floats(spec_file):
    doc = read_document(spec_file)
    assert doc.data["model"]["layers"][1]["dense"]["kernel_regularizer"]["l2"] == 1e-4
    assert doc.data["train"]["optimizer"]["adam"]["learning_rate"] == 2e-3


def test_positions_are_one_based(spec_file):
    doc = read_document(spec_file)
    where = doc.locate(("train", "epochs"))
    assert (where.line, where.column) == (7, 11)
    key = doc.locate(("train", "epochs"), key=True)
    assert (key.line, key.column) == (7, 3)


def test_set_overrides_values_read_as_yaml(spec_file):
    loaded = load_spec(
        spec_file,
        ["train.epochs=5", "model.layers.1.dense.units=128", "tracking.tags={team: vision}"],
    )
    assert loaded.spec.train.epochs == 5
    assert loaded.document.data["model"]["layers"][1]["dense"]["units"] == 128
    assert loaded.spec.tracking.tags == {"team": "vision"}


def test_set_errors_point_at_the_argument(spec_file):
    with pytest.raises(SpecError) as info:
        load_spec(spec_file, ["train.epochs=ten"])
    (problem,) = info.value.problems
    assert str(problem.location) == "--set:1:14"
    assert problem.key == "train.epochs"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.epochs", "expected KEY=VALUE"),
        ("model.layers.9.dense.units=1", "no such item to set"),
        ("train.epochs.x=1", "not a mapping"),
        ("seed=[1", "invalid YAML value"),
    ],
)
def test_bad_overrides(spec_file, override, message):
    doc = read_document(spec_file)
    with pytest.raises(SpecError, match=message):
        apply_overrides(doc, [override])


def test_merge_keys_work(tmp_path):
    path = tmp_path / "merge.yaml"
    path.write_text("base: &b {units: 3}\nother:\n  <<: *b\n  activation: relu\n")
    assert read_document(path).data["other"] == {"units": 3, "activation": "relu"}


def test_all_schema_errors_are_reported_at_once(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(MINIMAL + "  batch_size: -1\nruntime:\n  strategy: gpu\nextra: 1\n")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    keys = [p.key for p in info.value.problems]
    assert keys == ["train.batch_size", "runtime.strategy", "extra"]


def test_missing_file_and_empty_file(tmp_path):
    with pytest.raises(SpecError, match="no such spec file"):
        load_spec(tmp_path / "nope.yaml")
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(SpecError, match="the spec is empty"):
        load_spec(empty)
