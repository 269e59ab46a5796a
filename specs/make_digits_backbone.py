"""Make digits_backbone.keras, the network digits_transfer.yaml starts from.

Trains digits_backbone.yaml with dlx (recorded in a temporary MLflow store) and saves the
run's logged model beside this file:

    python specs/make_digits_backbone.py

With a store of your own, `dlx train specs/digits_backbone.yaml` and then
`backbone: {run: <its run id>, until: features}` does the same without a file.
"""

import shutil
import tempfile
from pathlib import Path

import mlflow

from dlx import api

HERE = Path(__file__).parent


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        uri = f"sqlite:///{folder}/mlflow.db"
        result = api.train(HERE / "digits_backbone.yaml", [f"tracking.uri={uri}"], live=False)
        mlflow.set_tracking_uri(uri)
        local = mlflow.artifacts.download_artifacts(f"runs:/{result.run_id}/model", dst_path=folder)
        shutil.copy(Path(local) / "data" / "model.keras", HERE / "digits_backbone.keras")
    accuracy = result.metrics["val_accuracy"]
    print(f"wrote {HERE / 'digits_backbone.keras'} (val_accuracy {accuracy:.4f})")


if __name__ == "__main__":
    main()
