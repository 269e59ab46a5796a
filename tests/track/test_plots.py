import io

import numpy as np
import pytest

from dlx.track import confusion_matrix_figure, learning_curves_figure


def _png(figure):
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def test_learning_curves_have_a_panel_per_metric_with_training_and_validation():
    history = {
        "epoch": [2, 3, 4],
        "loss": [1.0, 0.5, 0.25],
        "val_loss": [1.1, 0.6, 0.4],
        "accuracy": [0.5, 0.7, 0.8],
        "learning_rate": [1e-3, 1e-3, 1e-4],
    }
    figure = learning_curves_figure(history)
    panels = {axes.get_title(): axes for axes in figure.axes}
    assert list(panels) == ["loss", "accuracy", "learning_rate"]
    labels = [line.get_label() for line in panels["loss"].get_lines()]
    assert labels == ["training", "validation"]
    assert list(panels["loss"].get_lines()[1].get_xdata()) == [3, 4, 5]  # as training shows them
    assert len(panels["accuracy"].get_lines()) == 1
    assert _png(figure).startswith(b"\x89PNG")


def test_learning_curves_number_epochs_from_one_without_an_epoch_column():
    figure = learning_curves_figure({"val_loss": [3.0, 2.0]})
    assert [axes.get_title() for axes in figure.axes] == ["loss"]
    assert list(figure.axes[0].get_lines()[0].get_xdata()) == [1, 2]


def test_learning_curves_need_a_metric():
    with pytest.raises(ValueError, match="no metric to plot"):
        learning_curves_figure({"epoch": []})


def test_the_confusion_matrix_counts_true_rows_against_predicted_columns():
    y_true = [0, 0, 1, 2, 2, 2]
    scores = np.eye(3)[[0, 1, 1, 2, 2, 0]]  # one row of scores per sample
    figure = confusion_matrix_figure(y_true, scores, ["cat", "dog", "bird"])
    axes = figure.axes[0]
    matrix = axes.get_images()[0].get_array()
    np.testing.assert_array_equal(matrix, [[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    assert [tick.get_text() for tick in axes.get_yticklabels()] == ["cat", "dog", "bird"]
    assert [text.get_text() for text in axes.texts] == ["1", "1", "0", "0", "1", "0", "1", "0", "2"]
    assert _png(figure).startswith(b"\x89PNG")


def test_the_confusion_matrix_names_classes_by_index_by_default():
    figure = confusion_matrix_figure(np.array([3, 0]), np.array([0, 0]))
    assert [t.get_text() for t in figure.axes[0].get_xticklabels()] == ["0", "1", "2", "3"]


def test_the_confusion_matrix_reads_a_single_score_as_the_probability_of_class_1():
    scores = np.array([[0.1], [0.7], [0.9], [0.8]])
    figure = confusion_matrix_figure([0, 0, 1, 1], scores, ["no", "yes"])
    matrix = figure.axes[0].get_images()[0].get_array()
    np.testing.assert_array_equal(matrix, [[1, 1], [0, 2]])
