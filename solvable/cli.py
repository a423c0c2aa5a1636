"""The ``solvable`` command (also ``python -m solvable``).

    solvable list [--json]
    solvable verify [ID|PREFIX ...] [--set NAME=VALUE ...] [--backend numpy|torch] [--device cpu|cuda]
                    [--seed N] [--json] [--report DIR]
    solvable falsify ID [--max-examples N] [--wide] [--seed N] [--json]
    solvable falsify ID --beyond [--store PATH] [--figure PATH]     (solvable/cli_sweep.py)
    solvable sweep ID --grid NAME=LO:HI:N[:log] ... | map ID --x ... [--y ...] | export --store PATH

Exit status: 0 all passed (falsify: no counterexample), 1 some failed (falsify: counterexample
found), 2 usage error (unknown id, bad or out-of-range ``--set`` value) with one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from typing import Sequence

from . import __version__
from . import all_claims, get, select
from .claims import Claim, UnknownClaimError, Verdict, _jsonable, apply_overrides
from .checks import describe_range

PROG = "solvable"


class UsageError(Exception):
    """A problem with the command line: reported in one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one clear line instead of usage + message
        raise UsageError(message)


def _build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description="Verify and falsify claims of neural-network optimization theory.")
    p.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    pl = sub.add_parser("list", help="list the registered claims")
    pl.add_argument("--json", action="store_true", help="print a JSON array")

    pv = sub.add_parser("verify", help="check claims: closed form against simulation")
    pv.add_argument("ids", nargs="*", metavar="ID|PREFIX", help="claim ids or module prefixes (default: all)")
    pv.add_argument("--set", dest="sets", action="append", default=[], metavar="NAME=VALUE",
                    help="set a parameter of every selected claim that has it")
    pv.add_argument("--backend", choices=("numpy", "torch"), default="numpy")
    pv.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    pv.add_argument("--seed", type=int, default=0)
    pv.add_argument("--json", action="store_true", help="print one JSON array of verdicts on stdout")
    pv.add_argument("--report", metavar="DIR", help="write DIR/report.md with figures and DIR/verdicts.json")

    pf = sub.add_parser("falsify", help="search a claim's domain for a counterexample (hypothesis)")
    pf.add_argument("id", metavar="ID")
    pf.add_argument("--max-examples", type=int, default=50)
    pf.add_argument("--wide", action="store_true", help="search the whole valid range, not just the claim's domain")
    pf.add_argument("--backend", choices=("numpy", "torch"), default="numpy")
    pf.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    pf.add_argument("--seed", type=int, default=0)
    pf.add_argument("--json", action="store_true")

    from . import cli_sweep  # sweep, map, export; falsify --beyond

    cli_sweep.add_falsify_args(pf)
    cli_sweep.add_parsers(sub)
    return p


def _parse_sets(items: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise UsageError(f"--set {item!r}: expected NAME=VALUE")
        out[name.strip()] = value.strip()
    return out


def _check_device(backend: str, device: str) -> None:
    from .backend import get_backend

    try:
        get_backend(backend, device)
    except ValueError as e:
        raise UsageError(str(e)) from None


def _param_table(claim: Claim) -> dict:
    out = {}
    for name, m in claim.params.fields().items():
        entry = {"default": _jsonable(m["default"]), "doc": m["doc"]}
        if m["choices"] is not None:
            entry["choices"] = list(m["choices"])
        else:
            entry["range"] = describe_range(m["low"], m["high"], m["low_open"], m["high_open"])
            if m["domain"] is not None:
                entry["domain"] = list(m["domain"])
            entry["integer"] = m["integer"]
        out[name] = entry
    return out


def cmd_list(args: argparse.Namespace) -> int:
    claims = all_claims()
    if args.json:
        print(json.dumps([{"id": c.id, "statement": c.statement, "reference": c.reference,
                           "backends": list(c.backends), "params": _param_table(c)} for c in claims], indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    t = Table(show_lines=True)
    t.add_column("claim", no_wrap=True)
    t.add_column("statement")
    t.add_column("parameters (defaults)")
    for c in claims:
        ps = ", ".join(f"{k}={v['default']}" for k, v in _param_table(c).items())
        t.add_row(c.id, c.statement, ps)
    Console().print(t)
    return 0


def _failed_verdict(claim: Claim, params, args, exc: BaseException, seconds: float) -> Verdict:
    return Verdict(id=claim.id, statement=claim.statement, reference=claim.reference, params=params.asdict(),
                   predicted=None, measured=None, error=float("nan"), tolerance=float("nan"), passed=False,
                   backend=args.backend, device=args.device, seconds=round(seconds, 4),
                   tolerance_reason="the check raised an exception",
                   info={"exception": f"{type(exc).__name__}: {exc}",
                         "traceback": traceback.format_exc(limit=4)})


def cmd_verify(args: argparse.Namespace) -> int:
    try:
        claims = select(args.ids)
    except UnknownClaimError as e:
        raise UsageError(str(e)) from None
    try:
        params = apply_overrides(claims, _parse_sets(args.sets))
    except ValueError as e:
        raise UsageError(str(e)) from None
    _check_device(args.backend, args.device)

    verdicts: list[Verdict] = []
    show_progress = not args.json and sys.stderr.isatty()
    progress = None
    if show_progress:
        from rich.progress import Progress

        progress = Progress(transient=True)
        progress.start()
        task = progress.add_task("verifying", total=len(claims))
    try:
        for c in claims:
            if progress is not None:
                progress.update(task, description=c.id)
            t0 = time.perf_counter()
            try:
                v = c.check(params[c.id], backend=args.backend, device=args.device, seed=args.seed)
            except Exception as e:  # a crashing check is a failed claim, reported with its error
                v = _failed_verdict(c, params[c.id], args, e, time.perf_counter() - t0)
            verdicts.append(v)
            if progress is not None:
                progress.advance(task)
    finally:
        if progress is not None:
            progress.stop()

    from .report import render_table, verdicts_json, write_report

    if args.json:
        print(verdicts_json(verdicts))
    else:
        render_table(verdicts)
    if args.report:
        out = write_report(args.report, verdicts, {c.id: c for c in claims}, params, backend=args.backend,
                           device=args.device, seed=args.seed)
        print(f"report written to {out}", file=sys.stderr)
    return 0 if all(v.passed for v in verdicts) else 1


def cmd_falsify(args: argparse.Namespace) -> int:
    from .testing import falsify

    if getattr(args, "beyond", False):
        from .cli_sweep import cmd_falsify_beyond

        return cmd_falsify_beyond(args)

    try:
        claim = get(args.id)
    except UnknownClaimError as e:
        raise UsageError(str(e)) from None
    if args.max_examples < 1:
        raise UsageError(f"--max-examples {args.max_examples}: must be at least 1")
    _check_device(args.backend, args.device)
    res = falsify(claim, max_examples=args.max_examples, wide=args.wide, backend=args.backend,
                  device=args.device, seed=args.seed)
    if args.json:
        print(json.dumps(res.to_json(), indent=2))
    elif res.counterexample is None:
        where = "valid range" if args.wide else "domain"
        print(f"{claim.id}: no counterexample found in {args.max_examples} examples over its {where}")
    else:
        v = res.verdict
        print(f"{claim.id}: counterexample {json.dumps(res.counterexample)}")
        print(f"  predicted {v.predicted}, measured {v.measured}, error {v.error:.4g} > tolerance "
              f"{v.tolerance:.4g} ({v.tolerance_reason}); diverged={v.diverged}; checks={v.checks}")
    return 0 if res.counterexample is None else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command in ("sweep", "map", "export"):
            from .cli_sweep import dispatch

            return dispatch(args)
        return {"list": cmd_list, "verify": cmd_verify, "falsify": cmd_falsify}[args.command](args)
    except UsageError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
