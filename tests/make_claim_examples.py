"""Write ``tests/claim_examples.json``: how many points each claim's property test draws.

The property test of a claim (``tests/test_claims.py::test_claim_holds_over_its_domain_and_rejects_its_mutants``)
gets a time budget rather than a fixed count: in the ``ci`` profile it draws

    n = clamp(floor(BUDGET_S / t), MIN_EXAMPLES, MAX_EXAMPLES)

points of the claim's domain, where ``t`` is the single-core CPU time of one check at the defaults
(mutants judged too, as the property test does), measured here with one BLAS/torch thread. A claim
that verifies in 0.1 s gets 40 points, one that takes 1.5 s gets 4; a claim missing from the file
gets 4. The default check stands in for the domain's draws, which may cost up to a few times more
or less.

Run it after adding a claim or changing what one costs, and commit the file::

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONPATH=$PWD python tests/make_claim_examples.py [ID|PREFIX ...]

With ids or prefixes only those entries are re-timed and the others kept.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

BUDGET_S = 6.0
MIN_EXAMPLES = 4
MAX_EXAMPLES = 40
PATH = Path(__file__).resolve().parent / "claim_examples.json"


def examples_for(seconds: float) -> int:
    """The number of points a check of ``seconds`` gets within the budget."""
    if not seconds > 0:
        return MAX_EXAMPLES
    return int(min(MAX_EXAMPLES, max(MIN_EXAMPLES, math.floor(BUDGET_S / seconds))))


def time_check(claim) -> float:
    """CPU seconds of one default check (process time: other processes on the machine do not count)."""
    t0 = time.process_time()
    claim.check(mutants=bool(claim.mutants), on_error="verdict")
    return time.process_time() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("ids", nargs="*", help="claim ids or prefixes to re-time (default: all)")
    args = ap.parse_args(argv)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    import torch

    import solvable

    torch.set_num_threads(1)
    torch.ones(2) @ torch.ones(2)  # the first torch operation pays a one-off set-up cost
    claims = solvable.select(args.ids or None)
    table = json.loads(PATH.read_text()) if (PATH.exists() and args.ids) else {}
    for c in claims:
        t = time_check(c)
        table[c.id] = examples_for(t)
        print(f"{c.id:48s} {t:7.3f} s  -> {table[c.id]:2d} examples", file=sys.stderr)
    PATH.write_text(json.dumps(dict(sorted(table.items())), indent=1) + "\n")
    print(f"wrote {PATH} ({len(table)} claims)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
