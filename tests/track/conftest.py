"""Fixtures for tracking tests: a real SQLite store and a spec in a temporary folder."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

from dlx.track import resolve_tracking_uri

SPEC = """\
version: 1
name: digits-cnn
description: A small CNN on the digits bundled with scikit-learn.
seed: 42
data:
  source: {sklearn: digits}
  validation_split: 0.2
model:
  layers:
    - input: {shape: [8, 8, 1]}
    - conv2d: {filters: 8, kernel_size: 3, activation: relu, padding: same}
    - max_pooling2d: 2
    - flatten
    - dense: {units: 10, activation: softmax}
train:
  epochs: 2
  optimizer: {adam: {learning_rate: 1e-5}}
  loss: sparse_categorical_crossentropy
  metrics: [accuracy]
  callbacks: []
  class_weight: {0: 1.0, 1: 3.0}
tracking:
  experiment: digits
  tags: {team: vision}
"""


@pytest.fixture(scope="session")
def migrated_store(tmp_path_factory) -> Path:
    """An empty MLflow database, created once: creating one costs over a second of migrations."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("template") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def store_uri(tmp_path, migrated_store) -> str:
    """The default store: `mlflow.db` in the working directory (the test's `tmp_path`)."""
    shutil.copy(migrated_store, tmp_path / "mlflow.db")
    return resolve_tracking_uri(None)


@pytest.fixture
def spec_file(tmp_path) -> Path:
    path = tmp_path / "specs" / "digits.yaml"
    path.parent.mkdir()
    path.write_text(textwrap.dedent(SPEC))
    return path
