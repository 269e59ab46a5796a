"""Recording runs in MLflow: the store, the run, its params, tags, metrics, figures and model.

Nothing here imports MLflow, TensorFlow, Keras or Matplotlib when `dlx.track` is imported; each
is imported by the first function that needs it, so that commands which do not train stay fast.
The names below are loaded on first access (`MlflowMetricsCallback` subclasses a Keras class),
so that `dlx compare` and `dlx runs`, which import `dlx.track.read` and `dlx.track.compare`,
do not import the modules that record a run.
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dlx.track.callback import MlflowMetricsCallback
    from dlx.track.params import flatten_params
    from dlx.track.plots import confusion_matrix_figure, learning_curves_figure
    from dlx.track.run import TrackedRun
    from dlx.track.store import ensure_experiment, resolve_tracking_uri, ui_hint
    from dlx.track.tags import resolved_spec_text, standard_tags

_MODULES = {
    "MlflowMetricsCallback": "dlx.track.callback",
    "TrackedRun": "dlx.track.run",
    "confusion_matrix_figure": "dlx.track.plots",
    "ensure_experiment": "dlx.track.store",
    "flatten_params": "dlx.track.params",
    "learning_curves_figure": "dlx.track.plots",
    "resolve_tracking_uri": "dlx.track.store",
    "resolved_spec_text": "dlx.track.tags",
    "standard_tags": "dlx.track.tags",
    "ui_hint": "dlx.track.store",
}


def __getattr__(name: str):
    if name in _MODULES:
        import importlib

        return getattr(importlib.import_module(_MODULES[name]), name)
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
