"""The GAN's training step on JAX: a pure function of the model's state, as Keras's guide to
customizing `fit` with JAX writes one (`stateless_call`, `jax.value_and_grad`,
`stateless_apply`).

Keras's JAX trainer hands `train_step` the model's whole state as four lists (trainable,
non-trainable, optimizer and metric variables) and takes the new state back; the step splits
them into each network's share, runs the two updates one after the other, and puts the shares
back in place. Under `keras.distribution.DataParallel` the step sees the global batch (JAX's
SPMD shards it), so the losses are averages over the global batch, as on TensorFlow.
"""

from __future__ import annotations

from typing import Any

import jax
import keras

from dlx.train.adversarial import AdversarialBase


class Optimizers:
    """The two networks' optimizers, seen by Keras's JAX trainer as the model's one: its
    variables are the discriminator's, then the generator's; `optimizers` is how Keras's
    learning-rate callbacks (`ReduceLROnPlateau`) reach each of them."""

    built = True

    def __init__(self, discriminator: Any, generator: Any) -> None:
        self.optimizers = [discriminator, generator]

    @property
    def variables(self) -> list[Any]:
        return [variable for optimizer in self.optimizers for variable in optimizer.variables]


def _positions(variables: list[Any], among: list[Any]) -> list[int]:
    """Where each of `variables` is in `among` (by identity: variables compare elementwise)."""
    index = {id(variable): i for i, variable in enumerate(among)}
    return [index[id(variable)] for variable in variables]


class Adversarial(AdversarialBase):
    """Both networks in one `keras.Model`, trained in turns by `fit` on JAX.

    The latent batches are drawn from `(seed, the discriminator's step count)`: the same draws
    on every rerun, and after `--resume` (the step count is part of the saved optimizer state).
    """

    def compile(
        self, generator_optimizer: Any, discriminator_optimizer: Any, jit_compile: Any = "auto"
    ) -> None:
        super().compile(generator_optimizer, discriminator_optimizer, jit_compile)
        discriminator, generator = self.discriminator_optimizer, self.generator_optimizer
        self.optimizer = Optimizers(discriminator, generator)
        self._split = len(discriminator.variables)
        self._step = next(
            i for i, v in enumerate(discriminator.variables) if v is discriminator.iterations
        )
        trainable, non_trainable = self.trainable_variables, self.non_trainable_variables
        self._trainable = {
            "generator": _positions(self.generator.trainable_variables, trainable),
            "discriminator": _positions(self.discriminator.trainable_variables, trainable),
        }
        self._non_trainable = {
            "generator": _positions(self.generator.non_trainable_variables, non_trainable),
            "discriminator": _positions(self.discriminator.non_trainable_variables, non_trainable),
        }

    def train_step(self, state: Any, data: Any) -> tuple[dict[str, Any], Any]:
        trainable, non_trainable, optimizer_values, metric_values = state
        real = data[0] if isinstance(data, (tuple, list)) else data
        batch = jax.tree.leaves(real)[0].shape[0]
        d_optimizer, g_optimizer = self.discriminator_optimizer, self.generator_optimizer
        d_state, g_state = optimizer_values[: self._split], optimizer_values[self._split :]
        g_weights, d_weights = self._share(trainable, self._trainable)
        g_stats, d_stats = self._share(non_trainable, self._non_trainable)
        key = jax.random.fold_in(jax.random.key(self.seed), d_state[self._step])
        d_key, g_key = jax.random.split(key)

        def d_loss_of(d_weights: Any, d_stats: Any, fake: Any) -> Any:
            real_logits, d_stats = self._logits(d_weights, d_stats, real)
            fake_logits, d_stats = self._logits(d_weights, d_stats, fake)
            losses = self.cross_entropy(
                keras.ops.ones_like(real_logits), real_logits
            ) + self.cross_entropy(keras.ops.zeros_like(fake_logits), fake_logits)
            loss = keras.ops.mean(losses)
            return self._scaled(d_optimizer, d_state, loss), (loss, d_stats)

        fake, g_stats = self.generator.stateless_call(
            g_weights, g_stats, self._latent(d_key, batch), training=True
        )
        (_, (d_loss, d_stats)), grads = jax.value_and_grad(d_loss_of, has_aux=True)(
            d_weights, d_stats, fake
        )
        d_weights, d_state = d_optimizer.stateless_apply(d_state, grads, d_weights)

        def g_loss_of(g_weights: Any, g_stats: Any, d_stats: Any) -> Any:
            fake, g_stats = self.generator.stateless_call(
                g_weights, g_stats, self._latent(g_key, batch), training=True
            )
            fake_logits, d_stats = self._logits(d_weights, d_stats, fake)
            loss = keras.ops.mean(self.cross_entropy(keras.ops.ones_like(fake_logits), fake_logits))
            return self._scaled(g_optimizer, g_state, loss), (loss, g_stats, d_stats)

        (_, (g_loss, g_stats, d_stats)), grads = jax.value_and_grad(g_loss_of, has_aux=True)(
            g_weights, g_stats, d_stats
        )
        g_weights, g_state = g_optimizer.stateless_apply(g_state, grads, g_weights)

        logs, metric_values = self._tracked(metric_values, (d_loss, g_loss), batch)
        trainable = self._placed(trainable, self._trainable, g_weights, d_weights)
        non_trainable = self._placed(non_trainable, self._non_trainable, g_stats, d_stats)
        return logs, (trainable, non_trainable, [*d_state, *g_state], metric_values)

    def _latent(self, key: Any, batch: int) -> Any:
        return jax.random.normal(key, (batch, self.latent_dim))

    def _logits(self, weights: Any, stats: Any, samples: Any) -> tuple[Any, Any]:
        logits, stats = self.discriminator.stateless_call(weights, stats, samples, training=True)
        return keras.ops.cast(logits, "float32"), stats

    @staticmethod
    def _scaled(optimizer: Any, values: Any, loss: Any) -> Any:
        """The loss as the optimizer scales it (a `LossScaleOptimizer` reads its scale)."""
        mapping = list(zip(optimizer.variables, values, strict=True))
        with keras.StatelessScope(state_mapping=mapping):
            return optimizer.scale_loss(loss)

    @staticmethod
    def _share(values: list[Any], positions: dict[str, list[int]]) -> tuple[list[Any], list[Any]]:
        """The generator's and the discriminator's values among the model's."""
        return (
            [values[i] for i in positions["generator"]],
            [values[i] for i in positions["discriminator"]],
        )

    @staticmethod
    def _placed(
        values: list[Any], positions: dict[str, list[int]], generator: Any, discriminator: Any
    ) -> list[Any]:
        """The model's values with each network's new ones put back in place."""
        placed = list(values)
        for i, value in zip(positions["generator"], generator, strict=True):
            placed[i] = value
        for i, value in zip(positions["discriminator"], discriminator, strict=True):
            placed[i] = value
        return placed

    def _tracked(self, values: list[Any], losses: tuple[Any, Any], batch: int) -> Any:
        """The `d_loss` and `g_loss` trackers updated with this step's losses, and the logs."""
        logs, updated, start = {}, [], 0
        for metric, loss in zip(self.metrics, losses, strict=True):
            own = values[start : start + len(metric.variables)]
            start += len(own)
            own = metric.stateless_update_state(own, loss, sample_weight=batch)
            logs[metric.name] = metric.stateless_result(own)
            updated.extend(own)
        return logs, updated
