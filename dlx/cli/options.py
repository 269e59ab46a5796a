"""Arguments and options that several `dlx` commands share."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

SpecPath = Annotated[Path, typer.Argument(help="The spec's YAML file.", show_default=False)]
SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="KEY=VALUE",
        help="Override a spec value by its dotted path, e.g. train.epochs=5 (read as YAML).",
    ),
]


TrackingUriOption = Annotated[
    str | None,
    typer.Option(
        "--tracking-uri",
        help="The MLflow store; default: $MLFLOW_TRACKING_URI, else ./mlflow.db.",
        show_default=False,
    ),
]
