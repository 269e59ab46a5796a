"""Every spec shipped in specs/ and examples/ validates and builds (SPEC.md section 8)."""

from __future__ import annotations

from pathlib import Path

import keras
import pytest

from dlx import api

ROOT = Path(__file__).resolve().parents[1]
SPEC_FILES = sorted([*ROOT.glob("specs/*.yaml"), *ROOT.glob("examples/*.yaml")])


def test_specs_are_found() -> None:
    assert {"specs", "examples"} <= {path.parent.name for path in SPEC_FILES}


@pytest.mark.parametrize(
    "path", SPEC_FILES, ids=[f"{path.parent.name}/{path.name}" for path in SPEC_FILES]
)
def test_spec_validates(path: Path) -> None:
    validated = api.validate(path)

    assert validated.built.model.count_params() > 0
    keras.utils.clear_session()
