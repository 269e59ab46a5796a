"""A small seeded corpus of short reviews in three classes, for specs/sequence_lstm.yaml.

The spec reads it with the `python` source (`{python: {function: "review_corpus:reviews"}}`),
which imports this module from the spec's directory: the corpus is made, not downloaded, so the
spec trains offline from any working directory.

Each review names a thing and judges it with words of its class, among words that every class
shares. A third of the judgements negate a word of the opposite class, so that word order
matters: "not great" is negative and "not boring" positive, and a bag of words cannot tell
them apart.
"""

from __future__ import annotations

import numpy as np

CLASS_NAMES = ("negative", "neutral", "positive")
"""The class of each label: 0 negative, 1 neutral, 2 positive."""

_THINGS = (
    "the film",
    "this phone",
    "the hotel",
    "our meal",
    "the service",
    "the book",
    "this album",
    "the staff",
    "the game",
    "the room",
    "this laptop",
    "the concert",
)
_POSITIVE = (
    "great",
    "excellent",
    "wonderful",
    "delightful",
    "superb",
    "brilliant",
    "lovely",
    "fantastic",
    "charming",
    "impressive",
)
_NEGATIVE = (
    "awful",
    "terrible",
    "dreadful",
    "boring",
    "disappointing",
    "poor",
    "horrible",
    "dull",
    "clumsy",
    "rude",
)
_NEUTRAL = (
    "average",
    "ordinary",
    "acceptable",
    "adequate",
    "standard",
    "okay",
    "typical",
    "modest",
    "plain",
    "unremarkable",
)
_ADVERBS = ("really", "very", "quite", "rather", "truly", "simply", "fairly", "mostly")
_ASIDES = (
    "to be honest",
    "overall",
    "for the price",
    "last week",
    "in my opinion",
    "after a while",
    "at first",
    "as expected",
    "on the whole",
    "this time",
)
_TEMPLATES = (
    "{thing} was {adverb} {judgement}",
    "{aside} {thing} felt {judgement}",
    "i found {thing} {adverb} {judgement} {aside}",
    "{thing} is {judgement} {aside}",
    "{aside} i thought {thing} was {judgement} and {adverb} {judgement2}",
)


def reviews(samples: int = 1200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Make `samples` short reviews and their int32 labels (`CLASS_NAMES`), the same every time.

    Args:
        samples: how many reviews.
        seed: the seed of the random choices.

    Returns:
        `(texts, labels)`: an object array of strings, and their classes 0, 1 or 2.
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(CLASS_NAMES), samples).astype(np.int32)
    texts = np.array([_review(rng, int(label)) for label in labels], dtype=object)
    return texts, labels


def _review(rng: np.random.Generator, label: int) -> str:
    template = str(rng.choice(_TEMPLATES))
    return template.format(
        thing=rng.choice(_THINGS),
        adverb=rng.choice(_ADVERBS),
        aside=rng.choice(_ASIDES),
        judgement=_judgement(rng, label),
        judgement2=_judgement(rng, label),
    )


def _judgement(rng: np.random.Generator, label: int) -> str:
    """A word of the class, or, one time in three, the other class's word negated."""
    negated = rng.random() < 1 / 3
    if label == 0:
        return f"not {rng.choice(_POSITIVE)}" if negated else str(rng.choice(_NEGATIVE))
    if label == 2:
        return f"not {rng.choice(_NEGATIVE)}" if negated else str(rng.choice(_POSITIVE))
    if negated:
        return f"neither {rng.choice(_POSITIVE)} nor {rng.choice(_NEGATIVE)}"
    return str(rng.choice(_NEUTRAL))
