"""The JSON Schema kept in specs/ is the one `dlx schema` prints, and specs point at it."""

import json

from typer.testing import CliRunner

from dlx.cli import app
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
