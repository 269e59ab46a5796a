"""The JSON Schema kept in specs/ is the one `dlx schema` prints, and specs point at it."""

import json

import pytest
from typer.testing import CliRunner

from dlx.cli import app
from dlx.errors import SpecError
from dlx.spec import load_spec
from tests.conftest import ROOT

SCHEMA_FILE = ROOT / "specs" / "dlx.schema.json"


def test_schema_file_is_current():
    result = CliRunner().invoke(app, ["schema"])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == json.loads(SCHEMA_FILE.read_text()), (
        "specs/dlx.schema.json is stale: run `dlx schema > specs/dlx.schema.json`"
    )


def test_specs_carry_the_schema_modeline():
    for spec in sorted((ROOT / "specs").glob("*.yaml")):
        first = spec.read_text().splitlines()[0]
        assert first == "# yaml-language-server: $schema=dlx.schema.json", spec.name


def test_schema_is_strict():
    schema = json.loads(SCHEMA_FILE.read_text())
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"version", "model"}
    assert schema["$defs"]["Train"]["additionalProperties"] is False


QUOTED = """\
version: 1
seed: "42"
data:
  source: {sklearn: iris}
  validation_split: "0.2"
model:
  layers: [input: {shape: [4]}, dense: 3]
train:
  epochs: "20"
runtime:
  deterministic: "yes"
"""


def test_quoted_numbers_and_booleans_are_refused_as_the_schema_does(tmp_path):
    # The JSON Schema says `"type": "integer"`: editors refuse "20", so dlx does too.
    schema = json.loads(SCHEMA_FILE.read_text())
    assert schema["$defs"]["Train"]["properties"]["epochs"]["type"] == "integer"
    spec = tmp_path / "spec.yaml"
    spec.write_text(QUOTED)
    with pytest.raises(SpecError) as caught:
        load_spec(spec)
    hint = "(a string: remove the quotes)"
    assert [p.render().splitlines()[0] for p in caught.value.problems] == [
        f"spec.yaml:2:7: error: seed: expected an integer. Received: '42' {hint}",
        f"spec.yaml:5:21: error: data.validation_split: expected a number. Received: '0.2' {hint}",
        f"spec.yaml:9:11: error: train.epochs: expected an integer. Received: '20' {hint}",
        f"spec.yaml:11:18: error: runtime.deterministic: expected true or false. Received: 'yes' "
        f"{hint}",
    ]


def test_whole_numbers_are_integers_as_the_schema_counts_them(tmp_path):
    # JSON Schema's `"type": "integer"` takes 3.0 (editors do): dlx takes it as 3, not 2.5.
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "version: 1.0\nseed: 7.0\nmodel: {layers: [dense: 1]}\n"
        "train: {epochs: 3.0, batch_size: 1.6e+1}\n"
    )
    loaded = load_spec(spec).spec
    assert (loaded.seed, loaded.train.epochs, loaded.train.batch_size) == (7, 3, 16)
    assert {type(loaded.seed), type(loaded.train.epochs), type(loaded.train.batch_size)} == {int}
    with pytest.raises(SpecError, match=r"train.epochs: expected an integer. Received: 2.5"):
        load_spec(spec, ["train.epochs=2.5"])


def test_set_values_are_yaml_so_numbers_stay_numbers(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(QUOTED)
    overrides = [
        "seed=42",
        "data.validation_split=0.2",
        "train.epochs=5",
        "runtime.deterministic=yes",
        "train.optimizer={adam: {learning_rate: 1}}",
    ]
    loaded = load_spec(spec, overrides)
    assert (loaded.spec.seed, loaded.spec.train.epochs) == (42, 5)
    assert loaded.spec.runtime.deterministic is True
    with pytest.raises(SpecError, match=r"--set:1:14: error: train.epochs: expected an integer"):
        load_spec(spec, [*overrides, "train.epochs='5'"])


def test_every_spec_of_the_repository_reads_strictly():
    specs = [
        *(ROOT / "specs").glob("*.yaml"),
        *(ROOT / "examples").glob("*.yaml"),
        *(ROOT / "tests" / "spec_examples").rglob("*.yaml"),
    ]
    assert len(specs) > 15
    for spec in specs:
        load_spec(spec)
