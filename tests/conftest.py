"""Shared test setup: every test runs in its own empty working directory.

dlx writes its default MLflow store (`mlflow.db`) to the working directory; running each test in
a temporary one keeps the repository clean and the tests independent.
"""

from pathlib import Path

import pytest

TESTS = Path(__file__).parent
ROOT = TESTS.parent


@pytest.fixture(autouse=True)
def _in_tmp_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
