"""A streamed file that cannot be decoded: a FAILED run naming it, resumable once it is fixed;
or, with `data.on_error: skip`, left out and counted. And `dlx reproduce` on changed files."""

import subprocess
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest

from dlx.train.reproduction import _data_changed
from tests.in_process import dlx_in_process
from tests.train.test_resume import runs, store, write_images_spec

ADVICE = "Fix or remove the file, or leave such files out with `data.on_error: skip`"

pytestmark = pytest.mark.slow  # the tests here train, but for the last

BROKEN = "shapes/light/50.png"
"""The 151st of the spec's files: past the ones read before the run starts."""


def rescaled_images_spec(folder):
    """`write_images_spec`'s, with a `rescaling` layer: nothing is read before training."""
    spec = write_images_spec(folder)
    spec.write_text(spec.read_text().replace("- normalization", "- rescaling: 0.0039"))
    return spec


def test_a_broken_file_read_to_adapt_refuses_the_spec(tmp_path):
    spec = write_images_spec(tmp_path)  # `normalization` adapts on the first examples
    for number in range(100):
        (tmp_path / "shapes" / "light" / f"{number}.png").write_bytes(b"not an image")
    refused = dlx_in_process("train", str(spec), cwd=tmp_path)
    assert refused.returncode == 2, refused.stderr[-3000:]
    assert f"error: data: could not read {Path('shapes', 'light')}" in refused.stderr
    assert ADVICE in refused.stderr
    assert not runs(store(tmp_path))


def test_a_broken_file_fails_the_run_naming_it_and_the_run_resumes_once_fixed(tmp_path):
    spec = rescaled_images_spec(tmp_path)
    good = (tmp_path / BROKEN).read_bytes()
    (tmp_path / BROKEN).write_bytes(b"not an image")
    failed = dlx_in_process("train", str(spec), "--set", "train.epochs=2", cwd=tmp_path)
    assert failed.returncode == 1, failed.stderr[-3000:]
    first = failed.stderr.strip().splitlines()[0]
    assert first.startswith(
        f"error: training failed: could not read {BROKEN}: Unknown image file format."
    ), failed.stderr[-3000:]
    assert first.endswith(ADVICE)
    client = store(tmp_path)
    (run,) = runs(client)
    assert run.info.status == "FAILED"

    (tmp_path / BROKEN).write_bytes(good)
    resumed = dlx_in_process("train", "--resume", run.info.run_id, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    (run,) = runs(client)
    assert run.info.status == "FINISHED"
    assert len(client.get_metric_history(run.info.run_id, "loss")) == 2


def test_skip_leaves_broken_files_out_of_training_and_figures_and_says_so(tmp_path):
    spec = rescaled_images_spec(tmp_path)
    # One in ten files of each class: some fall in the validation split, whose confusion
    # matrix then has fewer examples than the split has files.
    broken = sorted(tmp_path.glob("shapes/*/*0.png"))
    for path in broken:
        path.write_bytes(b"not an image")
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        done = dlx_in_process(
            "train", str(spec), "--set=train.epochs=2", "--set=data.on_error=skip", cwd=tmp_path
        )
    assert done.returncode == 0, done.stderr[-3000:]
    assert not [w for w in warned if "ran out of data" in str(w.message)]
    first = min(str(path.relative_to(tmp_path)) for path in broken)
    assert f"skipped {len(broken)} unreadable examples (first: {first})" in done.stdout
    client = store(tmp_path)
    (run,) = runs(client)
    assert run.info.status == "FINISHED"
    assert run.data.tags["dlx.skipped_examples"] == f"{len(broken)} (first: {tmp_path / first})"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert "confusion_matrix.png" in artifacts


def test_reproduce_says_when_the_files_changed(tmp_path):
    spec = rescaled_images_spec(tmp_path)
    assert (
        dlx_in_process("train", str(spec), "--set", "train.epochs=1", cwd=tmp_path).returncode == 0
    )
    (run,) = runs(store(tmp_path))
    assert run.data.tags["dlx.data_fingerprint_kind"] == "files"
    touched = tmp_path / "shapes" / "dark" / "7.png"
    touched.write_bytes(touched.read_bytes())  # the same bytes, a new modification time
    again = dlx_in_process("reproduce", run.info.run_id, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]  # the same bytes: the same metrics
    assert "note: the data changed since the run: fingerprint" in again.stderr
    assert "data.fingerprint: content compares their bytes" in again.stderr


def test_a_content_fingerprint_is_not_said_to_change_with_the_same_bytes():
    tags = {"dlx.data_fingerprint": "a" * 64, "dlx.data_fingerprint_kind": "content"}
    assert _data_changed(tags, SimpleNamespace(data_fingerprint="a" * 64)) is None
    assert _data_changed(tags, SimpleNamespace(data_fingerprint="b" * 64)) == (
        f"the data changed since the run: fingerprint {'a' * 16} != {'b' * 16}"
    )


def test_dlx_data_names_a_broken_file_past_the_ones_read_first_at_the_source(tmp_path):
    spec = rescaled_images_spec(tmp_path)
    (tmp_path / BROKEN).write_bytes(b"not an image")
    refused = dlx_in_process("data", str(spec), cwd=tmp_path)
    assert refused.returncode == 2, refused.stderr[-3000:]
    first = refused.stderr.splitlines()[0]
    assert first.startswith(f"{spec.name}:") or first.startswith(f"{spec}:"), first
    assert f"error: data.source: could not read {BROKEN}: Unknown image file format." in first
    assert first.endswith(ADVICE)
    assert "Traceback" not in refused.stderr


@pytest.mark.parametrize("command", ["validate", "train"])
def test_a_disk_cache_in_a_read_only_folder_is_located_before_anything_is_read(command, tmp_path):
    from tests.track.test_store import _without_write_permission

    prefix = _without_write_permission()
    spec = write_images_spec(tmp_path, cache="{disk: read-only/cache}")
    (tmp_path / "read-only").mkdir()
    (tmp_path / "read-only").chmod(0o555)
    try:
        done = subprocess.run(
            [*prefix, sys.executable, "-m", "dlx", command, str(spec)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        (tmp_path / "read-only").chmod(0o755)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert (
        f"shapes.yaml:9:17: error: data.cache.disk: the cache cannot be written: "
        f"{tmp_path / 'read-only'} is not a writable folder"
    ) in done.stderr
    assert not (tmp_path / "mlflow.db").exists()  # no run opened
