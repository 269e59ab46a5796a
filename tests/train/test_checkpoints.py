"""What a checkpoint keeps of the spec's callbacks (`callback_states`), and how it is put back."""

import json

import keras
import numpy as np
import pytest

from dlx.train.checkpoints import callback_states, restore_callback_states


def callbacks():
    made = [
        keras.callbacks.EarlyStopping(patience=3, min_delta=0.5, restore_best_weights=True),
        keras.callbacks.ReduceLROnPlateau(patience=2, cooldown=1),
        keras.callbacks.TerminateOnNaN(),
    ]
    for callback in made:
        callback.on_train_begin()
    return made


def test_early_stopping_and_a_plateau_come_back_as_they_were_and_others_keep_nothing():
    stopping, plateau, _ = saved = callbacks()
    stopping.wait, stopping.best, stopping.best_epoch = 2, np.float32(0.25), 4
    stopping.best_weights = [np.ones((2, 2), dtype="float32"), np.arange(3)]
    stopping.min_delta = -0.5  # as Keras leaves it once a lower value is better: not state
    plateau.wait, plateau.cooldown_counter = 1, 1
    plateau.best = keras.ops.convert_to_tensor(float("inf"))  # a backend's scalar
    states, arrays = callback_states(saved)
    assert states[2] == {}

    back = callbacks()
    restore_callback_states(back, json.loads(json.dumps(states)), arrays)
    stopping, plateau, _ = back
    assert (stopping.wait, stopping.best, stopping.best_epoch) == (2, 0.25, 4)
    assert stopping.min_delta == 0.5  # the spec's, as built
    assert [w.tolist() for w in stopping.best_weights] == [[[1.0, 1.0], [1.0, 1.0]], [0, 1, 2]]
    assert (plateau.wait, plateau.best, plateau.cooldown_counter) == (1, float("inf"), 1)


def test_the_state_of_another_number_of_callbacks_is_refused():
    states, arrays = callback_states(callbacks())
    with pytest.raises(ValueError, match="3 callbacks' state, the spec has 2"):
        restore_callback_states(callbacks()[:2], states, arrays)
