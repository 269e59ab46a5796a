"""How `prepare` starts each model afresh: Keras's session cleared, and garbage collected only
where earlier models may have left some, without walking the imports' objects each time."""

import gc
import weakref

import keras

from dlx import proc
from dlx.train import preparation


class Node:
    """An object in a reference cycle: only the garbage collector frees it."""

    def __init__(self):
        self.itself = self


def test_the_dlx_command_s_first_model_freezes_what_came_before_and_later_ones_collect(
    monkeypatch,
):
    monkeypatch.setattr(proc, "_command", True)
    monkeypatch.setattr(preparation, "_models_before", False)
    older = Node()
    kept = weakref.ref(older)
    preparation._clear_session(keras)  # the process's first model
    del older
    gc.collect()
    assert kept() is not None  # frozen: no collection looks at it again

    newer = Node()
    gone = weakref.ref(newer)
    del newer
    preparation._clear_session(keras)  # the next model collects what came after
    assert gone() is None


def test_a_program_that_imports_dlx_keeps_its_objects_within_the_collector_s_reach(monkeypatch):
    monkeypatch.setattr(proc, "_command", False)
    monkeypatch.setattr(preparation, "_models_before", False)
    older = Node()
    gone = weakref.ref(older)
    preparation._clear_session(keras)
    del older
    gc.collect()
    assert gone() is None
