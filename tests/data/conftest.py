from pathlib import Path

import pytest

from dlx.data import SourceContext


@pytest.fixture
def context(tmp_path: Path) -> SourceContext:
    """A source context whose spec directory is the test's own temporary directory."""
    return SourceContext(base_dir=tmp_path, seed=0)
