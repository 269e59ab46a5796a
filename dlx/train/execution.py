"""How many training steps run in one call into TensorFlow (`train.steps_per_execution`).

Keras's `fit` runs `steps_per_execution` steps in one compiled call (a `tf.while_loop` over the
iterator) and returns to Python, and to the callbacks' batch hooks, once per call. Each call
costs about a millisecond on a CPU (the Python loop, the callbacks, the function call), which
is as much as a whole step of a small model: the small CNN of `bench/vs_keras.py` trains twice
as fast with 32 steps per call as with one.

`auto` is a rule, not a timing, so that every worker of a job and every rerun of a spec choose
the same number: enough steps that one call takes about `EXECUTION_SECONDS` by an estimate of
the step's time from the model (its training FLOPs, plus the sequential time steps of recurrent
layers), at most `MAX_STEPS`. A spec callback with a batch hook gets every batch: `auto` is then
1. Whatever is asked, the number is a divisor of the epoch's steps: a call that crossed an
epoch's end would read the next epoch's first batches into this one (Keras stops a call only
where the data ends, and dlx's training data runs on across epochs).

`runtime.jit_compile: auto` is Keras's own choice (XLA on a GPU or TPU when every layer supports
it, never on a CPU), except that a model without convolutions is compiled with XLA on a CPU
too. Measured on the workloads of `bench/vs_keras.py` (once compiled): XLA fuses each time
step's small ops of the LSTM, which trains in 0.6 of the time, and the MLP's matmuls with their
bias, activation and optimizer updates, which train in 0.75 of it; the small CNN trains 1.3
times slower (TensorFlow's own convolutions on a CPU are oneDNN's). Compiling costs seconds, so
a short training (`XLA_MIN_SECONDS` by the step estimate) is left without. XLA's calls copy the
variables in and out, so a call compiled with it should run longer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

EXECUTION_SECONDS = 0.05
"""What one call should take: long beside its overhead, short enough for a live progress bar
(about 20 updates a second) and a prompt Ctrl-C."""
TRAINING_FLOPS_PER_SECOND = 1e11
"""Float32 training FLOP/s assumed for the estimate: what the 784-1024-1024-10 MLP of
`bench/vs_keras.py` reaches on two CPU cores (half their measured matmul peak). A faster device
only makes the calls shorter than `EXECUTION_SECONDS`."""
RECURRENT_STEP_SECONDS = 2e-4
"""Time of one time step of a recurrent layer, forward and backward, on a CPU: its steps run
one after the other, so it is bound by latency, not FLOPs."""
XLA_MIN_SECONDS = 6.0
"""The shortest training, by `estimated_step_seconds` over all its steps, that `auto` compiles
with XLA on a CPU: compiling the training and validation steps of the LSTM of
`bench/vs_keras.py` took about 4 s more on two cores, and each epoch then took 0.7 of the time,
so a training whose epochs take about 13 s in all pays it back (the estimate is about 1.5 times
short of it there)."""
XLA_EXECUTION_SECONDS = 0.25
"""What one call compiled with XLA should take: each call copies the model's variables (and
the optimizer's) in and out, a few milliseconds for the LSTM of `bench/vs_keras.py`."""
MAX_STEPS = 100
"""The most steps in one call."""
_BATCH_HOOKS = ("on_train_batch_begin", "on_train_batch_end", "on_batch_begin", "on_batch_end")


@dataclass(frozen=True)
class StepsPerExecution:
    """The number of steps per call chosen for a run, and how.

    Attributes:
        steps: the number, a divisor of the epoch's steps.
        asked: what the spec asks: `auto` or a number.
        reason: why `auto` chose it, or why a number asked for was lowered; empty otherwise.
    """

    steps: int
    asked: int | str
    reason: str = ""

    def describe(self) -> str:
        """`25 (auto: about 0.8 ms a step)`: the choice, said in a line."""
        said = "auto" if self.asked == "auto" else f"asked {self.asked}"
        return f"{self.steps} ({said}{': ' + self.reason if self.reason else ''})"


def choose_steps_per_execution(
    asked: int | str,
    model: Any,
    batch_size: int,
    epoch_steps: int,
    callbacks: list[Any],
    workers: int = 1,
    replicas: int = 1,
    xla: bool = False,
) -> StepsPerExecution:
    """The steps per execution of a run.

    Args:
        asked: `train.steps_per_execution`: `auto` or a positive number.
        model: the compiled model (its layers give the estimate).
        batch_size: the global batch.
        epoch_steps: the steps of one epoch.
        callbacks: the spec's own callbacks (`train.callbacks`).
        workers: the workers of the job.
        replicas: the replicas that train in sync (devices of all the workers).
        xla: whether the training step is compiled with XLA (`choose_jit_compile`): its calls
            aim at `XLA_EXECUTION_SECONDS`.

    Returns:
        The largest divisor of `epoch_steps` not above the number asked for, or, for `auto`,
        not above the rule's number (1 when a spec callback has a batch hook); 1 with several
        workers, where dlx's patched Keras `fit` (`dlx.train.multi_worker`) is tested with one
        step per call only, and with several replicas: Keras 3's loop of several steps fails
        under `MirroredStrategy` on this stack ("You must feed a value for placeholder tensor
        ... multi_step_on_iterator").
    """
    if workers > 1:
        return StepsPerExecution(1, asked, "several workers")
    if replicas > 1:
        return StepsPerExecution(1, asked, "several replicas")
    if asked != "auto":
        steps = _divisor_at_most(epoch_steps, int(asked))
        lowered = (
            f"the largest divisor of the epoch's {epoch_steps} steps" if steps != asked else ""
        )
        return StepsPerExecution(steps, asked, lowered)
    hooked = [type(c).__name__ for c in callbacks if _has_batch_hook(c)]
    if hooked:
        return StepsPerExecution(1, asked, f"{', '.join(hooked)} reads every batch")
    seconds = estimated_step_seconds(model, batch_size)
    target = XLA_EXECUTION_SECONDS if xla else EXECUTION_SECONDS
    wanted = max(1, min(MAX_STEPS, int(target / max(seconds, 1e-9))))
    steps = _divisor_at_most(epoch_steps, wanted)
    return StepsPerExecution(steps, asked, f"a step estimated at {seconds * 1e3:.2g} ms")


@dataclass(frozen=True)
class JitCompile:
    """Whether a run's training step is compiled with XLA (`runtime.jit_compile`), and why.

    Attributes:
        enabled: XLA or not.
        asked: what the spec asks: `auto`, true or false.
        reason: why `auto` chose it; empty for a value asked for.
    """

    enabled: bool
    asked: bool | str
    reason: str = ""

    def describe(self) -> str:
        """`on (auto: no convolution on a CPU)`: the choice, said in a line."""
        said = "auto" if self.asked == "auto" else "asked"
        reason = f": {self.reason}" if self.reason else ""
        return f"{'on' if self.enabled else 'off'} ({said}{reason})"


def choose_jit_compile(
    asked: bool | str, model: Any, batch_size: int, steps: int, replicas: int = 1
) -> JitCompile:
    """Whether the compiled `model` trains with XLA.

    Args:
        asked: `runtime.jit_compile`: `auto`, true or false.
        model: the model, compiled with `jit_compile=asked`.
        batch_size: the global batch.
        steps: the training steps of the whole run (every epoch of every stage).
        replicas: the replicas that train in sync (devices of all the workers).

    Returns:
        For a value asked for, that value as Keras applied it. For `auto`, Keras's choice,
        or XLA for a model without convolutions that Keras left without it on a CPU, when
        its training is long enough to pay the compiling back (`XLA_MIN_SECONDS`), every
        layer supports XLA (not with `deterministic: true`, whose op determinism XLA does
        not promise), the model trains with Keras's own train step, on one replica.
    """
    import keras
    from keras.src.trainers.trainer import model_supports_jit

    chosen = bool(model.jit_compile)
    if asked != "auto":
        return JitCompile(chosen, asked)
    if chosen:
        return JitCompile(True, asked, "Keras's choice on this device")
    if any(_is_convolution(layer) for layer, _, _ in _weighted_layers(model)):
        return JitCompile(False, asked, "convolutions: slower with XLA on a CPU")
    if replicas > 1:
        return JitCompile(False, asked, "several replicas")
    if type(model).train_step is not keras.Model.train_step:
        return JitCompile(False, asked, "a training step of its own")
    if not model_supports_jit(model):
        return JitCompile(False, asked, "a layer or deterministic ops that XLA does not support")
    seconds = estimated_step_seconds(model, batch_size) * steps
    if seconds < XLA_MIN_SECONDS:
        return JitCompile(
            False, asked, f"a training of about {seconds:.2g} s: too short to pay compiling back"
        )
    return JitCompile(True, asked, "no convolution on a CPU")


def estimated_step_seconds(model: Any, batch_size: int) -> float:
    """A rough estimate of one training step's time on a CPU, from the model alone.

    Each layer with weights applies them at every position of its input but the last axis
    (every pixel of a convolution, every time step of a sequence) once per example: two FLOPs
    per weight and position forward, twice that backward. Embeddings only look rows up, and
    a recurrent layer adds `RECURRENT_STEP_SECONDS` per time step.
    """
    flops, seconds = 0.0, 0.0
    for layer, positions, recurrent in _weighted_layers(model):
        flops += 6.0 * layer.count_params() * positions * batch_size
        if recurrent:
            seconds += RECURRENT_STEP_SECONDS * positions
    return seconds + flops / TRAINING_FLOPS_PER_SECOND


def _weighted_layers(model: Any) -> list[tuple[Any, int, bool]]:
    """`(layer, positions, recurrent)` for each layer with weights, inside nested models too."""
    import keras

    found = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found += _weighted_layers(layer)
            continue
        if not layer.weights or isinstance(layer, keras.layers.Embedding):
            continue
        inner = getattr(layer, "layer", None) or getattr(layer, "forward_layer", None)
        recurrent = isinstance(layer, keras.layers.RNN) or isinstance(inner, keras.layers.RNN)
        found.append((layer, _positions(layer), recurrent))
    return found


def _is_convolution(layer: Any) -> bool:
    """Any kind of convolution: `conv1d`..`conv3d`, transposed, depthwise, separable, ConvLSTM."""
    inner = getattr(layer, "layer", None) or getattr(layer, "cell", None) or layer
    return any("Conv" in type(each).__name__ for each in (layer, inner))


def _positions(layer: Any) -> int:
    """How many times per example a layer applies its weights: the product of its input's
    (or output's, if larger) axes between the batch and the features; 1 when unknown."""
    positions = 1
    for attribute in ("input", "output"):
        try:
            tensors = getattr(layer, attribute)
        except (AttributeError, ValueError):  # a layer called more than once, or not at all
            continue
        for tensor in tensors if isinstance(tensors, (list, tuple)) else [tensors]:
            shape = getattr(tensor, "shape", ())
            inner = [d for d in shape[1:-1] if d is not None]
            count = 1
            for dimension in inner:
                count *= dimension
            positions = max(positions, count)
    return positions


def _has_batch_hook(callback: Any) -> bool:
    import keras

    return any(
        getattr(type(callback), hook, None) is not getattr(keras.callbacks.Callback, hook)
        for hook in _BATCH_HOOKS
    )


def _divisor_at_most(count: int, limit: int) -> int:
    """The largest divisor of `count` not above `limit` (at least 1)."""
    return max(d for d in range(1, max(1, min(count, limit)) + 1) if count % d == 0)
