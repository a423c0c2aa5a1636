"""The sweep commands of the ``solvable`` command line (hooked into ``solvable.cli``):

    solvable sweep ID --grid NAME=LO:HI:N[:log] [--grid ...] [--set NAME=VALUE] [--seeds K]
                   [--store PATH] [--executor local|ray] [--workers N] [--address ADDR] [--json]
    solvable map ID --x NAME=LO:HI[:log] [--y NAME=LO:HI[:log]] [--budget N] [--store PATH]
                 [--figure PATH] [--json] ...
    solvable export --store PATH --format csv|parquet|json [--output PATH] [--id ID]
    solvable falsify ID --beyond [--max-examples N] [--store PATH] [--figure PATH] [--json]

Exit status: 0 all units passed, 1 some failed (falsify: a counterexample), 2 usage error (unknown
parameter in --grid, LO >= HI, N < 2, a log grid through 0, a store that is not a solvable store, a
Ray address that does not answer) with one line on stderr, 130 interrupted (what finished is
stored; the same command resumes).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

from .cli import UsageError, _check_device
from .cli import _parse_sets as _sets
from .tools import sweep as sw

INTERRUPTED = 130


def _executor_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="NAME=VALUE",
                   help="hold a parameter at a value")
    p.add_argument("--seeds", type=int, default=1, metavar="K", help="seed replicates per point (seeds derive from keys)")
    p.add_argument("--store", default=sw.DEFAULT_STORE, metavar="PATH",
                   help=f"SQLite store of results (default {sw.DEFAULT_STORE}); a rerun computes only missing units")
    p.add_argument("--executor", choices=("local", "ray"), default="local")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="local worker processes (default: the CPUs; 0 runs in this process) or Ray CPUs")
    p.add_argument("--address", default=None, metavar="ADDR", help="Ray cluster HOST:PORT (--executor ray)")
    p.add_argument("--backend", choices=("numpy", "torch"), default="numpy")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--json", action="store_true", help="print JSON on stdout")


def add_parsers(sub: Any) -> None:
    """Add ``sweep``, ``map`` and ``export`` to the ``solvable`` subcommands."""
    ps = sub.add_parser("sweep", help="check a claim over a grid of parameters and seeds (resumable)")
    ps.add_argument("id", metavar="ID")
    ps.add_argument("--grid", action="append", default=[], metavar="NAME=LO:HI:N[:log]",
                    help="a swept parameter (repeat for a product grid); NAME=V1,V2,... lists values")
    _executor_args(ps)

    pm = sub.add_parser("map", help="map where a claim holds over one or two parameters (adaptive)")
    pm.add_argument("id", metavar="ID")
    pm.add_argument("--x", required=True, metavar="NAME=LO:HI[:log]")
    pm.add_argument("--y", default=None, metavar="NAME=LO:HI[:log]")
    pm.add_argument("--budget", type=int, default=400, metavar="N", help="most units to evaluate (default 400)")
    pm.add_argument("--initial", type=int, default=8, metavar="N", help="initial cells per axis (a power of 2)")
    pm.add_argument("--figure", default=None, metavar="PATH", help="figure file (default map-ID.png)")
    _executor_args(pm)

    pe = sub.add_parser("export", help="write a sweep store as csv, parquet or json")
    pe.add_argument("--store", required=True, metavar="PATH")
    pe.add_argument("--format", choices=("csv", "parquet", "json"), default="csv")
    pe.add_argument("--output", default=None, metavar="PATH", help="file to write (default stdout; required for parquet)")
    pe.add_argument("--id", default=None, metavar="ID", help="only this claim's units")
    for parser in (ps, pm, pe):
        _say_defaults(parser)


def add_falsify_args(pf: argparse.ArgumentParser) -> None:
    """Options of ``falsify --beyond`` (the wide search, every example checked and stored)."""
    pf.add_argument("--beyond", action="store_true",
                    help="check every example over the whole valid range and report all counterexamples on a map "
                         "(default: off)")
    pf.add_argument("--store", default=None, metavar="PATH",
                    help="--beyond: store of the checked examples (default: %(default)s, a temporary store)")
    pf.add_argument("--figure", default=None, metavar="PATH",
                    help="--beyond: figure of the examples (default: %(default)s, no figure)")
    pf.add_argument("--executor", choices=("local", "ray"), default="local",
                    help="--beyond: where the checks run (default: %(default)s)")
    pf.add_argument("--workers", type=int, default=None, metavar="N",
                    help="--beyond: local worker processes or Ray CPUs (default: %(default)s, the CPUs)")
    pf.add_argument("--address", default=None, metavar="ADDR",
                    help="--beyond: Ray cluster HOST:PORT (default: %(default)s, a local instance)")


def _say_defaults(p: argparse.ArgumentParser) -> None:
    """Every option's help states its default (as the rest of the command line does)."""
    for a in p._actions:
        if not a.option_strings or isinstance(a, argparse._HelpAction) or a.help is argparse.SUPPRESS:
            continue
        if a.help is None:
            a.help = "required (no default)" if a.required else "(default: %(default)s)"
        elif "default" not in a.help:
            a.help += " (required, no default)" if a.required else " (default: %(default)s)"


COMMANDS = ("sweep", "map", "export")


def dispatch(args: argparse.Namespace) -> int:
    return {"sweep": cmd_sweep, "map": cmd_map, "export": cmd_export}[args.command](args)


def _claim(claim_id: str) -> Any:
    from . import get
    from .claims import UnknownClaimError

    try:
        return get(claim_id)
    except UnknownClaimError as e:
        raise UsageError(str(e)) from None


def _fmt(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.4g}"
    if isinstance(x, list):
        flat = [v for v in x]
        s = "[" + ", ".join(_fmt(v) for v in flat[:3]) + (", ..." if len(flat) > 3 else "") + "]"
        return s
    return str(x)


def _jsonable(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None if math.isnan(x) else ("inf" if x > 0 else "-inf")
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_jsonable(v) for v in x]
    return x


def _interrupted(e: sw.SweepInterrupted) -> int:
    print(f"solvable: {e}", file=sys.stderr)
    return INTERRUPTED


def cmd_sweep(args: argparse.Namespace) -> int:
    claim = _claim(args.id)
    if not args.grid:
        raise UsageError("sweep needs at least one --grid NAME=LO:HI:N[:log]")
    _check_device(args.backend, args.device)
    try:
        res = sw.sweep(claim, args.grid, seeds=args.seeds, fixed=_sets(args.sets), store=args.store,
                       executor=args.executor, workers=args.workers, address=args.address, backend=args.backend,
                       device=args.device, progress=None if not args.json else "lines", frame=False)
    except sw.SweepInterrupted as e:
        return _interrupted(e)
    except sw.SweepError as e:
        raise UsageError(str(e)) from None
    if args.json:
        out = [{"key": r["key"], "id": r["claim_id"], "claim_version": r["claim_version"], "params": r["params"],
                "replicate": r["replicate"], "seed": r["seed"], "backend": r["backend"], "device": r["device"],
                "predicted": r["predicted"], "measured": r["measured"], "error": r["error"],
                "tolerance": r["tolerance"], "margin": r["margin"], "passed": r["passed"],
                "diverged": r["diverged"]} for r in res.records]
        print(json.dumps(_jsonable(out), indent=1))
    else:
        _sweep_table(res, args.seeds)
    print(f"{claim.id}: {len(res.records)} units, {res.computed} computed, {res.cached} from the store "
          f"{res.store}; {sum(r['passed'] for r in res.records)} passed", file=sys.stderr)
    return 0 if res.passed else 1


def _sweep_table(res: sw.SweepResult, seeds: int) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(show_lines=False)
    for n in res.names:
        t.add_column(n, justify="right")
    if seeds > 1:
        t.add_column("seed", justify="right")
    for col in ("passed", "predicted", "measured", "error", "tolerance"):
        t.add_column(col, justify="center" if col == "passed" else "right")
    for r in res.records:
        cells = [_fmt(r["params"][n]) for n in res.names]
        if seeds > 1:
            cells.append(str(r["replicate"]))
        ok = "[green]yes[/green]" if r["passed"] else ("[red]DIVERGED[/red]" if r["diverged"] else "[red]NO[/red]")
        cells += [ok, _fmt(r["predicted"]), _fmt(r["measured"]), _fmt(r["error"]), _fmt(r["tolerance"])]
        t.add_row(*cells)
    Console().print(t)


def cmd_map(args: argparse.Namespace) -> int:
    claim = _claim(args.id)
    _check_device(args.backend, args.device)
    try:
        x = sw.parse_axis(args.x, "--x")
        y = sw.parse_axis(args.y, "--y") if args.y else None
        res = sw.regime_map(claim, x, y, budget=args.budget, initial=args.initial, seeds=args.seeds,
                            fixed=_sets(args.sets), store=args.store, executor=args.executor, workers=args.workers,
                            address=args.address, backend=args.backend, device=args.device,
                            progress=None if not args.json else "lines")
    except sw.SweepInterrupted as e:
        return _interrupted(e)
    except sw.SweepError as e:
        raise UsageError(str(e)) from None
    figure = args.figure or f"map-{claim.id}.png"
    res.save(figure)
    if args.json:
        print(json.dumps(_jsonable(res.to_json() | {"figure": figure}), indent=1))
    else:
        print(res.summary())
        if res.y is not None and res.boundary:
            print(f"  boundary points ({x.name}, {res.y.name}), first of {len(res.boundary)}: "
                  + ", ".join(f"({b['x']:.4g}, {b['y']:.4g})" for b in res.boundary[:6]))
        print(f"figure: {figure}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    try:
        n = sw.export(args.store, args.format, args.output, args.id)
    except sw.SweepError as e:
        raise UsageError(str(e)) from None
    if args.output:
        print(f"{n} units written to {args.output}", file=sys.stderr)
    return 0


def cmd_falsify_beyond(args: argparse.Namespace) -> int:
    """``falsify ID --beyond``: every example of the wide search checked and stored; all the
    counterexamples listed, marked inside or beyond the claimed domain, and drawn on the plane of
    the claim's two main parameters."""
    claim = _claim(args.id)
    if args.max_examples < 1:
        raise UsageError(f"--max-examples {args.max_examples}: must be at least 1")
    _check_device(args.backend, args.device)
    try:
        res = sw.falsify_beyond(claim, max_examples=args.max_examples, seed=args.seed, store=args.store,
                                executor=args.executor, workers=args.workers, address=args.address,
                                backend=args.backend, device=args.device, progress=None if not args.json else "lines")
    except sw.SweepInterrupted as e:
        return _interrupted(e)
    except sw.SweepError as e:
        raise UsageError(str(e)) from None
    if args.figure:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        ax = res.plot(claim)
        ax.figure.tight_layout()
        ax.figure.savefig(args.figure, dpi=120)
        plt.close(ax.figure)
    if args.json:
        print(json.dumps(_jsonable(res.to_json() | {"figure": args.figure}), indent=1))
    else:
        bad = res.counterexamples
        n_in = sum(e["in_domain"] for e in bad)
        print(f"{claim.id}: {len(bad)} of {len(res.examples)} examples over the valid range fail "
              f"({len(bad) - n_in} beyond the claimed domain, {n_in} inside it)")
        for e in bad[:10]:
            where = "inside domain" if e["in_domain"] else "beyond domain"
            why = e["exception"] or ("diverged" if e["diverged"] else f"error/tolerance {_fmt(e['margin'])}")
            print(f"  {where}: {json.dumps(e['params'])}: {why}")
        if len(bad) > 10:
            print(f"  ... {len(bad) - 10} more (--json lists all)")
        if args.figure:
            print(f"figure: {args.figure}")
    return 0 if not res.counterexamples else 1
