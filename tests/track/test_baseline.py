"""A run beside its baseline, without training: the file, the verdicts, the gate, what changed.

The commands, on runs trained for the purpose and a real `mlflow server`, are in
tests/cli/test_baseline_command.py.
"""

import json
import math
from dataclasses import replace

import pytest

from dlx.errors import SpecError, UsageError
from dlx.spec import load_spec_text
from dlx.track.baseline import (
    RunRecord,
    Tolerance,
    _gate,
    _identical,
    _metric_checks,
    _verdict,
    changes,
)


def record(**fields) -> RunRecord:
    values = dict(
        run_id="a" * 32,
        name="digits-cnn",
        experiment="digits-cnn",
        status="FINISHED",
        started="2026-12-05T10:00:00",
        spec_hash="f" * 64,
        params={"train.epochs": "20", "seed": "42"},
        data_fingerprint="d" * 64,
        seed="42",
        deterministic=True,
        versions={"dlx": "0.1.0", "keras": "3.15.1"},
        git={"commit": "c" * 40, "branch": "main", "dirty": "false"},
        metrics={"val_accuracy": 0.96, "val_loss": 0.13},
        machine="x86_64 Xeon",
        history={"val_accuracy": [0.8, 0.96], "val_loss": [1.1, 0.13]},
    )
    return RunRecord(**{**values, **fields})


def test_the_file_round_trips_with_nan_and_infinities_and_keeps_a_history_on_one_line(tmp_path):
    written = record(
        metrics={"val_loss": math.nan, "val_accuracy": 0.5, "big": math.inf},
        history={"val_loss": [1.0, math.nan], "val_accuracy": [0.25, 0.5]},
    )
    path = tmp_path / "spec.baseline.json"
    text = written.to_json()
    path.write_text(text)
    json.loads(text)  # strict JSON: no NaN nor Infinity
    assert '"val_loss": [1.0, null]' in text
    assert list(json.loads(text))[:3] == ["dlx_baseline", "run_id", "name"]

    read = RunRecord.read(path)
    assert math.isnan(read.metrics["val_loss"]) and read.metrics["big"] == math.inf
    assert read.history["val_loss"][0] == 1.0 and math.isnan(read.history["val_loss"][1])
    assert replace(read, metrics={}, history={}) == replace(written, metrics={}, history={})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "no baseline file .*dlx baseline write"),
        ('{"dlx_baseline": 1,\n  "run_id": }', r"spec.baseline.json:2:13: not a baseline file"),
        ('{"something": "else"}', "is not a dlx baseline file of layout 1"),
        ('{"dlx_baseline": 1, "run_id": "x"}', "is not a dlx baseline file: .*missing"),
    ],
)
def test_a_bad_baseline_file_is_a_usage_error_that_says_what(tmp_path, text, message):
    path = tmp_path / "spec.baseline.json"
    if text is not None:
        path.write_text(text)
    with pytest.raises(UsageError, match=message):
        RunRecord.read(path)


@pytest.mark.parametrize(
    ("text", "allowed_of_0_5", "sign"),
    [("-0.005", 0.005, -1), ("+2%", 0.01, 1), ("0.1", 0.1, 0), ("-1e-3", 0.001, -1)],
)
def test_a_tolerance_is_absolute_or_a_percentage_of_the_baseline(text, allowed_of_0_5, sign):
    tolerance = Tolerance.parse(text)
    assert tolerance.allowed(0.5) == pytest.approx(allowed_of_0_5)
    assert tolerance.allowed(-0.5) == pytest.approx(allowed_of_0_5)
    assert tolerance.sign == sign


@pytest.mark.parametrize(
    ("before", "after", "higher", "allowed", "verdict"),
    [
        (0.9, 0.95, True, 0.01, "better"),
        (0.9, 0.895, True, 0.01, "within tolerance"),
        (0.9, 0.85, True, 0.01, "worse"),
        (0.9, 0.85, True, None, "worse"),
        (0.5, 0.4, False, 0.0, "better"),
        (0.5, 0.505, False, 0.01, "within tolerance"),
        (0.5, 0.6, False, 0.01, "worse"),
        (0.5, 0.5, False, 0.0, "same"),
        (0.5, math.nan, False, 1.0, "worse"),
        (math.nan, 0.5, False, 0.0, "better"),
        (None, 0.5, False, 0.0, "missing"),
    ],
)
def test_verdicts_follow_the_metrics_direction(before, after, higher, allowed, verdict):
    assert _verdict(before, after, higher, allowed) == verdict


def test_gated_metrics_come_first_and_only_they_fail():
    baseline = record(metrics={"val_accuracy": 0.96, "val_loss": 0.13, "loss": 0.1})
    now = record(metrics={"val_accuracy": 0.955, "val_loss": 0.2, "loss": 0.3})
    gate = {"val_accuracy": (Tolerance.parse("-0.01"), True)}
    checks = _metric_checks(baseline, now, gate)
    assert [c.metric for c in checks] == ["val_accuracy", "loss", "val_loss"]
    assert checks[0].verdict == "within tolerance" and not checks[0].failed
    assert checks[0].delta == pytest.approx(-0.005)
    assert checks[0].relative == pytest.approx(-0.005 / 0.96)
    assert [c.verdict for c in checks[1:]] == ["worse", "worse"]
    assert not any(c.failed for c in checks)  # worse, but not gated


def test_a_gated_metric_the_run_lacks_fails():
    checks = _metric_checks(record(), record(metrics={"val_loss": 0.1}), _gate_of("val_accuracy"))
    (missing,) = [c for c in checks if c.metric == "val_accuracy"]
    assert missing.verdict == "missing" and missing.failed


def _gate_of(metric):
    return {metric: (Tolerance.parse("0"), True)}


SPEC = """\
version: 1
name: digits-cnn
data: {source: {sklearn: digits}, validation_split: 0.2}
model:
  layers: [{input: {shape: [64]}}, {dense: {units: 10, activation: softmax}}]
train: {loss: sparse_categorical_crossentropy, metrics: [accuracy]}
baseline:
  gate:
    val_accuracy: -0.005
    val_loss: +2%
    val_mae: {tolerance: 0.1, better: higher}
"""


def test_the_gate_comes_from_the_spec_and_the_command_line(tmp_path):
    loaded = load_spec_text(SPEC, tmp_path / "spec.yaml")
    gate = _gate(loaded, {"val_loss": "+5%", "accuracy": "-0.1"})
    assert {k: (t.text, higher) for k, (t, higher) in gate.items()} == {
        "val_accuracy": ("-0.005", True),
        "val_loss": ("+5%", False),  # the command line's wins
        "val_mae": ("0.1", True),  # declared better higher, though its name says lower
        "accuracy": ("-0.1", True),
    }


def test_a_tolerance_on_the_better_side_is_refused_where_it_is_written(tmp_path):
    loaded = load_spec_text(SPEC.replace("val_loss: +2%", "val_loss: -2%"), tmp_path / "spec.yaml")
    with pytest.raises(SpecError) as info:
        _gate(loaded, {})
    rendered = info.value.render()
    assert "spec.yaml:10:15" in rendered
    assert "write its tolerance as +2%" in rendered
    good = load_spec_text(SPEC, tmp_path / "spec.yaml")
    with pytest.raises(UsageError, match="--tolerance val_loss=-2%: val_loss is better lower"):
        _gate(good, {"val_loss": "-2%"})
    for text in ("two", "nan", "inf", "+"):
        with pytest.raises(UsageError, match="expected a number"):
            _gate(good, {"val_loss": text})


@pytest.mark.parametrize(
    ("yaml", "message"),
    [
        ("val_loss: lots", "expected a tolerance"),
        ("val_loss: {tolerance: 1, better: up}", "higher"),
        ("val_loss: {tolerence: 1}", "tolerence"),
    ],
)
def test_a_bad_gate_in_the_spec_is_a_located_error(tmp_path, yaml, message):
    text = SPEC.split("  gate:")[0] + f"  gate:\n    {yaml}\n"
    with pytest.raises(SpecError, match=message) as info:
        load_spec_text(text, tmp_path / "spec.yaml")
    assert "spec.yaml:9:" in info.value.render()


def test_changes_list_the_spec_and_data_first_and_leave_the_gate_out():
    baseline = record()
    now = record(
        name="digits-small",
        data_fingerprint="e" * 64,
        params={"train.epochs": "5", "seed": "42", "baseline.gate.val_loss": "+2%"},
        versions={"dlx": "0.2.0", "keras": "3.15.1"},
        git={"commit": "b" * 40, "branch": "feature", "dirty": "true"},
        machine="arm64",
    )
    found = [(c.what, c.name, c.baseline, c.now) for c in changes(baseline, now)]
    assert found[:2] == [
        ("spec", "name", "digits-cnn", "digits-small"),
        ("data", "fingerprint", "d" * 64, "e" * 64),
    ]
    assert ("param", "train.epochs", "20", "5") in found
    assert not [c for c in found if c[1].startswith("baseline.")]
    assert ("version", "dlx", "0.1.0", "0.2.0") in found
    assert ("machine", "processor", "x86_64 Xeon", "arm64") in found
    assert [c[1] for c in found if c[0] == "git"] == ["commit", "branch", "dirty"]


def test_identical_needs_both_deterministic_and_ignores_the_commit():
    assert _identical(record(), record(git={"commit": "b" * 40}))
    assert not _identical(record(), record(deterministic=False))
    assert not _identical(record(), record(versions={"dlx": "0.2.0"}))
    assert not _identical(record(), record(machine="arm64"))
    assert not _identical(record(), record(data_fingerprint="e" * 64))
    assert not _identical(record(spec_hash=None), record(spec_hash=None))
