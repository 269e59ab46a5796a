"""Importing TensorFlow without its start-up noise.

TensorFlow 2.21 writes oneDNN, CUDA-probing and absl messages straight to file descriptor 2
while it loads and while it first looks for devices; `TF_CPP_MIN_LOG_LEVEL` no longer silences
them. dlx silences them by pointing descriptor 2 at a temporary file for that moment, and shows
what was written if the import fails. Set `TF_CPP_MIN_LOG_LEVEL=0` to see everything.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator

_done = False


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Within the block, what TensorFlow's native code (and Python) writes to descriptor 2 goes
    to a temporary file, shown only when the block raises. `TF_CPP_MIN_LOG_LEVEL=0` keeps it."""
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0":
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            sys.stderr.write(sink.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def import_tensorflow_quietly() -> None:
    """Import TensorFlow and Keras and find the devices, with the start-up noise silenced."""
    global _done
    if _done:
        return
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0":
        import keras  # noqa: F401
    else:
        with native_stderr_silenced():
            import keras  # noqa: F401
            import tensorflow as tf

            tf.config.list_physical_devices()
    _done = True
