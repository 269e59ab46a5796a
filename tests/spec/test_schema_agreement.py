"""The JSON Schema that editors check a spec with and `dlx validate` give the same verdict.

Each case below is a small spec changed in one place: what `dlx validate` refuses there (a
fragment of its message says why), the schema refuses too, at the same place; what dlx takes,
the schema takes. The first cases are those a new user met where the schema took what dlx
refused (issue "What a new user meets"). Every spec of the repository is taken by the schema
here, and by `dlx validate` in tests/test_specs.py and the examples' own tests; every example
of docs/spec.md by both in tests/test_docs.py. The fuzz test (tests/spec/test_fuzz.py) holds
that dlx refuses whatever mutant the schema refuses: the schema is never stricter than dlx.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from dlx import api
from dlx.errors import DlxError
from dlx.spec import load_spec, read_document
from tests.conftest import ROOT
from tests.spec.schema_verdict import SCHEMA, schema_refusals

BASE: dict[str, Any] = {
    "version": 1,
    "data": {"source": {"sklearn": "iris"}, "validation_split": 0.2},
    "model": {
        "layers": [{"input": {"shape": [4]}}, {"dense": {"units": 3, "activation": "softmax"}}]
    },
    "train": {
        "batch_size": 32,
        "optimizer": {"adam": {"learning_rate": 0.01}},
        "loss": "sparse_categorical_crossentropy",
    },
}
LEARNING_RATE = "train.optimizer.adam.learning_rate"
TFRECORD = {"files": "digits-*.tfrecord", "features": {"image": {"shape": [64]}}, "label": "label"}


def _sweep(
    param: dict[str, Any] | None = None, path: str = LEARNING_RATE, **settings: Any
) -> dict[str, Any]:
    """A sweep section over one path, `param` (the learning rate, log-uniform, by default)."""
    param = {"log_uniform": [1e-4, 1e-1]} if param is None else param
    return {"metric": "val_loss", "method": "random", "params": {path: param}, **settings}


REFUSED: dict[str, tuple[dict[str, Any], str]] = {
    # The cases of the issue: the schema took each of them.
    "unknown source": ({"data.source": {"sklern": "digits"}}, "unknown data source 'sklern'"),
    "unknown tfrecord argument": (
        {"data.source": {"tfrecord": {**TFRECORD, "compresion": "GZIP"}}},
        "unknown argument 'compresion' for tfrecord",
    ),
    "unknown pruner": ({"sweep": _sweep(prune={"medain": {"warmup_epochs": 1}})}, "unknown pruner"),
    "a param of no kind": ({"sweep": _sweep({})}, "expected exactly one of"),
    "a step alone": ({"sweep": _sweep({"step": 2})}, "expected exactly one of"),
    "a param of two kinds": (
        {"sweep": _sweep({"choice": [0.01, 0.1], "int": [1, 2]})},
        "expected exactly one of",
    ),
    "log_uniform from below 0": (
        {"sweep": _sweep({"log_uniform": [-1.0, 0.01]})},
        "expected a value greater than 0",
    ),
    # More of the same kinds.
    "a source's name alone": ({"data.source": "sklearn"}, "missing argument 'name'"),
    "a number for a dataset's name": ({"data.source": {"sklearn": 5}}, "dataset '5'"),
    "a required argument missing": ({"data.source": {"csv": "a.csv"}}, "missing argument 'label'"),
    "no arguments": ({"data.source": {"npz": {}}}, "missing argument 'path'"),
    "an unknown source for validation": (
        {"data.validation_split": 0.0, "data.validation": {"source": {"sklern": "iris"}}},
        "unknown data source 'sklern'",
    ),
    "an unknown pruner argument": (
        {"sweep": _sweep(prune={"median": {"warmup": 1}})},
        "unknown argument of median",
    ),
    "a pruner's argument not by name": (
        {"sweep": _sweep(prune={"median": 2})},
        "expected arguments by name",
    ),
    "an unknown method": ({"sweep": _sweep(method="bayes")}, "expected one of"),
    "a step for choices": (
        {"sweep": _sweep({"choice": [0.01, 0.1], "step": 1})},
        "step applies to int and uniform",
    ),
    "an int range with a fractional step": (
        {"sweep": _sweep({"int": [16, 64], "step": 1.5})},
        "int: expected an integer step",
    ),
    "a fractional number of epochs": ({"train.epochs": 2.5}, "expected an integer"),
    "a version of true": ({"version": True}, "unsupported spec version"),
    "a backbone of two origins": (
        {"model.backbone": {"application": "mobilenet_v2", "run": "0123abcd"}},
        "a backbone needs exactly one of application, run or model",
    ),
    "a GAN without its discriminator": (
        {"model": {"kind": "gan", "latent_dim": 8, "generator": [{"dense": 4}]}},
        "a gan model needs discriminator",
    ),
    "a supervised model with an encoder": (
        {"model.encoder": [{"dense": 2}]},
        "encoder do not belong to a supervised model",
    ),
}
ACCEPTED: dict[str, dict[str, Any]] = {
    "whole numbers as integers": {
        "train.epochs": 3.0,
        "seed": 7.0,
        "train.steps_per_execution": 2.0,
    },
    "a source and its first argument": {"data.source": {"sklearn": "digits"}},
    "a source's name spelled another way": {"data.source": {"SK_Learn": "iris"}},
    "a loader's own argument": {"data.source": {"sklearn": {"name": "digits", "n_class": 5}}},
    "a Python function": {"data.source": {"python": "my_data:load"}},
    "a Python function's arguments": {
        "data.source": {"python": {"function": "my_data:load", "n": 8}}
    },
    "a sweep with a pruner": {"sweep": _sweep(prune={"median": {"warmup_epochs": 1}})},
    "a pruner by name": {"sweep": _sweep(prune="median")},
    "a pruner of no arguments": {"sweep": _sweep(prune={"hyperband": None})},
    "an int range with a whole step": {
        "sweep": _sweep({"int": [16, 64], "step": 16.0}, path="train.batch_size")
    },
}
MY_DATA = """\
import numpy as np


def load(n=8):
    return np.zeros((n, 4), "float32"), np.zeros(n, "int32")
"""


def _spec(changes: dict[str, Any]) -> dict[str, Any]:
    """`BASE` with each dotted path of `changes` set to its value."""
    spec = copy.deepcopy(BASE)
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        here = spec
        for part in parents:
            here = here.setdefault(part, {})
        here[last] = value
    return spec


def _dlx_refusal(tmp_path: Path, spec: dict[str, Any]) -> str | None:
    """What `dlx validate` says of `spec` (written beside a `my_data` module); `None`: ok."""
    (tmp_path / "my_data.py").write_text(MY_DATA)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    try:
        api.validate(path)
    except DlxError as error:
        return str(error)
    return None


def test_the_schema_is_valid_json_schema():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


@pytest.mark.parametrize("case", list(REFUSED))
def test_what_dlx_refuses_the_schema_refuses(tmp_path: Path, case: str):
    changes, message = REFUSED[case]
    spec = _spec(changes)

    refusal = _dlx_refusal(tmp_path, spec)

    assert refusal is not None and message in refusal, refusal
    refusals = schema_refusals(spec)
    assert refusals, f"the schema takes what dlx refuses: {refusal}"
    assert any(r.startswith(tuple(changes)) for r in refusals), (refusals, list(changes))


@pytest.mark.parametrize("case", list(ACCEPTED))
def test_what_dlx_takes_the_schema_takes(tmp_path: Path, case: str):
    spec = _spec(ACCEPTED[case])

    assert _dlx_refusal(tmp_path, spec) is None
    assert schema_refusals(spec) == []


REPOSITORY_SPECS = sorted(
    path
    for pattern in ("specs/*.yaml", "examples/**/*.yaml", "tests/spec_examples/*.yaml")
    for path in ROOT.glob(pattern)
    if re.search(r"^version:", path.read_text(), re.M)  # not Kubernetes' manifests
)


@pytest.mark.parametrize(
    "path", REPOSITORY_SPECS, ids=[p.relative_to(ROOT).as_posix() for p in REPOSITORY_SPECS]
)
def test_every_spec_of_the_repository_is_taken_by_the_schema(path: Path):
    load_spec(path)
    assert schema_refusals(read_document(path).data) == []
