"""scikit-learn's digits, some classes only, for the transfer-learning specs.

`digits_backbone.yaml` trains on digits 0-4; `digits_transfer.yaml` reuses that network for
digits 5-9 with a few examples per class. Used as a `python` data source:
`{python: {function: "digits_subsets:digits", classes: [5, 6, 7, 8, 9], per_class: 30}}`.
"""

import numpy as np
from sklearn.datasets import load_digits


def digits(classes, per_class=None, seed=0):
    """Images (n, 8, 8, 1) in [0, 1] of the given classes, labelled 0..len(classes)-1.

    Args:
        classes: the digits to keep, in label order.
        per_class: keep only this many examples of each (a seeded choice); default: all.
        seed: the seed of that choice.
    """
    x, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(seed)
    keep = []
    for digit in classes:
        (found,) = np.nonzero(y == digit)
        keep.extend(rng.permutation(found)[:per_class] if per_class else found)
    keep = np.sort(np.asarray(keep))
    images = (x[keep] / 16.0).reshape(-1, 8, 8, 1).astype(np.float32)
    labels = np.searchsorted(np.asarray(classes), y[keep]).astype(np.int64)
    return images, labels
