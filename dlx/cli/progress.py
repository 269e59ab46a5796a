"""How `dlx train` shows a training's progress: a live bar per epoch on a terminal, one plain
line per epoch in CI logs (`dlx.train.progress.ProgressListener`s)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dlx.train.progress import EpochProgress, ProgressListener


def format_metrics(metrics: dict[str, float]) -> str:
    return "  ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items()))


def training_progress(live: bool | None = None) -> ProgressListener:
    """A live bar on a terminal (or when `live`), else a plain line per epoch."""
    import sys

    live = sys.stdout.isatty() if live is None else live
    return LiveBars() if live else PlainLines()


class PlainLines:
    """One plain line per epoch: its number, its time and its metrics."""

    batches = False

    def run_began(self, lines: list[str]) -> None:
        for line in lines:
            print(line, flush=True)

    def training_began(self) -> None:
        pass

    def epoch_began(self, epoch: EpochProgress) -> None:
        pass

    def batch_ended(self, epoch: EpochProgress, batch: int, metrics: dict[str, float]) -> None:
        pass

    def epoch_ended(self, epoch: EpochProgress, seconds: float, metrics: dict[str, float]) -> None:
        print(f"{epoch.describe()}  {seconds:.1f}s  {format_metrics(metrics)}", flush=True)

    def training_ended(self) -> None:
        pass


class LiveBars(PlainLines):
    """A rich progress bar per epoch, moving at every batch, with live metrics."""

    batches = True

    def __init__(self) -> None:
        self._bar: Any = None
        self._task: Any = None

    def training_began(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as Bar

        self._bar = Bar(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[metrics]}"),
        )
        self._bar.start()

    def epoch_began(self, epoch: EpochProgress) -> None:
        self._task = self._bar.add_task(epoch.describe(), total=epoch.steps, metrics="")

    def batch_ended(self, epoch: EpochProgress, batch: int, metrics: dict[str, float]) -> None:
        self._bar.update(self._task, completed=batch + 1, metrics=format_metrics(metrics))

    def epoch_ended(self, epoch: EpochProgress, seconds: float, metrics: dict[str, float]) -> None:
        done = epoch.steps or 1
        shown = format_metrics(metrics)
        self._bar.update(self._task, completed=done, total=done, metrics=shown)

    def training_ended(self) -> None:
        self._bar.stop()
