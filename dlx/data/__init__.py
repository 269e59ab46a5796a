"""Data sources -> tf.data pipelines (docs/spec.md section 3).

`call_source` reads the data one source component names; `make_splits` reads a spec's whole
`data` section into batched train, validation and test datasets; `check_sources` checks a
`data` section without reading its data. Importing this package does not import TensorFlow.
"""

from dlx.data.pipeline import check_sources, make_splits
from dlx.data.sources import (
    SOURCES,
    Features,
    SourceContext,
    SourceData,
    SourceError,
    call_source,
    check_source,
    register_source,
)
from dlx.data.splits import Arrays, Splits

__all__ = [
    "SOURCES",
    "Arrays",
    "Features",
    "SourceContext",
    "SourceData",
    "SourceError",
    "Splits",
    "call_source",
    "check_source",
    "check_sources",
    "make_splits",
    "register_source",
]
