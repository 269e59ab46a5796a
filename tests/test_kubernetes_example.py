"""examples/kubernetes: the manifests parse, and each pod's entrypoint makes the TF_CONFIG dlx
reads (run here with a stand-in `dlx` on the PATH; there is no cluster to deploy to)."""

import json
import os
import subprocess

import pytest
import yaml

from dlx.train.multi_worker import Cluster
from tests.conftest import ROOT

FOLDER = ROOT / "examples" / "kubernetes"
STAND_IN = '#!/bin/sh\nprintf \'%s\\n\' "$TF_CONFIG" "$*"\n'


def test_every_manifest_parses():
    kinds = [
        document["kind"]
        for path in sorted(FOLDER.glob("*.yaml"))
        for document in yaml.safe_load_all(path.read_text())
        if document and "apiVersion" in document  # digits_shards.yaml is a dlx spec
    ]
    assert {"Job", "Service", "PersistentVolumeClaim", "Deployment"} <= set(kinds)


@pytest.mark.parametrize(("index", "resume"), [(0, ""), (1, ""), (0, "0da2b30e")])
def test_each_pod_gets_its_tf_config_and_command(tmp_path, monkeypatch, index, resume):
    job = yaml.safe_load((FOLDER / "job.yaml").read_text())
    (container,) = job["spec"]["template"]["spec"]["containers"]
    stand_in = tmp_path / "dlx"
    stand_in.write_text(STAND_IN)
    stand_in.chmod(0o755)
    env = {item["name"]: item.get("value", "") for item in container["env"]}
    env.update(
        JOB_NAME="dlx-digits-x7k2p",
        JOB_COMPLETION_INDEX=str(index),
        DLX_RESUME=resume,
        PATH=f"{tmp_path}{os.pathsep}{os.environ['PATH']}",
    )
    done = subprocess.run(
        [*container["command"], container["args"][0]],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    tf_config, arguments = done.stdout.splitlines()
    assert json.loads(tf_config)["cluster"]["worker"] == [
        "dlx-digits-x7k2p-0.dlx-workers:2222",
        "dlx-digits-x7k2p-1.dlx-workers:2222",
    ]
    monkeypatch.setenv("TF_CONFIG", tf_config)
    assert Cluster.from_environment() == Cluster(
        workers=2, index=index, coordinator="dlx-digits-x7k2p-0.dlx-workers:2222"
    )
    assert arguments == (f"train --resume {resume}" if resume else "train /specs/digits_cnn.yaml")
