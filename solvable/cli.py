"""The ``solvable`` command (also ``python -m solvable``).

    solvable list [PREFIX ...] [--json]
    solvable show ID [--check] [--json]
    solvable verify [ID|PREFIX ...] [--set NAME=VALUE ...] [--backend numpy|torch] [--device cpu|cuda]
                    [--seed N] [--mutants] [--json | --csv | --format table|json|csv] [--report DIR]
    solvable falsify ID [--max-examples N] [--wide] [--seeds N] [--seed N] [--json]
    solvable falsify ID --beyond [--store PATH] [--figure PATH]     (solvable/cli_sweep.py)
    solvable sweep ID --grid NAME=LO:HI:N[:log] ... | map ID --x ... [--y ...] | export --store PATH

Exit status: 0 all passed (falsify: no counterexample), 1 some failed or raised (falsify:
counterexample found; verify --mutants: also a mutant not rejected), 2 usage error (unknown id, bad
or out-of-range value) with one line on stderr, 130 interrupted (Ctrl-C: what finished is printed).
"""

from __future__ import annotations

import argparse
import ast
import functools
import inspect
import json
import os
import sys
import textwrap
from pathlib import Path
from typing import Any, Sequence

from . import __version__
from . import all_claims, get, select
from .checks import check_int, describe_range
from .claims import (Claim, UnknownClaimError, Verdict, _jsonable, apply_overrides, describe_param_domain,
                     describe_param_range, outside_domain)

PROG = "solvable"
SEED_MAX = 2**63 - 1
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """A problem with the command line: reported in one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one clear line instead of usage + message
        raise UsageError(message)


def _int_arg(name: str, low: int, high: int | None = None):
    """An argparse type: an integer in ``[low, high]``, refused with the range in one line."""

    def parse(text: str) -> int:
        try:
            return check_int(name, text, low, high)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    parse.__name__ = name
    return parse


_DESCRIPTION = """\
Verify and falsify claims of neural-network optimization theory: each claim's closed form
(predicted) against a simulation of the model (measured), within a tolerance with a stated reason."""

_EPILOG = """\
exit status: 0 all passed (falsify: no counterexample); 1 some claim failed or raised (falsify: a
counterexample found); 2 usage error, one line on stderr; 130 interrupted by Ctrl-C (what finished
is printed first).

seeds: --seed is the run's simulation seed, handed to every claim's simulation (same seed, same
numbers on one machine). Some claims also have a parameter named seed or data_seed (the seed of
the claim's data set, e.g. a teacher or a design matrix); set it with --set seed=N like any other
parameter. See `solvable show ID` for a claim's parameters."""


def _build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    p = _Parser(prog=PROG, description=_DESCRIPTION, epilog=_EPILOG, formatter_class=fmt)
    p.add_argument("--version", action="version", version=f"{PROG} {__version__}",
                   help="print the version and exit")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")

    pl = sub.add_parser("list", help="list the registered claims", formatter_class=fmt,
                        description="List the registered claims (all, or those under the given prefixes).")
    pl.add_argument("prefixes", nargs="*", metavar="PREFIX",
                    help="claim ids or module prefixes to list, e.g. `stability` (default: all claims)")
    pl.add_argument("--json", action="store_true",
                    help="print a JSON array with each claim's parameters, ranges and domains (default: off, "
                         "a table on a wide terminal, one block per claim otherwise)")

    ps = sub.add_parser("show", help="everything about one claim", formatter_class=fmt,
                        description="Print one claim: statement, reference, parameters with their valid ranges "
                                    "and domains, mutants, and the files and functions where its derivation, "
                                    "closed form, simulation and tolerance live.")
    ps.add_argument("id", metavar="ID", help="the claim id, e.g. stability.gd_threshold")
    ps.add_argument("--check", action="store_true",
                    help="also run the check at the defaults and print the verdict and the tolerance's reason "
                         "(default: off; the reason is computed with the measurement)")
    ps.add_argument("--json", action="store_true", help="print one JSON object (default: off, text)")

    pv = sub.add_parser("verify", help="check claims: closed form against simulation", formatter_class=fmt,
                        description="Check claims: each claim's closed form against its simulation.",
                        epilog=_EPILOG)
    pv.add_argument("ids", nargs="*", metavar="ID|PREFIX",
                    help="claim ids or module prefixes, e.g. `dln gr.finite_difference_error` (default: all claims)")
    pv.add_argument("--set", dest="sets", action="append", default=[], metavar="NAME=VALUE",
                    help="set a parameter of every selected claim that has it; repeatable; an error if no selected "
                         "claim has it (default: each claim's defaults, see `solvable show ID`)")
    pv.add_argument("--backend", choices=("numpy", "torch"), default="numpy",
                    help="array backend of the simulations (default: %(default)s; a claim that supports only "
                         "one backend runs on it and its verdict says so)")
    pv.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                    help="device of the torch backend (default: %(default)s)")
    pv.add_argument("--seed", type=_int_arg("seed", 0, SEED_MAX), default=0, metavar="N",
                    help=f"the run's simulation seed, an integer in [0, 2^63-1], passed to every claim's simulation "
                         f"(default: %(default)s); not a claim's data seed, which is --set seed=N")
    pv.add_argument("--mutants", action="store_true",
                    help="also judge each claim's mutants (declared wrong formulas) on the same measurement and "
                         "print a power table; a mutant not rejected makes the exit status 1 (default: off)")
    pv.add_argument("--json", action="store_true",
                    help="print one JSON array of verdicts on stdout and nothing else there (= --format json; "
                         "default: off)")
    pv.add_argument("--csv", action="store_true",
                    help="print the verdicts as CSV, one row per claim, for spreadsheets (= --format csv; "
                         "default: off)")
    pv.add_argument("--format", choices=("table", "json", "csv"), default=None,
                    help="output format (default: table: rich on a wide terminal, a plain table with whole ids "
                         "when piped, one block per claim on a narrow terminal)")
    pv.add_argument("--report", metavar="DIR",
                    help="also write DIR/report.md with a figure per claim, DIR/figures/ and DIR/verdicts.json; "
                         "DIR must be writable, checked before any claim runs (default: no report)")

    pf = sub.add_parser("falsify", help="search a claim's domain for a counterexample (hypothesis)",
                        formatter_class=fmt, epilog=_EPILOG,
                        description="Search a claim's domain (or, with --wide, its whole valid range) for "
                                    "parameters where it fails; a counterexample found is shrunk to a small one. "
                                    "No example database is written in the current directory.")
    pf.add_argument("id", metavar="ID", help="the claim id")
    pf.add_argument("--max-examples", type=_int_arg("max-examples", 1, 10**6), default=50, metavar="N",
                    help="parameter sets to try, shrinking not counted (default: %(default)s)")
    pf.add_argument("--wide", action="store_true",
                    help="search the whole valid range (open bounds from a little inside, unbounded sides cut "
                         "at a finite reach: the output lists the intervals) as well as the domain (default: off, "
                         "the domain where the claim is asserted)")
    pf.add_argument("--seeds", type=_int_arg("seeds", 1, 10**5), default=None, metavar="N",
                    help="also draw the simulation seed from SEED .. SEED+N-1, and first check the defaults at "
                         "each of those N seeds, reporting the failure rate (default: off, the one seed --seed)")
    pf.add_argument("--backend", choices=("numpy", "torch"), default="numpy",
                    help="array backend of the simulations (default: %(default)s)")
    pf.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                    help="device of the torch backend (default: %(default)s)")
    pf.add_argument("--seed", type=_int_arg("seed", 0, SEED_MAX), default=0, metavar="N",
                    help="the run's simulation seed (the first of --seeds) (default: %(default)s); a claim's data "
                         "seed is a parameter and is searched like the others")
    pf.add_argument("--json", action="store_true", help="print one JSON object (default: off, text)")

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


def _check_writable_dir(path: str) -> None:
    """Refuse, before anything runs, a report directory that cannot be created or written."""
    d = Path(path)
    try:
        if d.exists() and not d.is_dir():
            raise UsageError(f"--report {path}: exists and is not a directory")
        d.mkdir(parents=True, exist_ok=True)
        for sub in (d / "figures", d / "report.md", d / "verdicts.json"):
            if sub.exists() and not os.access(sub, os.W_OK):
                raise UsageError(f"--report {path}: {sub} is not writable")
        probe = d / f".solvable-write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise UsageError(f"--report {path}: not writable ({e.strerror or type(e).__name__})") from None


def _param_table(claim: Claim) -> dict:
    out = {}
    for name, m in claim.params.fields().items():
        entry = {"default": _jsonable(m["default"]), "doc": m["doc"]}
        if m["choices"] is not None:
            entry["choices"] = list(m["choices"])
            if m["domain"] is not None:
                entry["domain"] = list(m["domain"])
        else:
            entry["range"] = describe_range(m["low"], m["high"], m["low_open"], m["high_open"])
            if m["domain"] is not None:
                entry["domain"] = list(m["domain"])
            entry["integer"] = m["integer"]
            entry["log"] = m["log"]
        out[name] = entry
    return out


def _width() -> int | None:
    from .report import terminal_width

    return terminal_width(sys.stdout)


def _select(patterns: Sequence[str]) -> list[Claim]:
    try:
        return select(list(patterns))
    except UnknownClaimError as e:
        raise UsageError(str(e)) from None


def _get(claim_id: str) -> Claim:
    try:
        return get(claim_id)
    except UnknownClaimError as e:
        raise UsageError(str(e)) from None


# --------------------------------------------------------------------------------------------
# list, show


def cmd_list(args: argparse.Namespace) -> int:
    claims = _select(args.prefixes) if args.prefixes else all_claims()
    if args.json:
        print(json.dumps([{"id": c.id, "statement": c.statement, "reference": c.reference,
                           "backends": list(c.backends), "bound": c.bound, "mutants": list(c.mutants),
                           "params": _param_table(c)} for c in claims], indent=2))
        return 0
    rows = [(c.id, c.statement, ", ".join(f"{k}={v['default']}" for k, v in _param_table(c).items()))
            for c in claims]
    w = _width()
    id_w = max((len(r[0]) for r in rows), default=5)
    if w is not None and w >= id_w + 90:
        from rich.console import Console
        from rich.table import Table

        t = Table(show_lines=True)
        t.add_column("claim", no_wrap=True, min_width=id_w)
        t.add_column("statement", ratio=3)
        t.add_column("parameters (defaults)", ratio=1)
        for r in rows:
            t.add_row(*r)
        Console(width=w, highlight=False).print(t)
    else:
        # one block per claim: the whole id on its own line; wrapped to a narrow terminal, one line
        # per field when piped (so that grep finds a statement)
        for cid, statement, ps in rows:
            print(cid)
            for label, text in (("", statement), ("parameters: ", ps)):
                if w is None:
                    print("  " + label + text)
                else:
                    print(textwrap.fill(label + text, width=max(w - 1, 20), initial_indent="  ",
                                        subsequent_indent="    ", break_on_hyphens=False))
            print()
    print(f"{len(claims)} claims", file=sys.stderr if w is None else sys.stdout)
    return 0


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[1]


def _where(obj: Any) -> dict:
    """``{"file", "line", "function"}`` of a function (relative to the repository when inside it)."""
    fn = inspect.unwrap(obj)
    try:
        path = Path(inspect.getsourcefile(fn) or "")
        line = inspect.getsourcelines(fn)[1]
    except (TypeError, OSError):
        return {"file": None, "line": None, "function": getattr(fn, "__qualname__", repr(fn))}
    try:
        shown = str(path.resolve().relative_to(_repo_root()))
    except ValueError:
        shown = str(path)
    name = f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', getattr(fn, '__name__', '?'))}"
    return {"file": shown, "line": line, "function": name}


def _proofs_of(claim_id: str) -> list[dict]:
    """The ``@proves`` checks of ``claim_id`` in ``proofs_check/`` (read with ``ast``, not imported)."""
    found = []
    root = _repo_root() / "proofs_check"
    for path in sorted(root.glob("check_*.py")):
        try:
            stamp = path.stat().st_mtime_ns
        except OSError:
            continue
        found += _proof_index(str(path), stamp).get(claim_id, [])
    return found


@functools.lru_cache(maxsize=256)
def _proof_index(path_str: str, stamp: int) -> dict[str, list[dict]]:
    """``{claim id: [{"file", "line", "function"}, ...]}`` of one proofs file's ``@proves`` checks,
    parsed once per version of the file (the docs build asks for every claim)."""
    path = Path(path_str)
    index: dict[str, list[dict]] = {}
    try:
        tree = ast.parse(path.read_text())
    except (OSError, SyntaxError):
        return index
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for dec in node.decorator_list:
            if not isinstance(dec, ast.Call):
                continue
            f = dec.func
            fname = f.id if isinstance(f, ast.Name) else (f.attr if isinstance(f, ast.Attribute) else "")
            if fname != "proves":
                continue
            for a in dec.args:
                if isinstance(a, ast.Constant) and isinstance(a.value, str):
                    index.setdefault(a.value, []).append({"file": str(path.relative_to(_repo_root())),
                                                          "line": node.lineno, "function": node.name})
    return index


def _notebooks_of(claim_id: str) -> list[str]:
    out = []
    for path in sorted((_repo_root() / "notebooks").glob("*.ipynb")):
        try:
            if claim_id in path.read_text():
                out.append(str(path.relative_to(_repo_root())))
        except OSError:
            continue
    return out


def _closed_forms(claim: Claim) -> list[dict]:
    import importlib

    out = []
    for name in claim.closed_forms:
        mod_name, _, fn = name.rpartition(".")
        try:
            module = importlib.import_module(f"solvable.models.{mod_name or claim.module}")
            out.append(_where(getattr(module, fn)))
        except (ImportError, AttributeError):
            out.append({"file": None, "line": None, "function": f"{name} (not found)"})
    return out


def _describe(claim: Claim) -> dict:
    return {
        "id": claim.id, "statement": claim.statement, "reference": claim.reference,
        "kind": f"{claim.bound} bound" if claim.bound else "estimate", "bound": claim.bound,
        "backends": list(claim.backends), "params": _param_table(claim),
        "mutants": list(claim.mutants), "mutant_power": claim.mutant_power,
        "sweep": claim.sweep, "sweep_values": _jsonable(list(claim.sweep_values)),
        "where": {
            "derivation": _proofs_of(claim.id),
            "closed_form": _closed_forms(claim),
            "predicted": _where(claim.predicted),
            "simulation": _where(claim.measured),
            "tolerance": _where(claim.tolerance),
            "notebooks": _notebooks_of(claim.id),
        },
    }


def _loc(w: dict) -> str:
    return f"{w['file']}:{w['line']}  {w['function']}" if w.get("file") else str(w.get("function"))


def cmd_show(args: argparse.Namespace) -> int:
    claim = _get(args.id)
    info = _describe(claim)
    verdict = None
    if args.check:
        verdict = claim.check(on_error="verdict")
    if args.json:
        if verdict is not None:
            info["verdict"] = verdict.to_json()
        print(json.dumps(info, indent=2))
        return 0
    w = _width() or 100
    fill = lambda text, indent="  ": textwrap.fill(text, width=max(w - 1, 40), initial_indent=indent,  # noqa: E731
                                                   subsequent_indent=indent, break_on_hyphens=False)
    lines = [claim.id, fill(claim.statement), "", "reference:", fill(claim.reference),
             f"kind: {info['kind']}" + ({"upper": " (measured must stay below predicted, within the tolerance)",
                                         "lower": " (measured must stay above predicted, within the tolerance)"}
                                        .get(claim.bound or "", "")),
             f"backends: {', '.join(claim.backends)}", "", "parameters:"]
    rows = [("name", "default", "valid range", "domain (asserted on)", "meaning")]
    for name, m in claim.params.fields().items():
        dom = describe_param_domain(m) or "the valid range"
        if m["log"] and m["choices"] is None:
            dom += " (log)"
        rows.append((name, repr(m["default"]), describe_param_range(m), dom, m["doc"]))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines += ["  " + "  ".join([c.ljust(wd) for c, wd in zip(r[:4], widths)] + [r[4]]).rstrip() for r in rows]
    lines += ["", f"mutants (wrong formulas the check must reject, at the defaults and on >= "
                  f"{claim.mutant_power:.0%} of the domain):"]
    lines += [f"  - {n}" for n in claim.mutants] or ["  (none declared)"]
    if claim.sweep:
        lines.append(f"sweep (report figure): {claim.sweep} over {', '.join(map(str, claim.sweep_values)) or 'its domain'}")
    wh = info["where"]
    lines += ["", "where it lives:"]
    lines += [f"  derivation:   {_loc(d)}" for d in wh["derivation"]] or ["  derivation:   (no @proves check found in proofs_check/)"]
    lines += [f"  closed form:  {_loc(d)}" for d in wh["closed_form"]] or [f"  closed form:  {_loc(wh['predicted'])}"]
    lines += [f"  simulation:   {_loc(wh['simulation'])}", f"  tolerance:    {_loc(wh['tolerance'])}"]
    lines += [f"  notebook:     {n}" for n in wh["notebooks"]]
    if verdict is None:
        lines += ["", "tolerance reason: computed with the measurement; `solvable show "
                  f"{claim.id} --check` runs the defaults and prints it."]
    else:
        lines += ["", f"at the defaults: {verdict.status} ({verdict.seconds:.2f} s)"
                  + (f": {verdict.message}" if verdict.message else ""),
                  f"  predicted {_fmt(verdict.predicted)}, measured {_fmt(verdict.measured)}, "
                  f"error {_fmt(verdict.error)}, tolerance {_fmt(verdict.tolerance)}",
                  "tolerance reason:", fill(verdict.tolerance_reason)]
    print("\n".join(lines))
    return 0 if verdict is None or verdict.passed else 1


def _fmt(x: Any) -> str:
    from .report import _fmt as f

    return f(x, 60)


# --------------------------------------------------------------------------------------------
# verify


def _output_format(args: argparse.Namespace) -> str:
    chosen = {f for f, on in (("json", args.json), ("csv", args.csv)) if on}
    if args.format:
        chosen.add(args.format)
    if len(chosen) > 1:
        raise UsageError(f"choose one output format: {', '.join(sorted(chosen))} were asked for")
    return chosen.pop() if chosen else "table"


def _emit(verdicts: list[Verdict], fmt: str, mutants: bool) -> None:
    from .report import render_power, render_table, verdicts_csv, verdicts_json

    if fmt == "json":
        print(verdicts_json(verdicts))
    elif fmt == "csv":
        sys.stdout.write(verdicts_csv(verdicts))
    else:
        render_table(verdicts)
        if mutants:
            print()
            render_power(verdicts)


def cmd_verify(args: argparse.Namespace) -> int:
    fmt = _output_format(args)
    claims = _select(args.ids)
    try:
        params = apply_overrides(claims, _parse_sets(args.sets))
    except ValueError as e:
        raise UsageError(str(e)) from None
    _check_device(args.backend, args.device)
    if args.report:
        _check_writable_dir(args.report)
    if args.sets:
        for c in claims:
            for note in outside_domain(c, params[c.id]):
                print(f"{PROG}: note: {note}", file=sys.stderr)

    verdicts: list[Verdict] = []
    progress = None
    if sys.stderr.isatty() and fmt == "table":
        from rich.console import Console
        from rich.progress import Progress

        progress = Progress(console=Console(stderr=True), transient=True)
        progress.start()
        task = progress.add_task("verifying", total=len(claims))
    interrupted = False
    try:
        for c in claims:
            if progress is not None:
                progress.update(task, description=c.id)
            v = c.check(params[c.id], backend=args.backend, device=args.device, seed=args.seed,
                        mutants=args.mutants, on_error="verdict")
            verdicts.append(v)
            if progress is not None:
                progress.advance(task)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if progress is not None:
            progress.stop()

    _emit(verdicts, fmt, args.mutants)
    if interrupted:
        print(f"{PROG}: interrupted after {len(verdicts)} of {len(claims)} claims"
              + ("; no report written" if args.report else ""), file=sys.stderr)
        return EXIT_INTERRUPTED
    if args.report:
        from .report import write_report

        try:
            out = write_report(args.report, verdicts, {c.id: c for c in claims}, params, backend=args.backend,
                               device=args.device, seed=args.seed, mutants=args.mutants)
        except KeyboardInterrupt:
            print(f"{PROG}: interrupted while writing the report in {args.report} (the verdicts above are "
                  "complete)", file=sys.stderr)
            return EXIT_INTERRUPTED
        print(f"report written to {out}", file=sys.stderr)
    ok = all(v.passed for v in verdicts)
    if args.mutants:
        ok = ok and all(m.rejected for v in verdicts for m in v.mutants.values())
    return 0 if ok else 1


# --------------------------------------------------------------------------------------------
# falsify


def _cache_dir() -> Path:
    """The user's cache directory for solvable (XDG on Linux, ~/Library/Caches on macOS)."""
    if sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    elif os.name == "nt":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "solvable"


def _print_falsify(claim: Claim, res: Any, args: argparse.Namespace) -> None:
    where = "its valid range and its domain (--wide)" if args.wide else "its domain"
    if res.defaults is not None:
        print(f"at its defaults: {res.defaults}")
        for s in sorted(res.defaults.messages):
            print(f"  seed {s}: {res.defaults.messages[s]}")
    n = res.examples
    tried = f"{n} example{'s' if n != 1 else ''} (--max-examples {res.max_examples})"
    if res.found_at is not None:
        tried += f"; the first counterexample at example {res.found_at}"
        if n > res.found_at:
            tried += f", the other {n - res.found_at} shrank it"
    print(f"{claim.id}: tried {tried}; searched over {where}:")
    width = max((len(k) for k in res.region), default=0)
    for name, region in res.region.items():
        print(f"  {name.ljust(width)}  {region}")
    if res.counterexample is None:
        print("no counterexample found" + (" before the interruption" if res.interrupted else ""))
        return
    v = res.verdict
    seed = f" (seed {res.seed})"
    print(f"counterexample{seed}: {json.dumps(res.counterexample)}")
    if v is None:
        return
    print(f"  {v.message}" if v.status == "failed" else f"  the check raised: {v.message}")
    if v.status != "error":
        print(f"  predicted {_fmt(v.predicted)}, measured {_fmt(v.measured)}, error {_fmt(v.error)} vs tolerance "
              f"{_fmt(v.tolerance)} ({v.tolerance_reason})")
    for note in outside_domain(claim, claim.params(**res.counterexample)):
        print(f"  note: {note}")


def cmd_falsify(args: argparse.Namespace) -> int:
    from .testing import Interrupted, falsify

    if getattr(args, "beyond", False):
        from .cli_sweep import cmd_falsify_beyond

        return cmd_falsify_beyond(args)

    claim = _get(args.id)
    _check_device(args.backend, args.device)
    # hypothesis keeps caches (parsed constants of the code under test) in its storage directory,
    # by default ./.hypothesis: put them under the user's cache instead of the current directory
    key = "HYPOTHESIS_STORAGE_DIRECTORY"
    before = os.environ.get(key)
    os.environ.setdefault(key, str(_cache_dir() / "hypothesis"))
    try:
        res = falsify(claim, max_examples=args.max_examples, wide=args.wide, backend=args.backend,
                      device=args.device, seed=args.seed, seeds=args.seeds)
        code = 0 if res.counterexample is None and (res.defaults is None or res.defaults.k == 0) else 1
    except Interrupted as e:
        res, code = e.partial, EXIT_INTERRUPTED
    finally:
        if before is None:
            os.environ.pop(key, None)
    if args.json:
        print(json.dumps(res.to_json(), indent=2, allow_nan=False, default=str))
    else:
        _print_falsify(claim, res, args)
    if code == EXIT_INTERRUPTED:
        print(f"{PROG}: interrupted after {res.examples} examples", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command in ("sweep", "map", "export"):
            from .cli_sweep import dispatch

            return dispatch(args)
        cmd = {"list": cmd_list, "show": cmd_show, "verify": cmd_verify, "falsify": cmd_falsify}[args.command]
        return cmd(args)
    except UsageError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    except SystemExit as e:  # --help, --version
        return e.code if isinstance(e.code, int) else 0
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `solvable list | head`: the reader left; say nothing more
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
