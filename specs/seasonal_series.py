"""A seeded seasonal time series with a trend, for specs/timeseries_gru.yaml.

The spec reads it with the `python` source (`{python: {function: "seasonal_series:hourly"}}`),
which imports this module from the spec's directory: the series is made, not downloaded, so the
spec trains offline from any working directory. With `data.window`, dlx cuts it into windows
of past values, each with the value that follows as its target.
"""

from __future__ import annotations

import numpy as np

DAY = 24
"""The period of the daily season, in steps (hours)."""
WEEK = 7 * DAY
"""The period of the weekly season, in steps."""


def hourly(steps: int = 3000, noise: float = 0.3, seed: int = 0) -> tuple[np.ndarray, None]:
    """An hourly series, like a load or a temperature: trend, two seasons and noise.

    `value[t] = 10 + 0.0005 t + 2 sin(2 pi t / 24) + 0.8 sin(2 pi t / 168) + ar[t]`, where
    `ar` is an AR(1) noise (coefficient 0.6, innovations of standard deviation `noise`): a
    forecaster can learn the seasons and part of the noise, which the naive forecast (the last
    value) cannot.

    Args:
        steps: how many hours.
        noise: the standard deviation of the noise's innovations.
        seed: the seed of the noise.

    Returns:
        `(values, None)`: a float32 array shaped `(steps,)`, one feature per step, and no
        separate targets: a windowed source without targets forecasts its own values.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(steps)
    innovations = rng.normal(0.0, noise, steps)
    ar = np.zeros(steps)
    for i in range(1, steps):
        ar[i] = 0.6 * ar[i - 1] + innovations[i]
    values = (
        10.0
        + 0.0005 * t
        + 2.0 * np.sin(2 * np.pi * t / DAY)
        + 0.8 * np.sin(2 * np.pi * t / WEEK)
        + ar
    )
    return values.astype(np.float32), None
