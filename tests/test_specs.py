"""Every spec shipped in specs/ and examples/ validates and builds its exact model."""

from __future__ import annotations

from pathlib import Path

import pytest

from dlx import api

ROOT = Path(__file__).resolve().parents[1]
SPEC_FILES = sorted([*ROOT.glob("specs/*.yaml"), *ROOT.glob("examples/*.yaml")])

# (trainable, non-trainable) parameters, counted once by building each spec; a change to a
# spec, or to how dlx builds it, shows here. A GAN counts both networks; a transfer model's
# frozen backbone is non-trainable.
PARAMS = {
    # conv 3x3x1x32+32, conv 3x3x32x32+32, dense (4*4*32)x64+64 (after pooling), dense 64x10+10.
    "specs/digits_cnn.yaml": (320 + 9248 + 32_832 + 650, 0),
    # normalization: mean, variance (4 each) and count; dense 4x32+32, 32x32+32, 32x3+3.
    "specs/iris_mlp.yaml": (160 + 1056 + 99, 4 + 4 + 1),
    "specs/digits_autoencoder.yaml": (17_809, 0),
    "specs/digits_backbone.yaml": (42_725, 0),
    "specs/digits_gan.yaml": (174_978, 0),
    "specs/digits_inception.yaml": (22_146, 0),
    "specs/digits_resnet.yaml": (169_834, 960),
    "specs/digits_transfer.yaml": (2565, 9568),
    "specs/sequence_lstm.yaml": (23_235, 0),
    # normalization: 1 + 1 + 1; GRU (reset_after): 3x(1x32 + 32x32 + 2x32); dense 32+1.
    "specs/timeseries_gru.yaml": (3 * (32 + 32 * 32 + 2 * 32) + 33, 3),
    # keras.applications.VGG16(weights=None) and ResNet50(weights=None), to the parameter.
    "examples/vgg16.yaml": (138_357_544, 0),
    "examples/resnet50.yaml": (25_583_592, 53_120),
}


def _key(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def test_every_spec_has_its_parameter_counts() -> None:
    assert sorted(_key(path) for path in SPEC_FILES) == sorted(PARAMS)


@pytest.mark.parametrize(
    "path",
    # VGG16 and ResNet50 take many seconds to build.
    [
        pytest.param(p, marks=pytest.mark.slow) if p.parent.name == "examples" else p
        for p in SPEC_FILES
    ],
    ids=[_key(path) for path in SPEC_FILES],
)
def test_spec_builds_its_exact_model(path: Path) -> None:
    summary = api.inspect(path).as_dict()

    assert (summary["trainable_params"], summary["non_trainable_params"]) == PARAMS[_key(path)]
    assert summary["params"] == sum(PARAMS[_key(path)])


def test_the_committed_baseline_is_of_the_spec_as_the_ci_example_trains_it():
    """specs/digits_cnn.baseline.json is what examples/ci/github-actions.yml checks pull
    requests against: a run of the spec as it is now (with `runtime.deterministic=true`, as the
    workflow sets it). After a change to the spec, write it again: `dlx train
    specs/digits_cnn.yaml --set runtime.deterministic=true && dlx baseline write
    specs/digits_cnn.yaml`."""
    import hashlib

    from dlx.spec import load_spec
    from dlx.track.baseline import RunRecord
    from dlx.track.tags import resolved_spec_text

    record = RunRecord.read(ROOT / "specs" / "digits_cnn.baseline.json")
    loaded = load_spec(ROOT / "specs" / "digits_cnn.yaml", ["runtime.deterministic=true"])
    assert record.spec_hash == hashlib.sha256(resolved_spec_text(loaded).encode()).hexdigest()
    assert record.status == "FINISHED" and record.git["dirty"] == "false"
    assert {"val_accuracy", "val_loss"} <= set(record.metrics)  # what the spec's gate names
    assert len(record.history["val_accuracy"]) == loaded.spec.train.epochs
