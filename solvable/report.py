"""Verdicts for people: a terminal table, JSON, CSV, and a Markdown report with a figure per claim.

Claim ids are never cut. On a terminal wide enough the verdicts print as a rich table; when the
output is not a terminal (piped, redirected, captured) as a plain compact table whose first column
is the whole id; on a terminal too narrow for the table as one block per claim.

The report's figure for a claim plots ``predicted`` and ``measured`` over a sweep of the claim's
main parameter (``Claim.sweep``; at least :data:`MIN_SWEEP_POINTS` values, filled in between the
ends of ``Claim.sweep_values``), the other parameters held at the values of the run, with the
tolerance band around the prediction, the measurement's standard error as error bars, and a lower
panel of ``error / tolerance`` (the claim holds below 1; with ``mutants``, each mutant's margin
too). A claim without a sweep gets a predicted-vs-measured scatter of its verdict. Bound claims
(``Claim.bound``) are labelled as bounds in the tables and figures.
"""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from .claims import Claim, Params, Verdict, _within

__all__ = ["Verdicts", "render_table", "render_power", "format_compact", "format_blocks", "format_power",
           "verdicts_json", "verdicts_csv", "write_report", "sweep", "sweep_points", "tolerance_band",
           "MIN_SWEEP_POINTS"]

# A curve read from fewer points is a polygon; 6 shows its shape at ~6x the cost of one check.
MIN_SWEEP_POINTS = 6


def _fmt(x: Any, width: int = 28) -> str:
    if x is None:
        return "-"
    if isinstance(x, (list, tuple)):
        try:
            flat = np.asarray(x, dtype=float).ravel()
        except (TypeError, ValueError):
            s = str(x)
            return s if len(s) <= width else s[: width - 1] + "…"
        if flat.size <= 3:
            s = "[" + ", ".join(f"{v:.4g}" for v in flat) + "]"
            if len(s) <= width:
                return s
        # a preview that keeps the count whole: the first entries and how many there are
        s = f"[{flat[0]:.4g}, {flat[1]:.4g}, … ({flat.size})]" if flat.size > 1 else f"[{flat[0]:.4g}]"
        return s if len(s) <= width else f"[{flat[0]:.4g}, … ({flat.size})]"
    if isinstance(x, float):
        return "-" if math.isnan(x) else f"{x:.4g}"
    return str(x)


def kind(v: Verdict) -> str:
    """``"estimate"``, or ``"upper bound"`` / ``"lower bound"`` for a bound claim."""
    return f"{v.bound} bound" if v.bound else "estimate"


def _status(v: Verdict) -> str:
    if v.status == "passed":
        return "passed"
    if v.status == "error":
        return "ERROR"
    return "DIVERGED" if v.diverged else "FAILED"


def _summary_line(verdicts: Sequence[Verdict]) -> str:
    n_ok = sum(v.status == "passed" for v in verdicts)
    n_err = sum(v.status == "error" for v in verdicts)
    n_fail = len(verdicts) - n_ok - n_err
    return f"{n_ok} passed, {n_fail} failed, {n_err} error{'' if n_err == 1 else 's'}"


_COLUMNS = ("claim", "status", "kind", "predicted", "measured", "error", "tolerance", "margin", "s", "reason")


def _rows(verdicts: Sequence[Verdict]) -> list[tuple[str, ...]]:
    return [(v.id, _status(v), kind(v), _fmt(v.predicted), _fmt(v.measured), _fmt(v.error), _fmt(v.tolerance),
             _fmt(v.margin), f"{v.seconds:.2f}", v.message) for v in verdicts]


def _plain_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns, nothing cut; the last column is not padded."""
    allrows = [tuple(header)] + [tuple(r) for r in rows]
    widths = [max(len(r[i]) for r in allrows) for i in range(len(header))]
    return "\n".join("  ".join([c.ljust(w) for c, w in zip(r[:-1], widths[:-1])] + [r[-1]]).rstrip()
                     for r in allrows)


def format_compact(verdicts: Sequence[Verdict]) -> str:
    """The plain table: one line per claim, the whole id first, the reason of a failure last."""
    return _plain_table(_COLUMNS, _rows(verdicts)) + "\n" + _summary_line(verdicts)


def format_blocks(verdicts: Sequence[Verdict], width: int = 80) -> str:
    """One block per claim (for narrow terminals): the id on its own line, then the numbers."""
    import textwrap

    out = []
    for v in verdicts:
        out.append(f"{v.id}")
        out.append(f"  {_status(v)} ({kind(v)}, {v.seconds:.2f} s)")
        if v.status != "error":
            out.append(f"  predicted {_fmt(v.predicted)}  measured {_fmt(v.measured)}")
            out.append(f"  error {_fmt(v.error)}  tolerance {_fmt(v.tolerance)}  margin {_fmt(v.margin)}")
        if v.message:
            out.extend(textwrap.wrap(v.message, width=max(width, 20), initial_indent="  ",
                                     subsequent_indent="    ", break_on_hyphens=False))
        out.append("")
    return "\n".join(out) + _summary_line(verdicts)


def _needed_width(header: Sequence[str], rows: Sequence[Sequence[str]], last_min: int = 24) -> int:
    """Width of a rich table whose columns but the last are never wrapped (borders included)."""
    cols = list(zip(*([tuple(header)] + [tuple(r) for r in rows])))
    fixed = sum(max(len(c) for c in col) for col in cols[:-1])
    return fixed + last_min + 3 * len(header) + 1


def terminal_width(stream: Any = None) -> int | None:
    """The width of ``stream`` (stdout by default) when it is a terminal, else None."""
    stream = stream or sys.stdout
    try:
        if not stream.isatty():
            return None
    except (AttributeError, ValueError):
        return None
    return shutil.get_terminal_size((80, 24)).columns


def _rich_table(header: Sequence[str], rows: Sequence[Sequence[str]], width: int, styles: dict | None = None):
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    t = Table(show_lines=False)
    for i, col in enumerate(header):
        last = i == len(header) - 1
        t.add_column(col, no_wrap=not last, overflow="fold",
                     min_width=max(len(r[i]) for r in rows) if (i == 0 and rows) else None,
                     justify="right" if col in ("predicted", "measured", "error", "tolerance", "margin", "s") else "left")
    for r in rows:
        cells = [Text(c, style=(styles or {}).get((i, c), "")) for i, c in enumerate(r)]
        t.add_row(*cells)
    return Console(width=width, highlight=False), t


_STATUS_STYLE = {(1, "passed"): "green", (1, "FAILED"): "red", (1, "DIVERGED"): "red", (1, "ERROR"): "magenta"}


def render_table(verdicts: Sequence[Verdict], console: Any = None, *, width: int | None | str = "auto",
                 file: Any = None) -> None:
    """Print the verdicts: a rich table on a terminal wide enough for it, a plain compact table
    when the output is not a terminal, one block per claim on a narrow terminal. Ids are never cut.

    ``width="auto"`` reads the terminal (None: not a terminal); ``console`` forces the rich table.
    """
    file = file or sys.stdout
    rows = _rows(verdicts)
    if console is not None:
        _, t = _rich_table(_COLUMNS, rows, console.width, _STATUS_STYLE)
        console.print(t)
        console.print(_summary_line(verdicts))
        return
    w = terminal_width(file) if width == "auto" else width
    if w is None:
        print(format_compact(verdicts), file=file)
    elif w < _needed_width(_COLUMNS, rows):
        print(format_blocks(verdicts, w), file=file)
    else:
        con, t = _rich_table(_COLUMNS, rows, w, _STATUS_STYLE)
        con.file = file
        con.print(t)
        con.print(_summary_line(verdicts))


_POWER_COLUMNS = ("claim", "mutant", "error", "tolerance", "margin", "rejected")


def _power_rows(verdicts: Sequence[Verdict]) -> list[tuple[str, ...]]:
    rows = []
    for v in verdicts:
        for name, m in v.mutants.items():
            rows.append((v.id, name, _fmt(m.error), _fmt(v.tolerance), _fmt(m.margin),
                         "yes" if m.rejected else "NO"))
    return rows


def _power_summary(verdicts: Sequence[Verdict]) -> str:
    judged = [(v.id, n, m) for v in verdicts for n, m in v.mutants.items()]
    kept = [f"{i}: {n}" for i, n, m in judged if not m.rejected]
    no_mutants = [v.id for v in verdicts if v.status != "error" and not v.mutants]
    s = f"power: {len(judged) - len(kept)} of {len(judged)} mutants rejected"
    if kept:
        s += "; not rejected: " + "; ".join(kept)
    if no_mutants:
        s += "; claims without mutants: " + ", ".join(no_mutants)
    return s


def format_power(verdicts: Sequence[Verdict]) -> str:
    """The power table: each declared mutant judged on its claim's measurement (margin above 1
    rejects it), one line per mutant, the whole claim id first."""
    rows = _power_rows(verdicts)
    return (_plain_table(_POWER_COLUMNS, rows) + "\n" if rows else "") + _power_summary(verdicts)


def render_power(verdicts: Sequence[Verdict], *, width: int | None | str = "auto", file: Any = None) -> None:
    """Print the power table (rich on a wide terminal, plain otherwise; ids never cut)."""
    file = file or sys.stdout
    rows = _power_rows(verdicts)
    w = terminal_width(file) if width == "auto" else width
    if w is None or not rows or w < _needed_width(_POWER_COLUMNS, rows, last_min=8):
        print(format_power(verdicts), file=file)
        return
    con, t = _rich_table(_POWER_COLUMNS, rows, w, {(5, "yes"): "green", (5, "NO"): "red"})
    con.file = file
    con.print(t)
    con.print(_power_summary(verdicts))


class Verdicts(list):
    """A list of :class:`~solvable.claims.Verdict` that prints as a table (terminal and Jupyter)."""

    @property
    def passed(self) -> bool:
        return all(v.passed for v in self)

    def to_json(self) -> list[dict]:
        return [v.to_json() for v in self]

    def __str__(self) -> str:
        return format_compact(self)

    def _repr_html_(self) -> str:
        import html

        head = "".join(f"<th>{h}</th>" for h in ("id", "status", "kind", "predicted", "measured", "error",
                                                  "tolerance", "why that tolerance", "reason"))
        body = []
        for v in self:
            colour = {"passed": "#2a7", "failed": "#c33", "error": "#a3a"}[v.status]
            body.append(
                f"<tr><td><code>{v.id}</code></td><td style='color:{colour}'>{_status(v)}</td><td>{kind(v)}</td>"
                f"<td>{_fmt(v.predicted, 40)}</td><td>{_fmt(v.measured, 40)}</td><td>{_fmt(v.error)}</td>"
                f"<td>{_fmt(v.tolerance)}</td><td>{html.escape(v.tolerance_reason)}</td>"
                f"<td>{html.escape(v.message)}</td></tr>")
        return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def verdicts_json(verdicts: Iterable[Verdict]) -> str:
    return json.dumps([v.to_json() for v in verdicts], indent=2, allow_nan=False)


CSV_COLUMNS = ("id", "status", "passed", "kind", "predicted", "measured", "error", "tolerance", "margin", "stderr",
               "diverged", "diverged_step", "seconds", "backend", "device", "message", "tolerance_reason", "params",
               "mutants_rejected")


def verdicts_csv(verdicts: Iterable[Verdict]) -> str:
    """One row per claim (columns :data:`CSV_COLUMNS`): numbers as numbers, arrays and params as
    JSON text, a missing number (an error verdict) empty; ``mutants_rejected`` is ``k/n`` when the
    mutants were judged."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for v in verdicts:
        d = v.to_json()

        def cell(x: Any) -> Any:
            if x is None:
                return ""
            if isinstance(x, (list, dict)):
                return json.dumps(x)
            return x

        rej = f"{sum(m.rejected for m in v.mutants.values())}/{len(v.mutants)}" if v.mutants else ""
        w.writerow([d["id"], d["status"], d["passed"], kind(v), cell(d["predicted"]), cell(d["measured"]),
                    cell(d["error"]), cell(d["tolerance"]), cell(d["margin"]), cell(d["stderr"]), d["diverged"],
                    cell(d["diverged_step"]), d["seconds"], d["backend"], d["device"], d["message"],
                    d["tolerance_reason"], json.dumps(d["params"]), rej])
    return buf.getvalue()


# --------------------------------------------------------------------------------------------
# Sweeps and figures


def _summary(claim: Claim, value: Any) -> np.ndarray:
    """The number(s) plotted for a predicted or measured value."""
    if claim.summary is not None:
        return np.atleast_1d(np.asarray(claim.summary(value), dtype=float))
    arr = np.atleast_1d(np.asarray(value, dtype=float)).ravel()
    return arr if arr.size <= 6 else np.array([np.linalg.norm(arr)])


def sweep_points(claim: Claim, n_min: int = MIN_SWEEP_POINTS) -> list:
    """The values of the claim's sweep parameter that the report's figure checks: the declared
    ``sweep_values`` (the domain's ends where it declares none), and, where they are fewer than
    ``n_min``, points filled into the gaps between them (in proportion to each gap, on a log scale
    when the parameter is log-scaled or the ends are positive and a decade or more apart; integers
    rounded, and an integer sweep with too few values between its ends reaches towards the
    domain's ends; a domain with fewer than ``n_min`` integers gives them all)."""
    if claim.sweep is None:
        return []
    m = claim.params.fields()[claim.sweep]
    values = list(claim.sweep_values)
    if not values and m["domain"] is not None and m["choices"] is None:
        values = [m["domain"][0], m["domain"][1]]
    if m["choices"] is not None or len(values) >= n_min or len(values) < 2:
        return values
    vals = sorted({float(v) for v in values})
    if len(vals) < 2:
        return values
    lo, hi = vals[0], vals[-1]
    if m["integer"] and hi - lo + 1 < n_min and m["domain"] is not None:
        # too few integers between the declared ends: reach towards the domain's ends as well
        d_lo, d_hi = int(m["domain"][0]), int(m["domain"][1])
        while hi - lo + 1 < n_min and (lo > d_lo or hi < d_hi):
            lo, hi = (lo - 1 if lo > d_lo else lo), (hi + 1 if hi < d_hi else hi)
        vals = sorted(set(vals) | {lo, hi})
    if m["integer"] and hi - lo + 1 <= n_min:
        return list(range(int(lo), int(hi) + 1))
    geometric = lo > 0 and (m["log"] or hi / lo >= 10)
    fwd = np.log if geometric else (lambda x: np.asarray(x, dtype=float))
    inv = np.exp if geometric else (lambda x: np.asarray(x, dtype=float))
    t = fwd(np.array(vals))
    for extra in range(max(n_min - len(vals), 0), 4 * n_min):
        # the extra points go into the gaps between declared values, in proportion to each gap's
        # length (on a log scale for a geometric sweep): the declared values stay, evenly filled
        gaps = np.diff(t)
        share = extra * gaps / gaps.sum()
        k = np.floor(share).astype(int)
        for i in np.argsort(-(share - k))[: extra - int(k.sum())]:
            k[i] += 1
        xs = [vals[0]]
        for i, n in enumerate(k):  # declared values exactly, the filled ones between them
            xs.extend(float(x) for x in inv(np.linspace(t[i], t[i + 1], n + 2)[1:-1]))
            xs.append(vals[i + 1])
        out = sorted({int(round(x)) for x in xs}) if m["integer"] else [float(x) for x in xs]
        if len(out) >= n_min:
            return out
    return out


def sweep(claim: Claim, base: Params, values: Sequence[Any] | None = None, *, backend: str = "numpy",
          device: str = "cpu", seed: int = 0, mutants: bool = False) -> list[tuple[Any, Verdict | None, str]]:
    """Check ``claim`` at each value of its sweep parameter; ``(value, verdict or None, note)``.

    ``values`` defaults to :func:`sweep_points`; a value the parameters refuse gives ``None`` and
    the reason; a check that raises gives a verdict of status ``"error"``.
    """
    if claim.sweep is None:
        raise ValueError(f"claim {claim.id} has no sweep parameter")
    out = []
    for val in (sweep_points(claim) if values is None else values):
        try:
            p = base.replace(**{claim.sweep: val})
        except ValueError as e:
            out.append((val, None, str(e)))
            continue
        out.append((val, claim.check(p, backend=backend, device=device, seed=seed, mutants=mutants,
                                     on_error="verdict"), ""))
    return out


def _edge(ok: Callable[[float], bool], p: float, direction: int, scale: float) -> float:
    """The farthest ``y`` from ``p`` in ``direction`` with ``ok(y)``: doubling from ``1e-9 scale``,
    then bisection; ``inf`` when it is still ok ``2^60 scale`` away (a one-sided allowance: a bound)."""
    d = scale * 1e-9
    good = p
    while True:
        y = p + direction * d
        if not ok(y):
            break
        good, d = y, 2 * d
        if d > scale * 2.0 ** 60:
            return direction * math.inf
    bad = p + direction * d
    for _ in range(60):
        mid = 0.5 * (good + bad)
        if ok(mid):
            good = mid
        else:
            bad = mid
    return good


def tolerance_band(claim: Claim, predicted: Any, tolerance: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """``(low, high)`` per entry of ``predicted``: the values each entry of the measurement may take,
    the others held at the prediction, for the claim's ``error`` to stay within ``tolerance``
    (found numerically, so it holds for any error function; infinite on the free side of a
    bound). None where the plotted numbers are a summary, or there are more than 6 entries."""
    if predicted is None or claim.summary is not None:
        return None
    try:
        pred = np.asarray(predicted, dtype=float)
    except (TypeError, ValueError):
        return None
    flat = pred.ravel()
    if flat.size == 0 or flat.size > 6 or not np.all(np.isfinite(flat)):
        return None
    tol = np.asarray(tolerance, dtype=float)
    if not np.all(np.isfinite(tol) | np.isinf(tol)):
        return None

    def within(vals: np.ndarray) -> bool:
        try:
            with np.errstate(all="ignore"):
                return _within(claim.error(pred, vals.reshape(pred.shape)), tol)
        except Exception:
            return False

    if not within(flat.copy()):
        return None
    finite_tol = np.abs(tol[np.isfinite(tol)]) if tol.size else np.array([])
    scale = max(float(np.max(np.abs(flat))), float(finite_tol.max()) if finite_tol.size else 0.0, 1e-12)
    lo, hi = np.empty_like(flat), np.empty_like(flat)
    for j in range(flat.size):
        def ok(y: float, j: int = j) -> bool:
            v = flat.copy()
            v[j] = y
            return within(v)

        lo[j], hi[j] = _edge(ok, flat[j], -1, scale), _edge(ok, flat[j], +1, scale)
    return lo, hi


def _errbars(claim: Claim, v: Verdict) -> np.ndarray | None:
    """The measurement's standard error per plotted entry, where it maps onto them."""
    if v.stderr is None or claim.summary is not None or v.measured is None:
        return None
    try:
        se = np.atleast_1d(np.asarray(v.stderr, dtype=float)).ravel()
        val = np.atleast_1d(np.asarray(v.measured, dtype=float)).ravel()
    except (TypeError, ValueError):
        return None
    if val.size > 6 or se.size != val.size:
        return None
    return np.where(np.isfinite(se), se, np.nan)


def _fill_bands(ax: Any, xs: np.ndarray, fills: list) -> None:
    """Shade each tolerance band; an infinite side (a bound's free side) runs to the axis edge."""
    if not fills:
        return
    ax.autoscale_view()
    y0, y1 = ax.get_ylim()
    lo_all = [f[0][np.isfinite(f[0])] for f in fills]
    hi_all = [f[1][np.isfinite(f[1])] for f in fills]
    y0 = min([y0] + [float(v.min()) for v in lo_all if v.size])
    y1 = max([y1] + [float(v.max()) for v in hi_all if v.size])
    for lo, hi, col, label in fills:
        ax.fill_between(xs, np.where(np.isfinite(lo), lo, y0), np.where(np.isfinite(hi), hi, y1), color=col,
                        alpha=0.15, lw=0, label=label)
    ax.set_ylim(y0, y1)


def _bound_label(claim: Claim) -> str:
    return {"upper": "upper bound: measured must stay below it",
            "lower": "lower bound: measured must stay above it"}.get(claim.bound or "", "")


def _finite_margin(x: Any) -> float:
    try:
        f = float(x)
    except (TypeError, ValueError):
        return math.nan
    return f if math.isfinite(f) else math.nan


def _figure(claim: Claim, verdict: Verdict, base: Params, path: Path, run: dict, mutants: bool = False) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, axm) = plt.subplots(2, 1, figsize=(5.6, 4.6), sharex=False,
                                  gridspec_kw={"height_ratios": [3, 1.3]})
    pred_name = f"predicted {claim.bound} bound" if claim.bound else "predicted"
    notes = []
    if claim.sweep is not None and sweep_points(claim):
        swept = sweep(claim, base, mutants=mutants, **run)
        rows = [(v, vd) for v, vd, _ in swept if vd is not None and vd.status != "error"]
        skipped = [f"{claim.sweep}={v:g} ({note or vd.message})" for v, vd, note in swept
                   if vd is None or vd.status == "error"]
        if not rows:
            raise ValueError("every point of the sweep was refused or raised")
        xs = np.array([float(v) for v, _ in rows])
        pred = np.array([_summary(claim, vd.predicted) for _, vd in rows])
        meas = np.array([_summary(claim, vd.measured) if not vd.diverged else
                         np.full_like(_summary(claim, vd.predicted), np.nan) for _, vd in rows])
        bands = [tolerance_band(claim, vd.predicted, vd.tolerance) for _, vd in rows]
        errs = [_errbars(claim, vd) for _, vd in rows]
        fills: list = []
        for j in range(pred.shape[1]):
            label = "" if pred.shape[1] == 1 else f"[{j}]"
            line, = ax.plot(xs, pred[:, j], "-", label=f"{pred_name}{label}")
            col = line.get_color()
            if all(b is not None for b in bands):
                fills.append((np.array([b[0][j] for b in bands]), np.array([b[1][j] for b in bands]), col,
                              ("allowed region" if claim.bound else "tolerance band") + label))
            yerr = np.array([e[j] if e is not None else np.nan for e in errs])
            if np.any(np.isfinite(yerr)):
                ax.errorbar(xs, meas[:, j], yerr=np.where(np.isfinite(yerr), yerr, 0.0), fmt="o", ms=4, color=col,
                            capsize=2, label=f"measured{label} ± 1 s.e.")
            else:
                ax.plot(xs, meas[:, j], "o", ms=4, color=col, label=f"measured{label}")
        _fill_bands(ax, xs, fills)
        if any(b is None for b in bands):
            notes.append("no tolerance band: the plotted number is a summary of the comparison (see the margin panel)")
        for (v, vd), x in zip(rows, xs):
            if not vd.passed:
                ax.axvline(x, color="#c33", alpha=0.25, lw=4)
                axm.axvline(x, color="#c33", alpha=0.25, lw=4)
        margins = np.array([_finite_margin(vd.margin) for _, vd in rows])
        axm.plot(xs, margins, "ko-", ms=3, lw=1, label="claim")
        if mutants:
            names = sorted({n for _, vd in rows for n in vd.mutants})
            for n in names:
                mm = np.array([_finite_margin(vd.mutants[n].margin) if n in vd.mutants else np.nan for _, vd in rows])
                axm.plot(xs, mm, "--", lw=1, label=f"mutant: {n}")
        logx = bool(xs.size and xs.min() > 0 and xs.max() / xs.min() >= 20)
        for a in (ax, axm):
            if logx:
                a.set_xscale("log")
        axm.set_xlabel(claim.sweep)
        notes.insert(0, f"sweep of `{claim.sweep}` over {', '.join(f'{v:g}' for v in xs)}")
        if skipped:
            notes.insert(1, "not plotted: " + "; ".join(skipped))
        if claim.summary_label:
            ax.set_ylabel(claim.summary_label)
        else:
            ax.set_ylabel("predicted and measured")
    else:
        if verdict.predicted is None or verdict.measured is None:
            raise ValueError("the verdict has no numbers to plot")
        pred = np.atleast_1d(np.asarray(verdict.predicted, dtype=float)).ravel()
        meas = np.atleast_1d(np.asarray(verdict.measured, dtype=float)).ravel()
        err = _errbars(claim, verdict)
        band = tolerance_band(claim, verdict.predicted, verdict.tolerance)
        if err is not None:
            ax.errorbar(pred, meas, yerr=err, fmt="o", ms=4, capsize=2, color="C1", label="measured ± 1 s.e.")
        else:
            ax.plot(pred, meas, "o", ms=4, color="C1", label="measured")
        lo_, hi_ = float(np.nanmin([pred.min(), meas.min()])), float(np.nanmax([pred.max(), meas.max()]))
        ax.plot([lo_, hi_], [lo_, hi_], "k--", lw=1,
                label="measured = " + ("the bound" if claim.bound else "predicted"))
        if band is not None:
            y0, y1 = ax.get_ylim()
            ax.vlines(pred, np.where(np.isfinite(band[0]), band[0], y0), np.where(np.isfinite(band[1]), band[1], y1),
                      color="C0", alpha=0.3, lw=6, label="tolerance band")
            ax.set_ylim(min(y0, float(np.min(band[0]))) if np.all(np.isfinite(band[0])) else y0,
                        max(y1, float(np.max(band[1]))) if np.all(np.isfinite(band[1])) else y1)
        ax.set_xlabel(pred_name)
        ax.set_ylabel(claim.summary_label or "measured")
        axm.bar(["claim"] + (list(verdict.mutants) if mutants else []),
                [_finite_margin(verdict.margin)] + ([_finite_margin(m.margin) for m in verdict.mutants.values()]
                                                    if mutants else []), color="0.5")
        axm.tick_params(axis="x", labelsize=6, rotation=15)
        notes.append("measured against predicted at the run's parameters")
    axm.axhline(1.0, color="#c33", lw=1, ls=":")
    axm.set_ylabel("error / tol.", fontsize=8)
    try:
        ydata = np.concatenate([np.asarray(ln.get_ydata(), dtype=float) for ln in axm.get_lines()]
                               + [np.asarray([p.get_height() for p in axm.patches], dtype=float)])
        ydata = ydata[np.isfinite(ydata) & (ydata > 0)]
        if ydata.size and ydata.max() / ydata.min() > 30:
            axm.set_yscale("log")
    except (ValueError, TypeError):
        pass
    if len(axm.get_legend_handles_labels()[0]) > 1:
        axm.legend(fontsize=6)
    title = claim.id + (f"  ({claim.bound} bound)" if claim.bound else "")
    ax.set_title(title, fontsize=10)
    if claim.bound:
        notes.append(_bound_label(claim))
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return "; ".join(notes)


def _md(s: str) -> str:
    return s.replace("|", "\\|")


def write_report(directory: str | Path, verdicts: Sequence[Verdict], claims: dict[str, Claim],
                 params: dict[str, Params], *, backend: str = "numpy", device: str = "cpu", seed: int = 0,
                 mutants: bool = False, progress: Callable[[str], None] | None = None) -> Path:
    """Write ``report.md`` (a section and figure per claim; with ``mutants``, a power table) and
    ``verdicts.json`` into ``directory``."""
    d = Path(directory)
    (d / "figures").mkdir(parents=True, exist_ok=True)
    (d / "verdicts.json").write_text(verdicts_json(verdicts) + "\n")
    n_ok = sum(v.passed for v in verdicts)
    lines = ["# solvable verification report", "",
             f"{n_ok} of {len(verdicts)} claims passed (backend {backend}, device {device}, seed {seed}); "
             f"{_summary_line(verdicts)}.", "",
             "| claim | kind | status | error | tolerance | margin | reason |", "|---|---|---|---|---|---|---|"]
    for v in verdicts:
        st = "yes" if v.passed else ("**error**" if v.status == "error" else "**no**")
        lines.append(f"| [`{v.id}`](#{v.id.replace('.', '')}) | {kind(v)} | {st} | {_fmt(v.error)} | "
                     f"{_fmt(v.tolerance)} | {_fmt(v.margin)} | {_md(v.message)} |")
    lines.append("")
    if mutants:
        lines += ["## Power: mutants", "",
                  "Each declared wrong formula judged on the claim's own measurement and tolerance: a mutant is "
                  "rejected when its margin (error / tolerance) exceeds 1.", "",
                  "| claim | mutant | error | tolerance | margin | rejected |", "|---|---|---|---|---|---|"]
        for row in _power_rows(verdicts):
            lines.append("| " + " | ".join([f"`{row[0]}`", _md(row[1])] + list(row[2:5])
                                           + ["yes" if row[5] == "yes" else "**no**"]) + " |")
        lines += ["", _power_summary(verdicts) + ".", ""]
    run = dict(backend=backend, device=device, seed=seed)
    for v in verdicts:
        if progress is not None:
            progress(v.id)
        c = claims[v.id]
        fig = d / "figures" / f"{v.id}.png"
        fig.unlink(missing_ok=True)  # a figure from an earlier run must not stand for this one
        if v.status == "error":
            note = "no figure: the check raised at the run's parameters"
        else:
            try:
                note = _figure(c, v, params[v.id], fig, run, mutants=mutants)
            except Exception as e:  # a figure that fails must not hide the verdict
                note = f"figure failed: {type(e).__name__}: {e}"
        status = {"passed": "yes", "failed": "no", "error": "error"}[v.status]
        lines += [f"## {v.id}", "", v.statement, "", f"*Reference:* {v.reference}", "",
                  f"- kind: {kind(v)}" + (f" ({_bound_label(c)})" if c.bound else ""),
                  f"- parameters: `{json.dumps(v.params)}`",
                  f"- predicted: `{_fmt(v.predicted, 200)}`; measured: `{_fmt(v.measured, 200)}`",
                  f"- error {_fmt(v.error)} against tolerance {_fmt(v.tolerance)} (margin {_fmt(v.margin)}): "
                  f"{v.tolerance_reason}",
                  f"- passed: **{status}**" + (f" (diverged at step {v.diverged_step})" if v.diverged else "")
                  + (f": {v.message}" if v.message else ""),
                  ]
        if v.checks:
            lines.append("- checks: " + ", ".join(f"{k}={'yes' if ok else 'NO'}" for k, ok in v.checks.items()))
        if v.mutants:
            lines.append("- mutants: " + "; ".join(f"{n}: margin {_fmt(m.margin)} ({'rejected' if m.rejected else 'NOT rejected'})"
                                                   for n, m in v.mutants.items()))
        if v.info:
            lines.append(f"- details: `{json.dumps(v.info)[:400]}`")
        if fig.exists():
            lines += ["", f"![{v.id}](figures/{fig.name})", "", f"*Figure: {note}.*"]
        else:
            lines += ["", f"*{note}*"]
        lines.append("")
    out = d / "report.md"
    out.write_text("\n".join(lines))
    return out
