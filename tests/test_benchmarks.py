"""Smoke test of benchmarks/: every benchmark runs at tiny sizes (``run.py --quick``) in one
subprocess, returns the JSON keys the runner promises, and raises nothing. A benchmark whose
baseline library is missing (PyHessian, curvlinops: the ``bench`` extra) reports ``skipped`` with
its reason instead of failing. The quick ratios are not the benchmarks' results and are not judged.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "benchmarks" / "run.py"


def _runner():
    spec = importlib.util.spec_from_file_location("bench_run", RUN)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def quick_results():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, str(RUN), "--quick", "--keep-going"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=240)
    try:
        out = json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"run.py --quick printed no JSON (exit {proc.returncode}):\n{proc.stdout[-2000:]}\n"
                    f"{proc.stderr[-4000:]}")
    return proc, out


def test_every_benchmark_runs_without_an_exception(quick_results):
    proc, out = quick_results
    errors = {k: v["traceback"] for k, v in out.items() if "error" in v}
    assert not errors, "\n\n".join(f"{k}:\n{tb}" for k, tb in errors.items())
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert set(out) == set(_runner().discover()), "run.py ran a different set of benchmarks than it found"


def test_every_benchmark_reports_the_promised_keys(quick_results):
    _, out = quick_results
    meets = _runner().meets
    for name, res in out.items():
        missing = [k for k in _runner().REQUIRED_KEYS if k not in res]
        assert not missing, f"{name} lacks {missing}"
        assert res["quick"] is True, name
        op, value = res["target"].split()
        assert op in (">=", "<=", ">", "<") and math.isfinite(float(value)), (name, res["target"])
        if res.get("skipped"):
            assert res["ratio"] is None and res["passed"] is None, name
            assert isinstance(res["skipped"], str) and "not installed" in res["skipped"], name
        else:
            assert isinstance(res["ratio"], (int, float)) and math.isfinite(res["ratio"]) and res["ratio"] > 0, name
            assert res["passed"] is meets(res["ratio"], res["target"]), name


def test_missing_baseline_is_reported_as_skipped(quick_results):
    _, out = quick_results
    if importlib.util.find_spec("pyhessian") is None:
        assert "pyhessian" in out["sharpness_vs_pyhessian"]["skipped"]
    if importlib.util.find_spec("curvlinops") is None:
        assert "curvlinops" in out["lanczos_vs_arpack"]["curvlinops_skipped"]


def test_runner_rejects_unknown_names_and_judges_targets():
    run = _runner()
    assert run.main(["no_such_benchmark"]) == 2
    assert run.meets(21.0, ">= 20") is True and run.meets(0.8, "<= 0.7") is False
    assert run.meets(None, ">= 3") is None and run.meets(float("nan"), ">= 3") is None


@pytest.mark.skipif(__import__("solvable.backend", fromlist=["cuda_available"]).cuda_available(),
                    reason="CUDA is available: make gpu-check runs the real thing")
def test_gpu_check_skips_cleanly_without_cuda(tmp_path):
    env = dict(os.environ, OUT=str(tmp_path), PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "CUDA is not available" in proc.stdout, proc.stderr[-2000:]
    assert "skipped" in json.loads((tmp_path / "gpu_check.json").read_text())
