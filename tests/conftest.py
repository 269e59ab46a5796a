"""Shared test setup: every test runs in its own empty working directory.

dlx writes its default MLflow store (`mlflow.db`) to the working directory; running each test in
a temporary one keeps the repository clean and the tests independent.
"""

import glob
import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from dlx import proc

TESTS = Path(__file__).parent
ROOT = TESTS.parent

# A test worker runs dlx's commands and trainings in-process, as the `dlx` command's process
# does: its first model freezes what the imports left, and later collections skip it.
proc.run_as_command()


def pytest_collection_modifyitems(config, items):
    """The slow tests first, in their order, then the others: with `-n N` the longest work
    starts at once and the quick tests fill the gaps, instead of one worker finishing a
    minute-long test alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist, which may be absent
def pytest_xdist_make_scheduler(config, log):
    """With `-n N` (xdist's load balancing, the README's command): the tests of a class run in
    one worker, one after another, and so do those of classes of one name in one folder; every
    other test goes on its own, as `--dist load` spreads them. A class holds the tests that
    share a fixture made once per process (a trained run, a job, a server): in one worker it is
    made once, where spread it would be made in each. Any `--dist` but load is left to xdist.

    (`--dist loadgroup` and `xdist_group` marks would say the same, but pytest-xdist 3.8 loses
    the groups on pytest >= 9.2: pytest-dev/pytest-xdist#1386.)
    """
    if config.getvalue("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ClassesTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path, _, rest = nodeid.partition("::")
            names = rest.partition("[")[0].split("::")
            return f"{path.rpartition('/')[0]}::{names[0]}" if len(names) > 1 else nodeid

    return ClassesTogether(config, log)


@pytest.fixture(autouse=True)
def _in_tmp_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    # Tables fit the width COLUMNS gives, where a shell exports it: tests read them whole.
    monkeypatch.delenv("COLUMNS", raising=False)


@pytest.fixture
def postgres_uri() -> Iterator[str]:
    """A throwaway PostgreSQL server on 127.0.0.1, in a temporary folder, stopped afterwards."""
    found = shutil.which("initdb") or next(
        iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))), None
    )
    if found is None:
        pytest.skip("PostgreSQL's initdb is not installed (apt-get install postgresql)")
    if not any(importlib.util.find_spec(d) for d in ("psycopg", "psycopg2")):
        pytest.skip("no PostgreSQL driver: pip install 'dlx[postgres]'")
    as_user: tuple[str, ...] = ()
    folder = Path(tempfile.mkdtemp(prefix="dlx-postgres-"))
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        import pwd

        if shutil.which("runuser") is None:
            pytest.skip("running as root, and runuser is not installed to run PostgreSQL")
        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root, and there is no postgres user to run PostgreSQL")
        os.chown(folder, account.pw_uid, account.pw_gid)
        as_user = ("runuser", "-u", "postgres", "--")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    bin_dir, data = Path(found).resolve().parent, folder / "data"

    def postgres(*arguments: str) -> None:
        subprocess.run([*as_user, *arguments], check=True, capture_output=True, timeout=90)

    try:
        postgres(f"{bin_dir}/initdb", "-D", str(data), "-U", "postgres", "--auth=trust")
        options = f"-p {port} -h 127.0.0.1 -k {folder}"
        log = f"{folder}/log"
        postgres(f"{bin_dir}/pg_ctl", "-D", str(data), "-o", options, "-l", log, "-w", "start")
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*as_user, f"{bin_dir}/pg_ctl", "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(folder, ignore_errors=True)
