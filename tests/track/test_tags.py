import hashlib
import platform
import re
import subprocess
from pathlib import Path

import keras
import mlflow
import tensorflow as tf

import dlx
from dlx.spec import load_spec
from dlx.track import resolved_spec_text, standard_tags
from dlx.track.tags import git_state, machine


def test_standard_tags_record_the_spec_the_data_the_placement_and_the_versions(spec_file):
    loaded = load_spec(spec_file, ["train.epochs=5"])
    tags = standard_tags(loaded, strategy="mirrored", replicas=2, data_fingerprint="abc123")
    spec_hash = hashlib.sha256(resolved_spec_text(loaded).encode()).hexdigest()
    assert {key: value for key, value in tags.items() if key.startswith("dlx.")} == {
        "dlx.spec_hash": spec_hash,
        "dlx.data_fingerprint": "abc123",
        "dlx.seed": "42",
        "dlx.backend": "tensorflow",
        "dlx.strategy": "mirrored",
        "dlx.replicas": "2",
        "dlx.machine": machine(),
        "dlx.version.dlx": dlx.__version__,
        "dlx.version.tensorflow": tf.__version__,
        "dlx.version.keras": keras.__version__,
        "dlx.version.mlflow": mlflow.__version__,
        "dlx.version.python": platform.python_version(),
    }
    assert tags["mlflow.runName"] == "digits-cnn"
    assert tags["mlflow.source.name"] == str(spec_file.resolve())
    assert tags["mlflow.note.content"] == loaded.spec.description
    assert tags["team"] == "vision"
    assert "mlflow.source.git.commit" not in tags


def test_the_spec_hash_follows_overrides(spec_file):
    def spec_hash(*overrides):
        loaded = load_spec(spec_file, list(overrides))
        return standard_tags(loaded, strategy="default", replicas=1)["dlx.spec_hash"]

    assert spec_hash() == spec_hash()
    assert spec_hash() != spec_hash("train.epochs=3")


def test_user_tags_do_not_override_recorded_facts(spec_file):
    text = spec_file.read_text().replace("{team: vision}", '{team: vision, dlx.seed: "7"}')
    spec_file.write_text(text)
    loaded = load_spec(spec_file)
    assert loaded.spec.tracking.tags["dlx.seed"] == "7"
    assert standard_tags(loaded, strategy="default", replicas=1)["dlx.seed"] == "42"


def test_the_resolved_spec_loads_back_to_the_same_data(spec_file, tmp_path):
    loaded = load_spec(spec_file, ["model.layers.4.dense.units=12"])
    again = tmp_path / "spec.yaml"
    again.write_text(resolved_spec_text(loaded))
    assert load_spec(again).document.data == loaded.document.data


def test_the_git_commit_branch_and_dirtiness_are_recorded_when_the_spec_is_in_a_work_tree(
    spec_file, monkeypatch
):
    folder = spec_file.parent
    for variable in ("GITHUB_HEAD_REF", "GITHUB_REF_NAME", "CI_COMMIT_REF_NAME"):
        monkeypatch.delenv(variable, raising=False)
    assert git_state(folder) == {}
    git = ["git", "-c", "user.name=dlx", "-c", "user.email=dlx@example.com"]
    subprocess.run([*git, "init", "-q", "-b", "trunk"], cwd=folder, check=True)
    assert git_state(folder) == {}  # no commit yet
    subprocess.run([*git, "add", "."], cwd=folder, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "spec"], cwd=folder, check=True)
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, check=True
    ).stdout.strip()
    tags = standard_tags(load_spec(spec_file), strategy="default", replicas=1)
    assert tags["mlflow.source.git.commit"] == head
    assert (tags["mlflow.source.git.branch"], tags["dlx.git.dirty"]) == ("trunk", "false")

    spec_file.write_text(spec_file.read_text() + "\n# edited\n")
    (folder / "untracked.txt").write_text("not part of the commit")
    assert git_state(folder)["dlx.git.dirty"] == "true"  # a tracked file changed

    # A CI job checks out a detached commit and names the branch in its environment.
    subprocess.run(["git", "checkout", "-q", "--detach"], cwd=folder, check=True)
    assert "mlflow.source.git.branch" not in git_state(folder)
    monkeypatch.setenv("GITHUB_HEAD_REF", "feature/wider")
    assert git_state(folder)["mlflow.source.git.branch"] == "feature/wider"


def test_every_dlx_tag_name_is_written_once_as_a_constant_of_dlx_track_tags():
    package = Path(dlx.__file__).parent
    literal = re.compile(r"""["']dlx\.[a-z_]+["']""")
    written = [
        f"{path.relative_to(package)}:{number}: {line.strip()}"
        for path in sorted(package.rglob("*.py"))
        if path != package / "track" / "tags.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if literal.search(line)
    ]
    assert written == []
