"""Run speed benchmarks and print one JSON object: {name: {ratio, target, passed, ...}}.

Usage: python benchmarks/run.py [NAME ...]

Each ``benchmarks/bench_<model>.py`` defines ``BENCHMARKS``, a dict from benchmark name to a
function that returns at least ``ratio`` (the quantity the target is stated on), ``target`` (a
string such as ">= 20" or "<= 0.7") and what was compared: sizes, backend, device, times.
"""

from __future__ import annotations

import importlib.util
import json
import operator
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
_OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}


def discover() -> dict:
    found = {}
    for path in sorted(HERE.glob("bench_*.py")):
        spec = importlib.util.spec_from_file_location(path.stem, path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        for name, fn in mod.BENCHMARKS.items():
            if name in found:
                raise ValueError(f"benchmark {name!r} is defined twice")
            found[name] = fn
    return found


def meets(ratio: float, target: str) -> bool:
    op, value = target.split()
    return _OPS[op](ratio, float(value))


def main(argv: list[str] | None = None) -> int:
    names = sys.argv[1:] if argv is None else argv
    benches = discover()
    unknown = [n for n in names if n not in benches]
    if unknown:
        print(f"unknown benchmark {unknown[0]!r}; known: {', '.join(sorted(benches))}", file=sys.stderr)
        return 2
    out = {}
    for name in names or sorted(benches):
        res = dict(benches[name]())
        res["passed"] = meets(res["ratio"], res["target"])
        out[name] = res
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
