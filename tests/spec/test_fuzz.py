"""Seeded mutation of every spec: whatever a spec says, dlx answers with its own errors.

Each spec in specs/, examples/ and tests/spec_examples/ is mutated (keys deleted, renamed or
added; values swapped for other types, weird scalars, empty or huge collections, deep nesting;
components renamed; YAML text cut, or given aliases, tags, tabs and deep brackets) and the
mutant is checked by `dlx.api.validate`, in process. The only exceptions allowed are dlx's own
`DlxError`s, and each mutant is answered quickly. A mutant that the JSON Schema refuses (what an
editor marks) dlx refuses too: the schema is never stricter than dlx. The `sweep:` sections of
specs are mutated on their own too (`SWEEP_MUTANTS`, with the numbers, ranges, paths, pruners
and metrics a sweep goes wrong with), each mutant checked by `dlx.api.validate` with its sweep.

Building a model is what costs time, so a mutant that reads cleanly (parse and schema) is built
only for a share of them (`BUILT_SHARE`), and never for the specs with large models, unless the
JSON Schema refuses it; every other mutant goes through `dlx.api.validate`. The random
generator is seeded: every run checks the same mutants.
"""

from __future__ import annotations

import copy
import random
import shutil
import time
import traceback
from pathlib import Path
from typing import Any

import pytest
import yaml

from dlx import api
from dlx.errors import DlxError
from dlx.spec import read_document
from dlx.spec.load import validate_document
from dlx.tensorflow_import import import_tensorflow_quietly
from tests.conftest import ROOT
from tests.spec.schema_verdict import schema_refusals

SEED = 20240611
MUTANTS = 1550
THROUGH_VALIDATE = 1000
BUILT_SHARE = 0.25
SECONDS_PER_MUTANT = 10.0

FOLDERS = ("specs", "examples", "tests/spec_examples")
LARGE_MODELS = {"resnet50.yaml", "vgg16.yaml", "digits_resnet.yaml", "digits_inception.yaml"}
"""Specs whose model takes seconds to build: their mutants are checked up to the build."""

WEIRD_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    2**64,
    1.5,
    -0.0,
    float("inf"),
    float("nan"),
    "",
    " ",
    "é✓",
    "x" * 100_000,
    "$x",
    "${x}",
    "$input",
    "a>b",
    "dense",
    "adam",
    "relu",
    "1e-4",
    "2020-01-01",
    "null",
    "'",
    [],
    [[]],
    {},
    {"a": 1, "b": 2},
    {1: 2},
    {"": None},
    [1, "a", None],
    {"dense": {"units": 2, 3: 4}},
]
KEYS: list[Any] = [
    "name",
    "inputs",
    "repeat",
    "units",
    "activation",
    "kernel_initializer",
    "kernel_regularizer",
    "learning_rate",
    "merge",
    "main",
    "branches",
    "params",
    "layers",
    "until",
    "version",
    "",
    0,
    7,
]
COMPONENT_NAMES = [
    "dense",
    "conv2d",
    "residual",
    "parallel",
    "input",
    "flatten",
    "adam",
    "mse",
    "l2",
    "relu",
    "glorot_uniform",
    "early_stopping",
    "no_such_thing",
    "",
]
TEXT_INSERTS = [
    "x: &r [*r]\n",
    "bomb: &b0 [1, 1, 1, 1, 1, 1, 1, 1, 1]\n"
    + "".join(f"b{i}: &b{i} [{', '.join([f'*b{i - 1}'] * 9)}]\n" for i in range(1, 9)),
    "deep: " + "[" * 300 + "]" * 300 + "\n",
    "deep: " + "{a: " * 300 + "1" + "}" * 300 + "\n",
    "x: !!python/object/apply:os.system [echo hi]\n",
    "x: *undefined\n",
    "\tx: 1\n",
    "x: [1, 2\n",
    "version: 1\n",
    "<<: {train: {epochs: 2}}\n",
    "x: &a 1\ny: &a 2\n",
    "- a\n",
    "--- \n",
]


def _paths(value: Any, path: tuple = ()) -> list[tuple]:
    """Every path into `value`, the root included."""
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += _paths(item, (*path, i))
    return found


def _at(data: Any, path: tuple) -> Any:
    for part in path:
        data = data[part]
    return data


def _typo(word: str, rng: random.Random) -> str:
    if not word:
        return "x"
    i = rng.randrange(len(word))
    return word[:i] + rng.choice("aeioxz_") + word[i + 1 :]


def _mutate_data(data: Any, rng: random.Random) -> tuple[Any, str]:
    """One structural mutation of parsed spec data; returns the mutant and what was done."""
    data = copy.deepcopy(data)
    inner = [p for p in _paths(data) if p]
    path = rng.choice(inner)
    parent, last = _at(data, path[:-1]), path[-1]
    operation = rng.choice(["delete", "replace", "swap", "rename", "insert", "component", "grow"])
    if operation == "delete":
        del parent[last]
    elif operation == "replace":
        parent[last] = copy.deepcopy(rng.choice(WEIRD_VALUES))
    elif operation == "swap":
        parent[last] = copy.deepcopy(_at(data, rng.choice(inner)))
    elif operation == "rename" and isinstance(parent, dict):
        new = rng.choice([_typo(str(last), rng), rng.choice(KEYS)])
        parent[new] = parent.pop(last)
    elif operation == "insert":
        target = _at(data, rng.choice([p for p in _paths(data) if _is_container(_at(data, p))]))
        value = copy.deepcopy(rng.choice(WEIRD_VALUES))
        if isinstance(target, dict):
            target[rng.choice(KEYS)] = value
        else:
            target.insert(rng.randrange(len(target) + 1), value)
    elif operation == "component":
        one_key = [p for p in _paths(data) if isinstance(_at(data, p), dict)]
        one_key = [p for p in one_key if len(_at(data, p)) == 1]
        if one_key:
            mapping = _at(data, rng.choice(one_key))
            ((name, args),) = mapping.items()
            mapping.clear()
            mapping[rng.choice([*COMPONENT_NAMES, _typo(str(name), rng)])] = args
    else:  # grow: nest the value in lists, up to the depth dlx allows and beyond
        value = parent[last]
        for _ in range(rng.choice([1, 5, 60, 120])):
            value = [value]
        parent[last] = value
    return data, operation


def _is_container(value: Any) -> bool:
    return isinstance(value, (dict, list))


def _mutate_text(text: str, rng: random.Random) -> tuple[str, str]:
    """One textual mutation: an insert at a line, a cut, or a character removed."""
    lines = text.splitlines(keepends=True)
    operation = rng.choice(["insert", "insert", "cut", "drop"])
    if operation == "insert":
        at = rng.randrange(len(lines) + 1)
        indent = " " * rng.choice([0, 0, 2, 4])
        insert = "".join(indent + line for line in rng.choice(TEXT_INSERTS).splitlines(True))
        return "".join(lines[:at]) + insert + "".join(lines[at:]), "text-insert"
    if operation == "cut":
        return text[: rng.randrange(len(text))], "text-cut"
    i = rng.randrange(len(text))
    return text[:i] + text[i + 1 :], "text-drop"


def _mutants(rng: random.Random, seeds: dict[Path, str]) -> list[tuple[Path, str, str, bool]]:
    """(seed spec, mutant text, what was done, whether to build it should it read cleanly)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    parsed = {path: yaml.load(text, Loader=loader) for path, text in seeds.items()}
    mutants = []
    sources = sorted(seeds)
    for n in range(MUTANTS):
        source = sources[n % len(sources)]
        if rng.random() < 0.3:
            mutant, what = _mutate_text(seeds[source], rng)
        else:
            data, whats = parsed[source], []
            for _ in range(rng.choice([1, 1, 2, 3])):
                data, what = _mutate_data(data, rng)
                whats.append(what)
            mutant, what = yaml.dump(data, Dumper=dumper, sort_keys=False), "+".join(whats)
        build = source.name not in LARGE_MODELS and rng.random() < BUILT_SHARE
        mutants.append((source, mutant, what, build))
    return mutants


@pytest.mark.slow  # 1,500 specs read, a thousand models built: about 20 s
@pytest.mark.timeout(300)
def test_mutated_specs_raise_only_dlx_errors(tmp_path):
    for folder in FOLDERS:
        shutil.copytree(ROOT / folder, tmp_path / folder)
    seeds = {
        path: path.read_text()
        for folder in FOLDERS
        for path in sorted((tmp_path / folder).glob("*.yaml"))
    }
    assert len(seeds) >= 18
    import_tensorflow_quietly()  # once, before the clock of the first mutant starts
    rng = random.Random(SEED)
    crashes, slow, stricter = [], [], []
    outcomes = {"ok": 0, "error": 0, "not built": 0, "refused by the schema": 0}
    for n, (source, text, what, build) in enumerate(_mutants(rng, seeds)):
        mutant = source.with_name(f"mutant_{n}.yaml")
        mutant.write_text(text)
        start = time.perf_counter()
        refusals, reads_cleanly = _verdicts(mutant)
        outcomes["refused by the schema"] += bool(refusals)
        try:
            # What the schema refuses is validated whole: dlx must refuse it too.
            if not build and reads_cleanly and not refusals:
                outcomes["not built"] += 1
                continue
            api.validate(mutant)
            outcomes["ok"] += 1
            if refusals:
                stricter.append(f"{source.name} ({what}): {refusals}\n{text[:2000]}")
        except DlxError:
            outcomes["error"] += 1
        except Exception:  # noqa: BLE001 - any other exception is what this test looks for
            crashes.append(f"{source.name} ({what}):\n{text[:2000]}\n{traceback.format_exc()}")
        finally:
            mutant.unlink()
        elapsed = time.perf_counter() - start
        if elapsed > SECONDS_PER_MUTANT:
            slow.append(f"{source.name} ({what}) took {elapsed:.1f} s")
    assert not crashes, f"{len(crashes)} crashes; the first:\n" + crashes[0]
    assert not slow, slow
    assert not stricter, f"the schema refuses what dlx takes:\n{stricter[0]}"
    assert outcomes["ok"] + outcomes["error"] >= THROUGH_VALIDATE, outcomes
    assert outcomes["error"] > MUTANTS // 2, outcomes  # most mutants are wrong: mutations bite
    assert outcomes["refused by the schema"] > MUTANTS // 4, outcomes  # and the schema sees it


SWEEP_MUTANTS = 320
SWEEP_SEED = """\
version: 1
name: fuzzed-sweep
data: {source: {sklearn: iris}, validation_split: 0.2}
model:
  layers:
    - input: {shape: [4]}
    - dense: {units: 3, activation: softmax}
train:
  batch_size: 32
  optimizer: {adam: {learning_rate: 0.01}}
  loss: sparse_categorical_crossentropy
  metrics: [accuracy]
sweep:
  metric: val_accuracy
  goal: max
  method: tpe
  trials: 4
  params:
    train.optimizer.adam.learning_rate: {log_uniform: [1.0e-4, 1.0e-1]}
    train.batch_size: {int: [16, 64], step: 16}
    model.layers.1.dense.activation: {choice: [softmax, sigmoid]}
  prune: {median: {warmup_epochs: 1, startup_trials: 2}}
  repeats: 1
"""
SWEEP_SPECS = ("examples/sweep/pruning.yaml",)
"""Specs of the repository whose `sweep:` sections are mutated, besides `SWEEP_SEED` (small
models: a mutant that reads cleanly builds a few)."""
SWEEP_VALUES: list[Any] = [
    float("inf"),
    float("-inf"),
    float("nan"),
    1e308,
    -1e308,
    5e-324,
    2**53 + 1,
    10**30,
    -1,
    0,
    0.5,
    3,
    4096,
    [1, 4096],
    [-1e308, 1e308],
    [0, float("inf")],
    [1e-300, 1e300],
    [3, 1],
    [1],
    [1, True, "1", None],
    list(range(2000)),
    "grid",
    "cmaes",
    "random",
    "median",
    "hyperband",
    "successive_halving",
    "val_acuracy",
    "loss",
    "d_loss",
    "accuracy.0",
    "max",
]
"""Values a sweep section goes wrong with, put anywhere in it."""
SWEEP_PATHS = [
    "train.optimizer.adam.learning_rate",
    "train.optimizer",
    "train.batch_size",
    "train.loss",
    "model.layers.1.dense.units",
    "model.layers.1.dense",
    "model.layers.1",
    "model.layers.9.dense.units",
    "model.layers.-1",
    "data.validation_split",
    "sweep.trials",
    "sweep",
    "seed",
    "version",
    "name",
    "",
    ".",
]
SWEEP_PARAMS: list[Any] = [
    {"choice": [1, 2]},
    {"choice": [0.0, 0.2]},
    {"choice": ["adam", "sgd", "nope"]},
    {"choice": [{"dense": 3}, "flatten", None]},
    {"choice": [1, True, "1"]},
    {"choice": list(range(2000))},
    {"int": [1, 4096]},
    {"int": [1, 4096], "step": 4095},
    {"int": [-5, 5], "step": 0.5},
    {"uniform": [0.0, 0.9], "step": 0.3},
    {"uniform": [-1e308, 1e308]},
    {"uniform": [0.0, 1.0], "step": 1e-300},
    {"log_uniform": [1e-300, 1e300]},
    {"log_uniform": [0.0, 1.0]},
    {"choice": []},
    {"int": [1, 2], "uniform": [1, 2]},
]
"""Params a sweep goes wrong with, at any of `SWEEP_PATHS`."""
SWEEP_PRUNERS: list[Any] = [
    {"median": {"warmup_epochs": -1}},
    {"median": {"startup_trials": float("nan")}},
    {"hyperband": {"reduction_factor": 1}},
    {"hyperband": {"min_epochs": "x"}},
    {"hyperband": {"min_epochs": 5, "max_epochs": 2}},
    {"successive_halving": {"min_epochs": 0}},
    {"successive_halving": {"reduction_factor": 1.5}},
    {"median": [1]},
    "median",
]
SWEEP_SETTINGS: dict[str, list[Any]] = {
    "metric": ["val_accuracy", "val_acuracy", "test_loss", "d_loss", "accuracy.0", "learning_rate"],
    "method": ["grid", "random", "tpe", "cmaes"],
    "trials": [1, 0, 10**6],
    "repeats": [1, 2, 0, 2**32],
}
"""Values of the section's own keys, each set to one of them."""


def _mutate_sweep(data: dict[str, Any], rng: random.Random) -> tuple[dict[str, Any], str]:
    """One mutation of a spec's `sweep:` section: any of `_mutate_data`'s inside it, or one
    of the values, params, pruners or settings a sweep goes wrong with."""
    data = copy.deepcopy(data)
    sweep = data.get("sweep")
    inner = [p for p in _paths(sweep) if p] if isinstance(sweep, dict) else []
    operations = ["generic", "value", "param", "prune", "setting"]
    operation = rng.choice(operations) if inner else "generic"
    if operation == "generic":
        section, what = _mutate_data({"sweep": data.pop("sweep", None)}, rng)
        return {**data, **section}, f"sweep-{what}"
    assert isinstance(sweep, dict)
    if operation == "value":
        path = rng.choice(inner)
        _at(sweep, path[:-1])[path[-1]] = copy.deepcopy(rng.choice(SWEEP_VALUES))
    elif operation == "param" and isinstance(sweep.get("params"), dict):
        sweep["params"][rng.choice(SWEEP_PATHS)] = copy.deepcopy(rng.choice(SWEEP_PARAMS))
    elif operation == "setting":
        key = rng.choice(list(SWEEP_SETTINGS))
        sweep[key] = rng.choice(SWEEP_SETTINGS[key])
    else:
        sweep["prune"] = copy.deepcopy(rng.choice(SWEEP_PRUNERS))
    return data, f"sweep-{operation}"


@pytest.mark.slow  # 320 sweeps checked, some 500 small models built: about 8 s
@pytest.mark.timeout(120)
def test_mutated_sweep_sections_raise_only_dlx_errors(tmp_path):
    seeds = {tmp_path / "sweep.yaml": yaml.safe_load(SWEEP_SEED)}
    for name in SWEEP_SPECS:
        seeds[tmp_path / Path(name).name] = yaml.safe_load((ROOT / name).read_text())
    import_tensorflow_quietly()  # once, before the clock of the first mutant starts
    rng = random.Random(SEED)
    sources = sorted(seeds)
    crashes, slow, stricter = [], [], []
    outcomes = {"ok": 0, "error": 0, "refused by the schema": 0}
    for n in range(SWEEP_MUTANTS):
        source = sources[n % len(sources)]
        data, whats = seeds[source], []
        for _ in range(rng.choice([1, 1, 2])):
            data, what = _mutate_sweep(data, rng)
            whats.append(what)
        text = yaml.safe_dump(data, sort_keys=False)
        mutant = source.with_name(f"mutant_{n}.yaml")
        mutant.write_text(text)
        start = time.perf_counter()
        refusals, _ = _verdicts(mutant)
        outcomes["refused by the schema"] += bool(refusals)
        try:
            api.validate(mutant, check_data=False)
            outcomes["ok"] += 1
            if refusals:
                stricter.append(f"{source.name} ({'+'.join(whats)}): {refusals}\n{text[:3000]}")
        except DlxError:
            outcomes["error"] += 1
        except Exception:  # noqa: BLE001 - any other exception is what this test looks for
            crashes.append(f"{source.name} ({'+'.join(whats)}):\n{text[:3000]}\n")
            crashes[-1] += traceback.format_exc()
        finally:
            mutant.unlink()
        if (elapsed := time.perf_counter() - start) > SECONDS_PER_MUTANT:
            slow.append(f"{source.name} ({'+'.join(whats)}) took {elapsed:.1f} s")
    assert not crashes, f"{len(crashes)} crashes; the first:\n" + crashes[0]
    assert not slow, slow
    assert not stricter, f"the schema refuses what dlx takes:\n{stricter[0]}"
    assert outcomes["ok"] + outcomes["error"] == SWEEP_MUTANTS
    assert outcomes["error"] > SWEEP_MUTANTS // 2, outcomes  # most mutants are wrong
    assert outcomes["ok"] > SWEEP_MUTANTS // 20, outcomes  # and some still sweep
    assert outcomes["refused by the schema"] > SWEEP_MUTANTS // 4, outcomes


def _verdicts(spec: Path) -> tuple[list[str], bool]:
    """What the JSON Schema refuses in a spec, and whether dlx reads it cleanly (its YAML and
    its models); nothing is refused in YAML that dlx cannot read."""
    try:
        document = read_document(spec)
    except DlxError:
        return [], False
    refusals = schema_refusals(document.data)
    try:
        validate_document(document)
    except DlxError:
        return refusals, False
    return refusals, True
