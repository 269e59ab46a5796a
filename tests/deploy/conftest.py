"""What the export and serve tests share: one store, in a folder beside the specs and the data
module of the runs in it, and the runs both need, each trained once (one epoch) per test
process. The tests of these runs are the classes `TestSharedRuns` of both modules, which run in
one process (tests/conftest.py), where each run is trained once.
"""

import textwrap
from pathlib import Path

import pytest

from dlx import api
from tests.conftest import ROOT

ONE_EPOCH = ["train.epochs=1"]

SOURCES = '''
import numpy as np


def two_inputs(count=300):
    """Two named inputs, one class."""
    rng = np.random.default_rng(0)
    numbers = rng.normal(5.0, 3.0, (count, 8)).astype("float32")
    flags = rng.integers(0, 2, (count, 4)).astype("float32")
    label = (numbers[:, 0] > 5).astype("int64") + (flags[:, 0] > 0).astype("int64")
    return {"numbers": numbers, "flags": flags}, label


def reviews(count=120):
    rng = np.random.default_rng(0)
    words = np.array(["good", "bad", "fine", "awful", "great", "poor"])
    picks = rng.integers(0, 6, (count, 5))
    texts = np.array([" ".join(words[p]) for p in picks], dtype=object)
    return texts, (picks % 2 == 0).sum(axis=1).clip(0, 1).astype("int64")
'''

TWO_INPUTS = """
version: 1
name: two-inputs
seed: 1
data:
  source: {python: {function: "export_sources:two_inputs"}}
  test_split: 0.2
model:
  layers:
    - input: {shape: [8], name: numbers}
    - input: {shape: [4], name: flags}
    - concatenate: {inputs: [numbers, flags]}
    - dense: {units: 16, activation: relu}
    - dense: {units: 3, activation: softmax, name: label}
train:
  epochs: 1
  loss: sparse_categorical_crossentropy
"""

REVIEWS = """
version: 1
name: reviews
seed: 1
data:
  source: {python: {function: "export_sources:reviews"}}
  test_split: 0.2
model:
  layers:
    - input: {shape: [], dtype: string}
    - text_vectorization: {max_tokens: 20, output_sequence_length: 5}
    - embedding: {input_dim: 20, output_dim: 4}
    - flatten
    - dense: {units: 2, activation: softmax}
train:
  epochs: 1
  loss: sparse_categorical_crossentropy
"""


def train(spec: Path, uri: str, overrides=()) -> str:
    """One epoch of `spec` (and `overrides`) recorded in `uri`: the run's id."""
    return api.train(spec, [*ONE_EPOCH, *overrides], tracking_uri=uri).run_id


@pytest.fixture(scope="session")
def folder(tmp_path_factory) -> Path:
    """The folder of the shared store, with the specs of two_inputs and reviews and their
    data module (`export_sources`)."""
    here = tmp_path_factory.mktemp("deploy")
    (here / "export_sources.py").write_text(SOURCES)
    (here / "two_inputs.yaml").write_text(textwrap.dedent(TWO_INPUTS))
    (here / "reviews.yaml").write_text(textwrap.dedent(REVIEWS))
    return here


@pytest.fixture(scope="session")
def uri(folder) -> str:
    return f"sqlite:///{folder / 'mlflow.db'}"


@pytest.fixture(scope="session")
def cnn(uri) -> str:
    """A run of specs/digits_cnn.yaml."""
    return train(ROOT / "specs" / "digits_cnn.yaml", uri)


@pytest.fixture(scope="session")
def two_inputs(folder, uri) -> str:
    """A run of TWO_INPUTS: two named inputs."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        return train(folder / "two_inputs.yaml", uri)


@pytest.fixture(scope="session")
def reviews(folder, uri) -> str:
    """A run of REVIEWS: a string input."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        return train(folder / "reviews.yaml", uri)
