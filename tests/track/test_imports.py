import subprocess
import sys


def test_importing_dlx_track_imports_no_heavy_library():
    code = (
        "import sys, dlx.track\n"
        "heavy = [m for m in ('mlflow', 'tensorflow', 'keras', 'matplotlib', 'numpy')"
        " if m in sys.modules]\n"
        "print(heavy)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"


def test_the_callback_is_loaded_on_first_use():
    import dlx.track
    from dlx.track.callback import MlflowMetricsCallback

    assert dlx.track.MlflowMetricsCallback is MlflowMetricsCallback
