"""`dlx.spec.json_schema`: what the JSON Schema says of a component from its function, for
forms the registries of dlx do not use today (a source that needs no argument, keyword-only
arguments, a `Literal`), checked by `jsonschema` as editors check it."""

from __future__ import annotations

from typing import Any, Literal

import jsonschema
import pytest

from dlx.spec import ComponentArguments, json_schema


def make_noise(context: Any, size: int = 3, *, mode: Literal["a", "b"] = "a") -> None:
    """Noise made to measure.

    Args:
        context: the caller's.
        size: how much noise,
            in bytes.
        mode: which noise.
    """


def read_table(context: Any, path: str, **options: Any) -> None:
    """A table.

    Args:
        context: the caller's.
        path: the table's file.
        **options: the reader's own.
    """


SOURCES = {
    "make_noise": ComponentArguments.of(make_noise, skip=1),
    "table": ComponentArguments.of(read_table, skip=1),
}
VALIDATOR = jsonschema.Draft202012Validator(
    json_schema(SOURCES, {"median": ["warmup_epochs"]}),
)
SPEC = {"version": 1, "model": {"layers": [{"dense": 1}]}}


def _source_is_valid(source: Any) -> bool:
    return VALIDATOR.is_valid({**SPEC, "data": {"source": source}})


def test_arguments_are_described_by_the_docstring():
    arguments = SOURCES["make_noise"]
    assert [p.name for p in arguments.parameters] == ["size", "mode"]
    assert arguments.summary == "Noise made to measure."
    assert arguments.descriptions["size"] == "how much noise, in bytes."
    assert SOURCES["table"].descriptions["options"] == "the reader's own."


@pytest.mark.parametrize(
    "source",
    [
        "make_noise",  # no argument is required: the name alone
        "Make-Noise",  # as dlx finds a source: any case, `_` or `-`
        {"make_noise": None},
        {"make_noise": 5},  # the first argument
        {"MAKENOISE": {"size": 5, "mode": "b"}},
        {"table": "a.csv"},
        {"table": {"path": "a.csv", "delimiter": ";"}},  # the reader's own arguments
    ],
)
def test_what_a_source_takes(source: Any):
    assert _source_is_valid(source)


@pytest.mark.parametrize(
    "source",
    [
        "table",  # `path` is required
        {"table": None},
        {"table": {"delimiter": ";"}},
        {"make_noise": {"mode": "c"}},  # a Literal is an enumeration
        {"make_noise": {"size": 5, "seed": 1}},  # closed: no `**` parameter
        {"make_noise": "5"},
        {"make_nois": 5},
        "make_nois",
        {"make_noise": 1, "table": "a.csv"},
    ],
)
def test_what_a_source_refuses(source: Any):
    assert not _source_is_valid(source)


@pytest.mark.parametrize(
    ("prune", "valid"),
    [
        ("median", True),
        ({"median": None}, True),
        ({"median": {"warmup_epochs": 2}}, True),
        ("Median", False),  # pruners are named exactly
        ({"median": {"warmup": 2}}, False),
        ({"median": 2}, False),
        ({}, False),
    ],
)
def test_what_a_pruner_takes(prune: Any, valid: bool):
    sweep = {"metric": "loss", "params": {"train.epochs": {"int": [1, 3]}}, "prune": prune}
    assert VALIDATOR.is_valid({**SPEC, "sweep": sweep}) is valid
