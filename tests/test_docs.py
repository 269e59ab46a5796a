"""Every YAML example of docs/spec.md validates, by dlx and by the JSON Schema that editors
check specs with; the ones marked `<!-- train -->` train.

The convention, for whoever writes docs/spec.md:

- a ```yaml block is a complete spec, validated as written;
- a block right after the line `<!-- fragment -->` holds some top-level sections of a spec
  (`model:`, `train:`, ...); each replaces that section of `BASE` below before validating;
- a complete spec right after the line `<!-- train -->` is also trained for one epoch, so it
  needs data that is there offline (`sklearn`, `synthetic`).

Specs are written to a temporary folder beside links to every file of specs/ and a copy of
the `my_project` plugin package, so relative paths in the examples read as from specs/.
"""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path

import pytest
import yaml

from dlx import api
from dlx.spec import read_document
from tests.spec.schema_verdict import schema_refusals

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "spec.md"
PLUGIN = Path(__file__).parent / "spec_examples" / "my_project"
BLOCK = re.compile(r"(?:^<!-- (?P<mark>\w+) -->\n)?^```yaml\n(?P<text>.*?)^```$", re.M | re.S)
MARKS = {None, "fragment", "train"}

BASE = {
    "version": 1,
    "data": {"source": {"synthetic": {"samples": 64, "x_shape": [8], "classes": 3}}},
    "model": {
        "layers": [{"input": {"shape": [8]}}, {"dense": {"units": 3, "activation": "softmax"}}]
    },
}


def _examples() -> list[tuple[str, str | None, str]]:
    text = DOCS.read_text(encoding="utf-8")
    return [
        (f"line{text.count(chr(10), 0, m.start('text')) + 1}", m["mark"], m["text"])
        for m in BLOCK.finditer(text)
    ]


EXAMPLES = _examples()


def _spec_file(folder: Path, mark: str | None, text: str) -> Path:
    for file in (ROOT / "specs").iterdir():
        (folder / file.name).symlink_to(file)
    shutil.copytree(PLUGIN, folder / PLUGIN.name)
    if mark == "fragment":
        text = yaml.safe_dump({**BASE, **yaml.safe_load(text)}, sort_keys=False)
    path = folder / "example.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_examples_are_found_and_marked_known_ways() -> None:
    assert len(EXAMPLES) >= 30
    assert {mark for _, mark, _ in EXAMPLES} <= MARKS
    assert sum(mark == "train" for _, mark, _ in EXAMPLES) >= 5


@pytest.mark.parametrize(
    ("where", "mark", "text"),
    # Slow: a keras.applications backbone takes seconds to build; the examples that train are
    # validated by training them too.
    [
        pytest.param(*e, marks=pytest.mark.slow) if "application:" in e[2] or e[1] == "train" else e
        for e in EXAMPLES
    ],
    ids=[e[0] for e in EXAMPLES],
)
def test_example_is_real_and_validates(tmp_path: Path, where: str, mark: str | None, text: str):
    assert "..." not in text, f"{where}: a placeholder; write a real example"
    document = yaml.safe_load(text)
    if mark == "fragment":
        assert isinstance(document, dict) and "version" not in document, where
    else:
        assert document["version"] == 1, where

    # The data an example names (a tfds set, a user's npz or image folder) is not here: its
    # sources are checked by tests/data; the examples marked `train` read theirs for real.
    path = _spec_file(tmp_path, mark, text)
    validated = api.validate(path, check_data=mark == "train")
    # What an editor says of it: the JSON Schema takes it too.
    assert schema_refusals(read_document(path).data) == [], where

    model = document.get("model", BASE["model"])
    kind = model.get("kind", "supervised")
    assert validated.loaded.spec.model.kind == kind
    assert len(validated.built.networks) == (2 if kind == "gan" else 1)


TRAINED = [example for example in EXAMPLES if example[1] == "train"]


@pytest.mark.slow
@pytest.mark.parametrize(("where", "mark", "text"), TRAINED, ids=[e[0] for e in TRAINED])
def test_example_trains(tmp_path: Path, where: str, mark: str, text: str):
    path = _spec_file(tmp_path, mark, text)

    result = api.train(
        path,
        ["train.epochs=1", "tracking.log_model=false"],
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
    )

    loss = "d_loss" if "kind: gan" in text else "loss"
    assert math.isfinite(result.metrics[loss]), (where, result.metrics)
