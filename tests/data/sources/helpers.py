"""What the tests of every family of sources share: files they write, and reading a source."""

import textwrap
from pathlib import Path

import numpy as np
import pytest

from dlx.data import SourceContext, SourceError, call_source
from dlx.data.sources import SourceData
from dlx.data.stream import FileSplit


def write_csv(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def source_error(component, context: SourceContext) -> SourceError:
    with pytest.raises(SourceError) as caught:
        call_source(component, context)
    return caught.value


def decoded(data: SourceData) -> tuple[np.ndarray, np.ndarray]:
    """Every example of a streamed source, as the model takes it, in the source's order."""
    split = FileSplit(data.stream, np.arange(len(data.stream.files)))
    x, y = split.finished(split.batches(split.num_examples)).get_single_element()
    if isinstance(y, dict):  # several outputs
        return x.numpy(), {name: target.numpy() for name, target in y.items()}
    return x.numpy(), y.numpy()


def write_module(directory: Path, name: str, code: str) -> None:
    (directory / f"{name}.py").write_text(textwrap.dedent(code))
