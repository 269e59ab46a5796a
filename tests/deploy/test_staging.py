"""`dlx.deploy.staging`: a folder written whole or not at all, with real files and renames."""

import pytest

from dlx.deploy import staging
from dlx.deploy.staging import staged_folder
from dlx.errors import UsageError


def earlier_export(folder):
    return (folder / "summary.json").is_file()


@pytest.mark.parametrize("exchange", [True, False], ids=["swapped", "moved-aside"])
def test_writers_of_one_folder_write_apart_and_the_last_to_finish_stays(
    tmp_path, monkeypatch, exchange
):
    if not exchange:  # a system that cannot swap two paths (not Linux, or an old kernel)
        monkeypatch.setattr(staging, "_exchange", lambda first, second: False)
    destination = tmp_path / "export"
    with staged_folder(destination, replaceable=earlier_export) as first:
        (first / "summary.json").write_text("first")
        with staged_folder(destination, replaceable=earlier_export) as second:
            assert second != first and second.parent == tmp_path
            (second / "summary.json").write_text("second")
        assert (destination / "summary.json").read_text() == "second"
        assert not destination.samefile(first)  # the first writer's files are still its own
    assert (destination / "summary.json").read_text() == "first"
    assert [path.name for path in tmp_path.iterdir()] == ["export"]


def test_a_failed_writer_leaves_nothing_not_even_the_parents_it_made(tmp_path):
    with (
        pytest.raises(RuntimeError),
        staged_folder(tmp_path / "made" / "here" / "export", replaceable=earlier_export) as folder,
    ):
        (folder / "summary.json").write_text("half")
        raise RuntimeError("a converter failed")
    assert list(tmp_path.iterdir()) == []


def test_a_folder_of_other_files_or_the_working_directory_is_refused_untouched(
    tmp_path, monkeypatch
):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    refused = "holds files of its own, which an export would replace"
    with pytest.raises(UsageError, match=refused), staged_folder(mine, replaceable=earlier_export):
        pass
    assert [path.name for path in tmp_path.iterdir()] == ["mine"]
    assert (mine / "notes.txt").read_text() == "mine"
    monkeypatch.chdir(mine)
    refused = "is the working directory or holds it"
    with pytest.raises(UsageError, match=refused), staged_folder(tmp_path, replaceable=bool):
        pass
