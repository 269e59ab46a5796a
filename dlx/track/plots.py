"""Figures a run logs: learning curves and a confusion matrix.

Figures are drawn on Matplotlib's Agg canvas directly, without `pyplot`: no window opens, no
global backend is switched, and nothing is kept alive in pyplot's list of open figures, so the
functions are safe in scripts, on servers and in notebooks alike.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_PANELS_PER_ROW = 3
_MAX_ANNOTATED_CLASSES = 30


def learning_curves_figure(history: Mapping[str, Sequence[float]]) -> Figure:
    """One panel per metric, training and validation (`val_` + name) overlaid, by epoch.

    Args:
        history: metric names to one value per epoch, like Keras's `History.history` or
            `MlflowMetricsCallback.columns()`. An `epoch` entry, when present, gives the
            x-axis; otherwise epochs are numbered from 0.

    Returns:
        The figure; log it with `TrackedRun.log_figure(figure, "learning_curves.png")`.

    Raises:
        ValueError: `history` holds no metric.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = [name for name in history if name != "epoch"]
    panels = list(dict.fromkeys(name.removeprefix("val_") for name in names))
    if not panels:
        raise ValueError(f"no metric to plot. Received: history with keys {list(history)}")
    columns = min(len(panels), _PANELS_PER_ROW)
    rows = math.ceil(len(panels) / columns)
    figure = Figure(figsize=(4.5 * columns, 3.2 * rows), layout="constrained")
    FigureCanvasAgg(figure)
    for index, panel in enumerate(panels):
        axes = figure.add_subplot(rows, columns, index + 1)
        for name, label in ((panel, "training"), (f"val_{panel}", "validation")):
            if name in history:
                values = list(history[name])
                epochs = list(history.get("epoch", range(len(values))))
                axes.plot(epochs, values, marker="o", markersize=3, label=label)
        axes.set_title(panel)
        axes.set_xlabel("epoch")
        axes.grid(alpha=0.3)
        axes.legend()
    return figure


def confusion_matrix_figure(
    y_true: Any, y_pred: Any, class_names: Sequence[str] | None = None
) -> Figure:
    """A confusion matrix: true classes down, predicted classes across, with counts.

    Args:
        y_true: class indexes, or one-hot rows.
        y_pred: class indexes, or one row of scores per sample, as `model.predict` gives
            them: of several scores the largest wins; a single score is the probability of
            class 1, so over 0.5 is class 1.
        class_names: a name per class; default: the class indexes.

    Returns:
        The figure; log it with `TrackedRun.log_figure(figure, "confusion_matrix.png")`.
    """
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    true = _labels(np.asarray(y_true))
    pred = _labels(np.asarray(y_pred))
    count = len(class_names) if class_names is not None else int(max(true.max(), pred.max())) + 1
    names = list(class_names) if class_names is not None else [str(i) for i in range(count)]
    matrix = np.bincount(true * count + pred, minlength=count * count).reshape(count, count)

    size = min(max(4.0, 0.45 * count + 2.0), 14.0)
    figure = Figure(figsize=(size, size), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    image = axes.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=axes, shrink=0.8)
    axes.set_xticks(range(count), names, rotation=45 if count > 5 else 0, ha="right")
    axes.set_yticks(range(count), names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    if count <= _MAX_ANNOTATED_CLASSES:
        threshold = matrix.max() / 2
        for (row, column), value in np.ndenumerate(matrix):
            color = "white" if value > threshold else "black"
            axes.text(column, row, str(value), ha="center", va="center", color=color)
    return figure


def _labels(values: Any) -> Any:
    """Class indexes from indexes, one-hot rows, rows of scores, or one probability per row."""
    if values.ndim > 1:
        values = values[..., 0] > 0.5 if values.shape[-1] == 1 else values.argmax(axis=-1)
    return values.astype(int)
