"""GPU check (``make gpu-check``): everything CUDA-specific, on a CUDA machine, in one JSON summary.

Usage: python benchmarks/gpu_check.py [--budget SECONDS] [--out PATH]
       python benchmarks/gpu_check.py --device cpu --quick --claims rmt   (a rehearsal without a GPU)

Three steps, each in subprocesses with its own deadline inside the overall budget (default 480 s,
sized for an H200; a step that runs out is recorded as timed out and the rest still run):

1. ``gpu_tests``: the ``gpu``-marked tests (``pytest -m "gpu and not slow" tests proofs_check``),
   counted from pytest's JUnit XML (passed, failed, skipped, the failing ids).
2. ``verify``: ``solvable verify --backend torch --device cuda --json`` on every claim, one process
   per model (a hang loses one model, not all). Claims that run only on numpy fall back to it and
   say so (``backend``/``device`` of each verdict).
3. ``benchmarks``: the torch benchmarks (``benchmarks/run.py --only-torch``), one process each, at full
   size; each picks CUDA when it is available.

The summary (``gpu_check.json``) goes to ``$OUT`` when set, else ``reports/``, or to ``--out``.
Without CUDA (and without ``--device cpu``) it prints one line, writes a summary saying so, and
exits 0. Exit status otherwise: 0 when every step ran to the end and nothing failed, 1 if not.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env.setdefault("MPLBACKEND", "Agg")
    env.setdefault("HYPOTHESIS_PROFILE", "ci")
    return env


def _run(cmd: list[str], timeout: float) -> dict:
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=max(timeout, 1))
        return {"returncode": p.returncode, "stdout": p.stdout, "stderr": p.stderr,
                "seconds": round(time.perf_counter() - t0, 2), "timed_out": False}
    except subprocess.TimeoutExpired as e:
        def text(x):
            return x.decode(errors="replace") if isinstance(x, bytes) else (x or "")
        return {"returncode": None, "stdout": text(e.stdout), "stderr": text(e.stderr),
                "seconds": round(time.perf_counter() - t0, 2), "timed_out": True}


class Clock:
    def __init__(self, budget: float):
        self.end = time.perf_counter() + budget

    def left(self) -> float:
        return self.end - time.perf_counter()


def gpu_tests(clock: Clock, cap: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "junit.xml"
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "gpu and not slow",
               f"--junitxml={xml}", "tests", "proofs_check"]
        try:
            import xdist  # noqa: F401

            cmd += ["-n", "0"]
        except ImportError:
            pass
        r = _run(cmd, min(cap, clock.left()))
        out = {"command": " ".join(cmd[1:]), "seconds": r["seconds"], "timed_out": r["timed_out"],
               "returncode": r["returncode"]}
        if xml.exists():
            cases = ET.parse(xml).getroot().iter("testcase")
            counts = {"passed": 0, "failed": 0, "skipped": 0}
            failing = []
            for c in cases:
                name = f"{c.get('classname')}::{c.get('name')}"
                if c.find("failure") is not None or c.find("error") is not None:
                    counts["failed"] += 1
                    failing.append(name)
                elif c.find("skipped") is not None:
                    counts["skipped"] += 1
                else:
                    counts["passed"] += 1
            out.update(counts, failing=failing)
        # pytest exits 5 when nothing is selected: not a failure of the check
        out["ok"] = (not r["timed_out"]) and r["returncode"] in (0, 5)
        if not out["ok"]:
            out["tail"] = (r["stdout"][-3000:] + r["stderr"][-2000:])
        return out


def verify(clock: Clock, cap: float, device: str, prefixes: list[str] | None) -> dict:
    sys.path.insert(0, str(ROOT))
    import solvable

    models = prefixes or sorted({c.id.split(".")[0] for c in solvable.all_claims()})
    deadline = time.perf_counter() + min(cap, clock.left())
    verdicts, runs = [], {}
    for i, m in enumerate(models):
        share = (deadline - time.perf_counter()) / (len(models) - i)  # leftover time flows to later models
        cmd = [sys.executable, "-m", "solvable", "verify", m, "--backend", "torch", "--device", device, "--json"]
        r = _run(cmd, max(share, 5) if i < len(models) - 1 else deadline - time.perf_counter())
        try:
            got = json.loads(r["stdout"])
        except json.JSONDecodeError:
            got = []
        verdicts += got
        runs[m] = {"seconds": r["seconds"], "timed_out": r["timed_out"], "returncode": r["returncode"],
                   "claims": len(got)}
        if not got:
            runs[m]["tail"] = r["stderr"][-2000:]
    slim = [{k: v.get(k) for k in ("id", "passed", "error", "tolerance", "backend", "device", "seconds", "diverged",
                                   "checks")} for v in verdicts]
    on_device = [v for v in slim if v["device"] and v["device"].startswith(device)]
    failed = [v["id"] for v in slim if not v["passed"]]
    ok = not failed and all(not r["timed_out"] and r["claims"] for r in runs.values())
    return {"ok": ok, "claims": len(slim), "passed": sum(bool(v["passed"]) for v in slim), "failed": failed,
            f"ran_on_{device}": len(on_device),
            "fell_back_to_numpy": [v["id"] for v in slim if v["backend"] == "numpy"],
            "per_model": runs, "verdicts": slim}


def benchmarks(clock: Clock, quick: bool) -> dict:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import run as bench_run

    names = sorted(bench_run.discover(only_torch=True))
    results = {}
    for i, name in enumerate(names):
        left = clock.left()
        if left < 5:
            results[name] = {"error": "not run: the budget was spent"}
            continue
        cmd = [sys.executable, str(ROOT / "benchmarks" / "run.py"), name, "--keep-going"]
        cmd += ["--quick"] if quick else []
        r = _run(cmd, left / (len(names) - i) * 2 if i < len(names) - 1 else left)
        try:
            results[name] = json.loads(r["stdout"])[name]
        except (json.JSONDecodeError, KeyError):
            results[name] = {"error": "timed out" if r["timed_out"] else "no JSON", "tail": r["stderr"][-2000:]}
        results[name]["wall_seconds"] = r["seconds"]
    ok = all("error" not in v for v in results.values())
    return {"ok": ok, "benchmarks": results,
            "summary": {k: {"ratio": v.get("ratio"), "target": v.get("target"), "passed": v.get("passed"),
                            "device": v.get("device")} for k, v in results.items() if "error" not in v}}


def _machine(device: str) -> dict:
    import torch

    out = {"python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform(),
           "cpu_count": os.cpu_count(), "device": device}
    if device == "cuda":
        out.update(gpu=torch.cuda.get_device_name(0), cuda=torch.version.cuda,
                   gpu_memory_gb=round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=480.0, help="seconds for all three steps (default 480)")
    ap.add_argument("--out", help="where to write the JSON summary (default $OUT/gpu_check.json or reports/)")
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                    help="cpu: a rehearsal of the script's plumbing on a machine without a GPU")
    ap.add_argument("--quick", action="store_true", help="benchmarks at tiny sizes (rehearsal)")
    ap.add_argument("--claims", nargs="*", help="verify only these model prefixes (rehearsal)")
    args = ap.parse_args(argv)
    out_path = Path(args.out) if args.out else (Path(os.environ["OUT"]) if os.environ.get("OUT") else ROOT / "reports")
    if out_path.suffix != ".json":
        out_path = out_path / "gpu_check.json"
    out_path.parent.mkdir(parents=True, exist_ok=True)

    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        msg = "gpu-check: CUDA is not available on this machine; nothing to check (skipped)"
        print(msg)
        out_path.write_text(json.dumps({"skipped": msg, "machine": _machine("cpu")}, indent=2))
        return 0
    t0 = time.perf_counter()
    clock = Clock(args.budget)
    summary: dict = {"machine": _machine(args.device), "budget_seconds": args.budget}
    # shares of the budget: tests ~25%, verify ~40%, benchmarks the rest (each may end early)
    summary["gpu_tests"] = gpu_tests(clock, 0.25 * args.budget)
    print(f"gpu-check: gpu tests done ({summary['gpu_tests'].get('passed', 0)} passed), {clock.left():.0f} s left",
          file=sys.stderr)
    summary["verify"] = verify(clock, max(0.0, clock.left() - 0.35 * args.budget), args.device, args.claims)
    print(f"gpu-check: verify done ({summary['verify']['passed']}/{summary['verify']['claims']} passed), "
          f"{clock.left():.0f} s left", file=sys.stderr)
    summary["benchmarks"] = benchmarks(clock, args.quick)
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    summary["ok"] = all(summary[k]["ok"] for k in ("gpu_tests", "verify", "benchmarks"))
    out_path.write_text(json.dumps(summary, indent=2, default=float))
    print(json.dumps({"ok": summary["ok"], "seconds": summary["seconds"], "summary": str(out_path),
                      "gpu_tests": {k: summary["gpu_tests"].get(k) for k in ("passed", "failed", "skipped")},
                      "verify": {k: summary["verify"][k] for k in ("claims", "passed", "failed")},
                      "benchmarks": summary["benchmarks"]["summary"]}, indent=2, default=float))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
