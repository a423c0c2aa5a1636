"""Run speed benchmarks and print one JSON object: {name: {ratio, target, passed, ...}}.

Usage: python benchmarks/run.py [--quick] [--only-torch] [--keep-going] [NAME ...]

Each ``benchmarks/bench_<model>.py`` defines ``BENCHMARKS``, a dict from benchmark name to a
function ``fn(quick: bool = False)`` that returns at least ``ratio`` (the quantity the target is
stated on), ``target`` (a string such as ">= 20" or "<= 0.7") and what was compared: sizes, backend,
device, times. A benchmark whose baseline library is missing returns ``skipped`` (the reason) and
``ratio`` None; its ``passed`` is None.

``--quick`` runs every benchmark at tiny sizes (seconds in all): the smoke test of the suite
(tests/test_benchmarks.py) uses it so that a broken benchmark fails CI. Quick ratios are not the
benchmarks' results, and ``passed`` is reported but not meant to hold there.

``--only-torch`` keeps the benchmarks that run on torch (``TORCH_BENCHMARKS`` of each module, or
every benchmark of a module that does not say), for the GPU check.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import operator
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # the modules import the shared _timing helper
    sys.path.insert(0, str(HERE))
_OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}
REQUIRED_KEYS = ("ratio", "target", "passed", "seconds", "quick")


def _modules():
    for path in sorted(HERE.glob("bench_*.py")):
        spec = importlib.util.spec_from_file_location(path.stem, path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        yield mod


def discover(only_torch: bool = False) -> dict:
    found = {}
    for mod in _modules():
        names = getattr(mod, "TORCH_BENCHMARKS", None) if only_torch else None
        for name, fn in mod.BENCHMARKS.items():
            if name in found:
                raise ValueError(f"benchmark {name!r} is defined twice")
            if names is not None and name not in names:
                continue
            found[name] = fn
    return found


def meets(ratio: float | None, target: str) -> bool | None:
    if ratio is None or (isinstance(ratio, float) and math.isnan(ratio)):
        return None
    op, value = target.split()
    return bool(_OPS[op](ratio, float(value)))


def run_one(fn, quick: bool) -> dict:
    t0 = time.perf_counter()
    res = dict(fn(quick=quick))
    res.setdefault("quick", quick)
    res["seconds"] = round(time.perf_counter() - t0, 3)
    if res.get("skipped"):
        res["ratio"] = None
    res["passed"] = None if res.get("skipped") else meets(res["ratio"], res["target"])
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test, not a measurement")
    ap.add_argument("--only-torch", action="store_true", help="only the benchmarks that run on torch")
    ap.add_argument("--keep-going", action="store_true",
                    help="record a benchmark's exception in its JSON (key 'error') and go on; exit 1 at the end")
    args = ap.parse_args(sys.argv[1:] if argv is None else argv)
    benches = discover(args.only_torch)
    unknown = [n for n in args.names if n not in benches]
    if unknown:
        print(f"unknown benchmark {unknown[0]!r}; known: {', '.join(sorted(benches))}", file=sys.stderr)
        return 2
    out, failed = {}, False
    for name in args.names or sorted(benches):
        try:
            out[name] = run_one(benches[name], args.quick)
        except Exception as e:  # noqa: BLE001 - reported per benchmark with --keep-going
            if not args.keep_going:
                raise
            failed = True
            out[name] = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-2000:]}
    print(json.dumps(out, indent=2, default=float))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
