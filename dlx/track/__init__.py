"""Recording runs in MLflow: the store, the run, its params, tags, metrics, figures and model.

Nothing here imports MLflow, TensorFlow, Keras or Matplotlib when `dlx.track` is imported; each
is imported by the first function that needs it, so that commands which do not train stay fast.
`MlflowMetricsCallback` subclasses a Keras class and is therefore loaded on first access.
"""

from typing import TYPE_CHECKING

from dlx.track.params import flatten_params
from dlx.track.plots import confusion_matrix_figure, learning_curves_figure
from dlx.track.run import TrackedRun
from dlx.track.store import ensure_experiment, resolve_tracking_uri, ui_hint
from dlx.track.tags import resolved_spec_text, standard_tags

if TYPE_CHECKING:
    from dlx.track.callback import MlflowMetricsCallback


def __getattr__(name: str):
    if name == "MlflowMetricsCallback":
        from dlx.track.callback import MlflowMetricsCallback

        return MlflowMetricsCallback
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "MlflowMetricsCallback",
    "TrackedRun",
    "confusion_matrix_figure",
    "ensure_experiment",
    "flatten_params",
    "learning_curves_figure",
    "resolve_tracking_uri",
    "resolved_spec_text",
    "standard_tags",
    "ui_hint",
]
