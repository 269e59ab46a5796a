"""Two workers on a streamed images folder: each reads its own half of the training files."""

import pytest

from dlx.data import SourceContext, make_splits
from dlx.spec import load_spec
from tests.train.processes import BOUND_S, dlx
from tests.train.test_resume import runs, store, write_images_spec


@pytest.mark.slow
@pytest.mark.timeout(BOUND_S + 30)
def test_two_workers_shard_a_streamed_folder_by_file_into_one_run(tmp_path):
    spec = write_images_spec(tmp_path)
    done = dlx("train", str(spec), "--workers", "2", "--set", "train.epochs=2", cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    # Each step takes batch_size / 2 examples of each worker's stream, which holds exactly
    # that many for every step: a worker reading more per step would run out.
    assert "ran out of data" not in done.stderr
    files = make_splits(
        load_spec(spec).spec.data, context=SourceContext(tmp_path, seed=3), batch_size=16
    ).num_train
    half = str(files // 2) if files % 2 == 0 else f"{files // 2}-{files // 2 + 1}"
    assert f"training data sharded by file: {half} files per worker (2 workers)" in done.stdout
    client = store(tmp_path)
    (run,) = runs(client)
    assert run.info.status == "FINISHED"
    tags = run.data.tags
    assert (tags["dlx.workers"], tags["dlx.shard_policy"], tags["dlx.files_per_worker"]) == (
        "2",
        "file",
        half,
    )
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [0, 1]
