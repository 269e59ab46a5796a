"""Batches of in-memory examples for Keras without `tf.data`: what `fit` reads on the JAX
backend (`keras.utils.PyDataset`), so that training from arrays never imports TensorFlow.

Each epoch's order is a permutation drawn from `(seed, epoch)` alone, as `Splits.epochs` draws
it for `tf.data`: a run resumed at epoch `e` reads exactly the batches an uninterrupted run
reads there. (NumPy draws another permutation than TensorFlow's stateless shuffle: the same
spec sees its examples in another order on each backend.)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np


@dataclass(frozen=True)
class DType:
    name: str


@dataclass(frozen=True)
class ArraySpec:
    """A batch's array: its shape and dtype (`tf.TensorSpec`'s `shape` and `dtype.name`)."""

    shape: tuple[int | None, ...]
    dtype_name: str

    @property
    def dtype(self) -> DType:
        return DType(self.dtype_name)


def _dtype_name(array: np.ndarray) -> str:
    """`string` for text (object or unicode arrays), else NumPy's name (`float32`)."""
    return "string" if array.dtype.kind in "OUS" else array.dtype.name


@dataclass(frozen=True)
class Share:
    """How each batch is split across the devices that train on it in step.

    JAX shards a batch evenly over its devices: each batch is cut to a multiple of `devices`
    (an epoch's last batch loses at most `devices - 1` examples), and in a job of several
    processes each reads only its own contiguous part (`processes`, `index`); the parts make
    up the global batch in process order.
    """

    devices: int
    processes: int = 1
    index: int = 0

    def part(self, chosen: np.ndarray) -> np.ndarray:
        kept = len(chosen) - len(chosen) % self.devices
        each = kept // self.processes
        return chosen[self.index * each : (self.index + 1) * each]


class ArrayBatches(keras.utils.PyDataset):
    """Epochs `first` to `end - 1` of `(x, y)` arrays, batch after batch.

    Args:
        arrays: `(x, y)`: `x` an array or a mapping of named arrays, `y` alike or `None`.
        batch_size: examples a batch; each epoch ends with its own partial batch.
        seed: the seed each epoch's order is drawn from; `None`: the arrays' order.
        first: the first epoch; `end`: the epoch after the last.
        transform: applied to each batch (`(x, y)` unpacked as arguments, or `x` alone), as
            `tf.data.Dataset.map` would; with `numbered`, the batch's number since epoch 0
            comes first (what `tf.data.Dataset.counter` zipped in gives).
        share: how the batches are split across devices and processes (`Share`); `None`:
            one device.
    """

    def __init__(
        self,
        arrays: tuple[Any, Any],
        batch_size: int,
        *,
        seed: int | None = None,
        first: int = 0,
        end: int = 1,
        transform: Callable[..., Any] | None = None,
        numbered: bool = False,
        share: Share | None = None,
    ) -> None:
        super().__init__()
        self.share = share
        self.numbered = numbered
        self.arrays = arrays
        self.batch_size = batch_size
        self.seed = seed
        self.first = first
        self.end = max(end, first + 1)
        self.transform = transform
        x = arrays[0]
        self.count = len(next(iter(x.values())) if isinstance(x, dict) else x)
        whole, rest = divmod(self.count, batch_size)
        if share is not None:
            rest -= rest % share.devices
        self.steps = max(1, whole + (1 if rest else 0))
        self._orders: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return self.steps * (self.end - self.first)

    def __getitem__(self, index: int) -> Any:
        epoch = self.first + index // self.steps
        step = index % self.steps
        chosen = self._order(epoch)[step * self.batch_size : (step + 1) * self.batch_size]
        if self.share is not None:
            chosen = self.share.part(chosen)
        x, y = self.arrays
        inputs = keras.tree.map_structure(lambda array: array[chosen], x)
        batch = inputs if y is None else (inputs, keras.tree.map_structure(lambda a: a[chosen], y))
        if self.transform is None:
            return batch
        parts = batch if isinstance(batch, tuple) else (batch,)
        if self.numbered:
            return self.transform(epoch * self.steps + step, *parts)
        return self.transform(*parts)

    def map(self, transform: Callable[..., Any], *, numbered: bool = False) -> ArrayBatches:
        """The same batches with `transform` applied after this one's own; with `numbered`,
        it is called with the batch's number since epoch 0 first."""
        own, own_numbered = self.transform, self.numbered

        def both(number: int, *batch: Any) -> Any:
            if own is not None:
                done = own(number, *batch) if own_numbered else own(*batch)
                batch = done if isinstance(done, tuple) else (done,)
            return transform(number, *batch) if numbered else transform(*batch)

        return self._like(transform=both, numbered=True)

    def epochs(self, first: int, end: int) -> ArrayBatches:
        """Epochs `first` to `end - 1` of the same examples."""
        return self._like(first=first, end=end)

    def shared(self, share: Share | None) -> ArrayBatches:
        """The same batches, split as `share` says (`None`: read whole, by one device)."""
        return self._like(share=share)

    def _like(self, **changes: Any) -> ArrayBatches:
        """A copy of these batches with some of their settings changed."""
        settings: dict[str, Any] = {
            "seed": self.seed,
            "first": self.first,
            "end": self.end,
            "transform": self.transform,
            "numbered": self.numbered,
            "share": self.share,
        }
        return ArrayBatches(self.arrays, self.batch_size, **{**settings, **changes})

    @property
    def element_spec(self) -> Any:
        """The shape (batch first, `None`) and dtype of each array, as `tf.data` says it."""

        def spec(array: np.ndarray) -> ArraySpec:
            return ArraySpec((None, *array.shape[1:]), _dtype_name(array))

        x, y = self.arrays
        inputs = keras.tree.map_structure(spec, x)
        return inputs if y is None else (inputs, keras.tree.map_structure(spec, y))

    def __iter__(self) -> Any:
        for index in range(len(self)):
            yield self[index]

    def _order(self, epoch: int) -> np.ndarray:
        if self.seed is None:
            return np.arange(self.count)
        if epoch not in self._orders:
            rng = np.random.default_rng([self.seed % 2**63, epoch])
            self._orders = {epoch: rng.permutation(self.count)}
        return self._orders[epoch]
