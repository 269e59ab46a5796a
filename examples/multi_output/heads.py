"""The data of `digits_two_heads.yaml`: scikit-learn's 1,797 digits (bundled: no download),
each with two targets, its class and how much ink it holds."""

import numpy as np
from sklearn.datasets import load_digits


def load():
    """`(x, y)`: images of shape (8, 8, 1) in 0..1, and the targets by output name: `digit`
    (the class id, 0-9) and `ink` (the share of the image's pixels that are lit, 0..1)."""
    digits = load_digits()
    images = (digits.images / 16.0).astype("float32")[..., None]
    ink = (images > 0.25).mean(axis=(1, 2)).astype("float32")  # shape (n, 1)
    return images, {"digit": digits.target.astype("int64"), "ink": ink}
