"""Tasks are registered by model kind; `dlx.train.kinds` imports dlx's own, nothing imports back."""

import subprocess
import sys

import pytest

from dlx.errors import DlxError
from dlx.spec import load_spec
from tests.conftest import ROOT


@pytest.mark.slow
def test_the_tasks_module_imports_no_kind_and_kinds_registers_all_three():
    code = (
        "import sys\n"
        "import dlx.train.tasks as tasks\n"
        "print(sorted(m for m in sys.modules if m in ('dlx.train.gan', 'dlx.train.autoencoder')),"
        " sorted(tasks.TASKS))\n"
        "import dlx.train.kinds\n"
        "print(sorted(tasks.TASKS))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.splitlines() == [
        "[] ['supervised']",
        "['autoencoder', 'gan', 'supervised']",
    ]


def test_a_kind_without_a_registered_task_says_which_are_and_what_to_import(monkeypatch):
    from dlx.train.kinds import task_for
    from dlx.train.tasks import TASKS

    loaded = load_spec(ROOT / "specs" / "digits_gan.yaml")
    monkeypatch.delitem(TASKS, "gan")
    with pytest.raises(DlxError) as caught:
        task_for(loaded)
    assert str(caught.value) == (
        "no task is registered for the model kind 'gan' (registered: autoencoder, supervised); "
        "import the module that registers it with @register_task, e.g. dlx.train.kinds for "
        "dlx's own kinds"
    )


def test_a_registered_task_is_the_one_its_kind_gets(monkeypatch):
    from dlx.train.gan import GanTask
    from dlx.train.kinds import task_for
    from dlx.train.tasks import TASKS, register_task

    monkeypatch.setitem(TASKS, "gan", TASKS["gan"])

    @register_task("gan")
    class OwnGanTask(GanTask):
        pass

    assert type(task_for(load_spec(ROOT / "specs" / "digits_gan.yaml"))) is OwnGanTask
