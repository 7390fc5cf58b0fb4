"""OCRCONVERT_REQUIRE turns a skip for a missing stack into a failure (CI demands its stacks)."""
import os
import shutil
import subprocess
import sys
from pathlib import Path


def _run(tmp_path: Path, require: str) -> subprocess.CompletedProcess:
    shutil.copy(Path(__file__).parents[1] / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_needs.py").write_text("import pytest\n\n@pytest.mark.tensorrt\ndef test_needs_trt():\n    pass\n")
    env = {**os.environ, "OCRCONVERT_REQUIRE": require}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-ra", "-p", "no:cacheprovider", "-m", "tensorrt",
                           str(tmp_path)], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)


def test_missing_required_stack_fails_and_unrequired_one_skips_loudly(tmp_path):
    import importlib.util

    import pytest

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here, so no missing stack to demand")
    demanded = _run(tmp_path, "tensorrt")
    assert demanded.returncode != 0 and "OCRCONVERT_REQUIRE demands 'tensorrt'" in demanded.stdout
    optional = _run(tmp_path, "")
    assert optional.returncode == 0 and "SKIPPED [1]" in optional.stdout and "TensorRT is not installed" in optional.stdout
