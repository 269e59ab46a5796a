"""Figures a run logs: learning curves, a confusion matrix, images and histograms.

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
_PANEL_INCHES = (4.5, 3.2)  # width, height
_MARGIN_INCHES = (0.75, 0.15, 0.35, 0.55)  # left, right, top, bottom, of each panel
_MAX_ANNOTATED_CLASSES = 30


def epoch_panels(
    titles: Sequence[str], *, legend_outside: bool = False
) -> tuple[Figure, list[Any]]:
    """A figure of one panel per title, three to a row, each with epochs (whole numbers) on
    its x axis and a light grid: what every learning-curve figure draws on.

    Args:
        titles: the panels' titles.
        legend_outside: the figure's legend goes beside the panels (`figure.legend(...,
            loc="outside right upper")`), placed by Matplotlib's constrained layout, which
            measures every text and so doubles the cost of drawing; otherwise the margins
            are fixed in inches, with room for a title, tick labels and an axis label.

    Returns:
        The figure, on Agg's canvas, and its panels' axes in the order of `titles`.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    columns = min(len(titles), _PANELS_PER_ROW) or 1
    rows = max(1, math.ceil(len(titles) / columns))
    width, height = _PANEL_INCHES
    figure = Figure(
        figsize=(width * columns, height * rows),
        layout="constrained" if legend_outside else None,
    )
    FigureCanvasAgg(figure)
    if not legend_outside:
        left, right, top, bottom = _MARGIN_INCHES
        panel_width, panel_height = width - left - right, height - top - bottom
        figure.subplots_adjust(
            left=left / (width * columns),
            right=1 - right / (width * columns),
            top=1 - top / (height * rows),
            bottom=bottom / (height * rows),
            wspace=(left + right) / panel_width,
            hspace=(top + bottom) / panel_height,
        )
    panels = []
    for index, title in enumerate(titles):
        axes = figure.add_subplot(rows, columns, index + 1)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_title(title)
        axes.set_xlabel("epoch")
        axes.grid(alpha=0.3)
        panels.append(axes)
    return figure, panels


def learning_curves_figure(history: Mapping[str, Sequence[float]]) -> Figure:
    """One panel per metric, training and validation (`val_` + name) overlaid, by epoch
    counted from 1, as training shows epochs (`epoch 3/3`).

    Args:
        history: metric names to one value per epoch, like Keras's `History.history` or
            `MlflowMetricsCallback.columns()`. An `epoch` entry, when present, holds each
            value's epoch as Keras counts them, from 0 (a fine-tuning stage continues the
            count), and is drawn from 1; otherwise the values are epochs 1, 2, ...

    Returns:
        The figure; log it with `TrackedRun.log_figure(figure, "learning_curves.png")`.

    Raises:
        ValueError: `history` holds no metric.
    """
    names = [name for name in history if name != "epoch"]
    panels = list(dict.fromkeys(name.removeprefix("val_") for name in names))
    if not panels:
        raise ValueError(f"no metric to plot. Received: history with keys {list(history)}")
    figure, axes_of = epoch_panels(panels)
    for panel, axes in zip(panels, axes_of, strict=True):
        for name, label in ((panel, "training"), (f"val_{panel}", "validation")):
            if name in history:
                values = list(history[name])
                epochs = [epoch + 1 for epoch in history.get("epoch", range(len(values)))]
                axes.plot(epochs, values, marker="o", markersize=3, label=label)
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
    rotation = 45 if count > 5 else 0
    # Margins from the longest name (about 0.08 inch a character): measuring the texts, as
    # a layout engine does, would double the cost of drawing the figure.
    name_inches = 0.08 * max(len(name) for name in names) + 0.2
    left = name_inches + 0.5
    bottom = (name_inches * math.sin(math.radians(rotation)) if rotation else 0.35) + 0.55
    width, height = size + left - 1.0, size + bottom - 1.0
    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    figure.subplots_adjust(
        left=left / width, right=1 - 0.3 / width, top=1 - 0.3 / height, bottom=bottom / height
    )
    axes = figure.add_subplot()
    image = axes.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=axes, shrink=0.8)
    axes.set_xticks(range(count), names, rotation=rotation, ha="right" if rotation else "center")
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


def is_image_shape(shape: Sequence[int | None]) -> bool:
    """Whether examples of this shape (without the batch axis) can be drawn as images.

    `(height, width)` is a grey image, `(height, width, channels)` one with 1, 3 or 4 channels.
    """
    dims = tuple(shape)
    if len(dims) == 3 and dims[-1] in (1, 3, 4):
        dims = dims[:2]
    return len(dims) == 2 and all(d is not None and d > 1 for d in dims)


def image_rows_figure(
    rows: Mapping[str, Any], value_range: tuple[float, float] = (0.0, 1.0)
) -> Figure:
    """Rows of images, one labelled row per entry, the same example in each column.

    Args:
        rows: a label (`"input"`, `"reconstruction"`) to images, shaped `(n, height, width)`
            or `(n, height, width, channels)`; every row holds the same number of images.
        value_range: the values shown as black and as white, the same for every image, so
            that rows compare.

    Returns:
        The figure; log it with `TrackedRun.log_figure(figure, "reconstructions.png")`.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    labels = list(rows)
    count = len(rows[labels[0]])
    figure = Figure(figsize=(1.1 * count + 1.0, 1.2 * len(labels)), layout="constrained")
    FigureCanvasAgg(figure)
    grid = figure.subplots(len(labels), count, squeeze=False)
    for r, label in enumerate(labels):
        for c in range(count):
            axes = grid[r][c]
            _show_image(axes, rows[label][c], value_range)
            if c == 0:
                axes.set_ylabel(label, rotation=0, ha="right", va="center")
    return figure


def image_grid_figure(
    images: Any, value_range: tuple[float, float] = (0.0, 1.0), title: str | None = None
) -> Figure:
    """Images in a square-ish grid, e.g. a GAN's samples from a fixed latent batch.

    Args:
        images: shaped `(n, height, width)` or `(n, height, width, channels)`.
        value_range: the values shown as black and as white; fixed, so that grids drawn at
            different epochs compare.
        title: a title above the grid (e.g. `epoch 10`).

    Returns:
        The figure; log it with `TrackedRun.log_figure(figure, "samples/epoch_010.png")`.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    count = len(images)
    columns = math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    figure = Figure(figsize=(0.9 * columns, 0.9 * rows + (0.3 if title else 0.0)))
    FigureCanvasAgg(figure)
    figure.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=0.9 if title else 0.98)
    grid = figure.subplots(
        rows, columns, squeeze=False, gridspec_kw={"wspace": 0.05, "hspace": 0.05}
    )
    for index, axes in enumerate(grid.ravel()):
        if index < count:
            _show_image(axes, images[index], value_range)
        else:
            axes.set_axis_off()
    if title:
        figure.suptitle(title)
    return figure


def histogram_figure(
    values: Any, *, xlabel: str, title: str, lines: Mapping[str, float] | None = None
) -> Figure:
    """The distribution of some values (e.g. per-example reconstruction errors).

    Args:
        values: one number per example.
        xlabel: what the values are.
        title: the figure's title (e.g. which split they come from).
        lines: labelled values drawn as vertical lines (e.g. `{"p95": 0.02}`).

    Returns:
        The figure; log it with `TrackedRun.log_figure(figure, "reconstruction_errors.png")`.
    """
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.0, 3.6), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.hist(np.asarray(values, dtype=np.float64).ravel(), bins="auto", color="C0")
    for index, (label, value) in enumerate((lines or {}).items()):
        color = f"C{index + 3}"  # C0 is the bars' colour; C3 is red
        axes.axvline(value, color=color, linestyle="--", label=f"{label} = {value:.4g}")
    if lines:
        axes.legend()
    axes.set_xlabel(xlabel)
    axes.set_ylabel("examples")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    return figure


def _show_image(axes: Any, image: Any, value_range: tuple[float, float]) -> None:
    import numpy as np

    low, high = value_range
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        axes.imshow(image, cmap="gray", vmin=low, vmax=high, interpolation="nearest")
    else:  # colour: imshow reads floats in [0, 1]
        scaled = np.clip((image - low) / max(high - low, 1e-12), 0.0, 1.0)
        axes.imshow(scaled, interpolation="nearest")
    axes.set_xticks([])
    axes.set_yticks([])


def param_importance_figure(importances: Mapping[str, float], metric: str) -> Figure:
    """A sweep's parameter importances (Optuna's fANOVA), as horizontal bars, largest on top.

    Args:
        importances: each swept path's importance; they sum to 1.
        metric: the metric the sweep optimized, for the title.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ordered = sorted(importances.items(), key=lambda item: item[1])
    figure = Figure(figsize=(7, 1.2 + 0.45 * len(ordered)), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.barh([name for name, _ in ordered], [value for _, value in ordered])
    axes.set_xlabel(f"importance for {metric}")
    axes.set_title("parameter importance")
    axes.grid(axis="x", alpha=0.3)
    return figure


def parallel_coordinates_figure(
    trials: Sequence[tuple[Mapping[str, Any], float]], params: Sequence[str], metric: str
) -> Figure:
    """A sweep's trials as lines across one vertical axis per swept param and one for the
    metric, coloured by the metric: which values the good trials share.

    Each axis spans its values' range (numbers on a log scale when they span over two
    decades; other values are placed in order of first appearance, and labelled).

    Args:
        trials: each finished trial's params and metric value.
        params: the swept paths, in the order of the axes.
        metric: the metric's name, the last axis.
    """
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    axes_names = [*params, metric]
    columns = [[t[0].get(p) for t in trials] for p in params] + [[t[1] for t in trials]]
    positions, labels = zip(*(_axis_positions(column) for column in columns), strict=True)
    figure = Figure(figsize=(2.0 + 1.8 * len(axes_names), 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    values = [t[1] for t in trials]
    norm = Normalize(min(values), max(values) if max(values) > min(values) else min(values) + 1)
    for index, value in enumerate(values):
        ys = [column[index] for column in positions]
        axes.plot(range(len(axes_names)), ys, color=colormaps["viridis"](norm(value)), alpha=0.8)
    for x, ticks in enumerate(labels):
        axes.axvline(x, color="grey", linewidth=0.8)
        for y, text in ticks:
            axes.annotate(text, (x, y), xytext=(3, 0), textcoords="offset points", fontsize=7)
    axes.set_xticks(range(len(axes_names)), axes_names, rotation=15, fontsize=8)
    axes.set_yticks([])
    axes.set_ylim(-0.05, 1.05)
    axes.set_title(f"trials by {metric}")
    return figure


def _axis_positions(column: Sequence[Any]) -> tuple[list[float], list[tuple[float, str]]]:
    """Values placed on a [0, 1] axis, and the labels of its ends (or of each category)."""
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in column):
        numbers = [float(v) for v in column]
        low, high = min(numbers), max(numbers)
        log = low > 0 and high / low > 100
        scale = (lambda v: math.log10(v)) if log else (lambda v: v)
        span = (scale(high) - scale(low)) or 1.0
        placed = [(scale(v) - scale(low)) / span for v in numbers]
        return placed, [(0.0, f"{low:.3g}"), (1.0 if high > low else 0.0, f"{high:.3g}")]
    categories = list(dict.fromkeys(str(v) for v in column))
    step = 1.0 / max(1, len(categories) - 1)
    where = {c: i * step for i, c in enumerate(categories)}
    return [where[str(v)] for v in column], [(where[c], c) for c in categories]
