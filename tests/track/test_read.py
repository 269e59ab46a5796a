"""Reading runs back (`dlx.track.read`): both readers list every run, page after page, and
agree with each other on a real store written by MLflow's client, and the store finds each
run's best step as its history says (ties: the earliest step; NaN never best)."""

import json
import math

import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from dlx import api
from dlx.track.read import MlflowStore, SqliteStore, best_step, open_store
from dlx.track.tags import PARENT_RUN, PRUNED
from tests.in_process import dlx_in_process

# Per run: val_loss by step. Ties between steps, NaN first, NaN between, only NaN, an infinity.
HISTORIES = [
    [0.5, 0.3, 0.3, 0.4],
    [math.nan, 0.9, 0.2, 0.2],
    [0.7, math.nan, 0.1, math.nan],
    [math.nan, math.nan],
    [0.4, math.inf, 0.4, -math.inf],
    [0.6],
    [],
]
PAGE = 3  # fewer than the runs, so that MLflow's client is asked page after page


@pytest.fixture
def store(store_uri) -> tuple[str, list[str]]:
    """An experiment of seven runs (newest first in the list returned), logged through
    MLflow's client: params, one of which differs and one that only some runs have, tags,
    and the histories above; and a second, older experiment."""
    client = MlflowClient(store_uri)
    older = client.create_experiment("older")
    client.set_terminated(client.create_run(older, start_time=1).info.run_id)
    experiment = client.create_experiment("histories")
    run_ids = []
    for number, history in enumerate(HISTORIES):
        run = client.create_run(experiment, start_time=1000 + number, run_name=f"run-{number}")
        run_id = run.info.run_id
        params = [Param("seed", "42"), Param("units", str(32 * (number % 2 + 1)))]
        params += [Param("dropout", "0.5")] if number < 3 else []
        tags = [RunTag("team", "vision")] + ([RunTag(PRUNED, "1")] if number == 2 else [])
        metrics = [Metric("val_loss", v, 1000 + step, step) for step, v in enumerate(history)]
        metrics += [
            Metric("val_accuracy", 1 - v, 1000 + step, step) for step, v in enumerate(history)
        ]
        client.log_batch(run_id, metrics=metrics, params=params, tags=tags)
        client.set_terminated(run_id)
        run_ids.append(run_id)
    return store_uri, run_ids[::-1]


def _readers(uri: str) -> list:
    direct = open_store(uri)
    assert isinstance(direct, SqliteStore)
    return [direct, MlflowStore(uri, page_size=PAGE)]


def _as_data(runs) -> str:
    """What the runs hold, as text in which NaN equals NaN and a mapping's order is no matter."""
    return repr(
        [
            (r.info.run_id, r.info.status, r.info.start_time, r.info.end_time, r.info.run_name)
            + tuple(sorted(d.items()) for d in (r.data.params, r.data.metrics, r.data.tags))
            for r in runs
        ]
    )


def test_both_readers_list_every_run_page_after_page_and_agree(store):
    uri, newest_first = store
    direct, client = _readers(uri)
    experiment = direct.experiment("histories")
    assert direct.experiment(None) == client.experiment(None) == experiment
    for selection in [
        {},
        {"params": "differing", "tags": [PRUNED, PARENT_RUN]},
        {"params": "none", "tags": []},
        {"limit": PAGE + 1},
    ]:
        mine, theirs = (reader.runs(experiment, **selection) for reader in (direct, client))
        expected = newest_first[: selection.get("limit")]
        assert [r.info.run_id for r in mine] == [r.info.run_id for r in theirs] == expected
        assert _as_data(mine) == _as_data(theirs), selection
    differing = direct.runs(experiment, params="differing")
    assert {name for r in differing for name in r.data.params} == {"units", "dropout"}
    assert direct.count_runs(experiment) == len(HISTORIES)
    assert client.count_runs(experiment) is None


@pytest.mark.parametrize(
    "runs",
    [
        # Newest first: the first is the run the others are compared with (`SqliteStore`).
        [{}, {"a": "1"}, {"a": "1", "b": "2"}],  # the first has no params
        [{"a": "1", "b": "2"}, {"a": "1", "c": "2"}, {"a": "1", "b": "2"}],  # b swapped for c
        [{"a": "1", "b": "2"}, {"a": "1"}, {}, {"a": "1", "b": "2"}],  # some lack b, or all
        [{"a": "1", "b": "x"}, {"a": "1", "b": "X"}, {"a": "1", "b": "x "}],  # exact text
        [{"a": "1", "b": "2"}, {"a": "1", "b": "2"}],  # nothing differs
        [{"a": "1", "b": "2"}],  # one run
    ],
)
def test_the_differing_params_are_those_the_runs_do_not_all_share(store_uri, runs):
    """`SqliteStore` compares every run with the first instead of grouping by key: a run that
    lacks a key of the first's, holds one it lacks, or both (as many params as the first),
    has those params read whole; the others, the values that differ."""
    client = MlflowClient(store_uri)
    experiment = client.create_experiment("differing")
    for number, params in enumerate(reversed(runs)):
        run_id = client.create_run(experiment, start_time=1000 + number).info.run_id
        client.log_batch(run_id, params=[Param(k, v) for k, v in params.items()])
    expected = {
        k for k in {k for params in runs for k in params} if len({p.get(k) for p in runs}) > 1
    }
    listed = []
    for reader in _readers(store_uri):
        found = reader.runs(reader.experiment("differing"), params="differing")
        listed.append([r.data.params for r in found])
        assert listed[-1] == [{k: v for k, v in p.items() if k in expected} for p in runs]
    assert listed[0] == listed[1]


def test_best_steps_are_each_history_s_best_step_in_both_readers(store):
    uri, newest_first = store
    oldest_first = newest_first[::-1]
    for reader in _readers(uri):
        for metric, higher in [("val_loss", False), ("val_accuracy", True)]:
            expected = {}
            for run_id in oldest_first:
                step = best_step(reader.history(run_id, metric), higher)
                if step is not None:
                    expected[run_id] = step
            assert reader.best_steps(oldest_first, metric, higher) == expected
    steps = open_store(uri).best_steps(oldest_first, "val_loss", False)
    assert [steps.get(run_id) for run_id in oldest_first] == [1, 2, 2, None, 3, 0, None]


def test_run_id_prefixes_are_found_by_both_readers(store):
    uri, run_ids = store
    for reader in _readers(uri):
        (found,) = reader.find([run_ids[3][:10]])
        assert found.info.run_id == run_ids[3]
        assert reader.prefixed(run_ids[3][:10].upper(), 6) == []  # ids are case-sensitive
        assert len(reader.prefixed("", 100)) == len(HISTORIES) + 1  # both experiments


def test_a_cut_listing_says_how_many_runs_it_left_out(store, tmp_path):
    uri, run_ids = store
    listing = api.runs("histories", limit=2, tracking_uri=uri)
    assert [r.run_id for r in listing.runs] == run_ids[:2]
    assert listing.total == len(HISTORIES)
    done = dlx_in_process("runs", "-e", "histories", "-n", "2", "--tracking-uri", uri, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "histories: 2 of 7 runs" in done.stdout
    assert "5 more not listed: --limit 7 lists them all" in " ".join(done.stderr.split())


def test_a_comparison_s_table_shows_the_first_runs_and_says_how_to_see_them_all(store, tmp_path):
    uri, run_ids = store
    arguments = ("compare", "-e", "histories", "--sort", "val_loss", "--tracking-uri", uri)
    done = dlx_in_process(*arguments, "-n", "2", cwd=tmp_path, env={"COLUMNS": "200"})
    assert done.returncode == 0, done.stderr
    # The best two final val_loss: run 4's (-inf, kept by MLflow as the lowest float), run 1's.
    shown = [r[:8] in done.stdout for r in run_ids]  # newest first: run 6 to run 0
    assert shown == [False, False, True, False, False, True, False]
    note = " ".join(done.stderr.split())
    assert "the first 2 of 7 runs (best val_loss first); --limit 7 shows them all" in note
    done = dlx_in_process(*arguments, "--format", "json", cwd=tmp_path)
    assert len(json.loads(done.stdout)) == len(HISTORIES)
    assert "--limit" not in done.stderr
    # Newest first, the best val_loss (run 4's) is not among the two shown: none is marked.
    done = dlx_in_process(*arguments[:3], *arguments[5:], "-n", "2", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert [r[:8] in done.stdout for r in run_ids][:3] == [True, True, False]


def test_a_limited_comparison_keeps_the_best_runs_with_their_best_epochs_of_all_compared(store):
    uri, _ = store
    whole = api.compare(experiment="histories", sort="val_loss", tracking_uri=uri)
    kept = api.compare(experiment="histories", sort="val_loss", limit=2, tracking_uri=uri)
    assert (kept.total, whole.total) == (len(HISTORIES), len(HISTORIES))
    assert kept.runs == whole.runs[:2]
    assert kept.best_epoch == {r.info.run_id: whole.best_epoch[r.info.run_id] for r in kept.runs}
    assert (kept.params, kept.best) == (whole.params, whole.best)
