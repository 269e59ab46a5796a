"""Golden error cases: each broken spec in golden/ beside the exact message dlx prints."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from dlx.cli import app

GOLDEN = Path(__file__).parent / "golden"
CASES = sorted(p.stem for p in GOLDEN.glob("*.yaml"))


@pytest.mark.parametrize("case", CASES)
def test_error_message_is_exact(case, monkeypatch):
    monkeypatch.chdir(GOLDEN)
    result = CliRunner().invoke(app, ["validate", f"{case}.yaml"])
    expected = (GOLDEN / f"{case}.expected").read_text()
    assert result.exit_code == 2, result.output
    assert result.stderr == expected
    assert "Traceback" not in result.output


def test_every_case_has_an_expected_message():
    assert CASES
    assert sorted(p.stem for p in GOLDEN.glob("*.expected")) == CASES
