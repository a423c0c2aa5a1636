"""Verdicts for people: a terminal table, JSON, and a Markdown report with a figure per claim.

The report's figure for a claim plots ``predicted`` and ``measured`` over a sweep of the claim's
main parameter (``Claim.sweep`` / ``Claim.sweep_values``), the other parameters held at the values
of the run; a claim without a sweep gets a predicted-vs-measured scatter of its default verdict.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from .claims import Claim, Params, Verdict

__all__ = ["Verdicts", "render_table", "verdicts_json", "write_report", "sweep"]


def _fmt(x: Any, width: int = 28) -> str:
    if x is None:
        return "-"
    if isinstance(x, (list, tuple)):
        flat = np.asarray(x, dtype=float).ravel()
        if flat.size <= 3:
            s = "[" + ", ".join(f"{v:.4g}" for v in flat) + "]"
        else:
            s = f"[{flat[0]:.4g}, {flat[1]:.4g}, ... ({flat.size})]"
        return s if len(s) <= width else s[: width - 1] + "…"
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


class Verdicts(list):
    """A list of :class:`~solvable.claims.Verdict` that prints as a table (terminal and Jupyter)."""

    @property
    def passed(self) -> bool:
        return all(v.passed for v in self)

    def to_json(self) -> list[dict]:
        return [v.to_json() for v in self]

    def __str__(self) -> str:
        rows = [("id", "passed", "predicted", "measured", "error", "tolerance", "s")]
        for v in self:
            rows.append((v.id, "yes" if v.passed else "NO", _fmt(v.predicted), _fmt(v.measured),
                         _fmt(v.error), _fmt(v.tolerance), f"{v.seconds:.2f}"))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows)

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{h}</th>" for h in ("id", "passed", "predicted", "measured", "error",
                                                  "tolerance", "why that tolerance"))
        body = []
        for v in self:
            colour = "#2a7" if v.passed else "#c33"
            body.append(
                f"<tr><td><code>{v.id}</code></td><td style='color:{colour}'>{'yes' if v.passed else 'NO'}</td>"
                f"<td>{_fmt(v.predicted, 40)}</td><td>{_fmt(v.measured, 40)}</td><td>{_fmt(v.error)}</td>"
                f"<td>{_fmt(v.tolerance)}</td><td>{v.tolerance_reason}</td></tr>")
        return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def render_table(verdicts: Sequence[Verdict], console: Any = None) -> None:
    """Print the verdicts as a rich table."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    t = Table(show_lines=False)
    for col, kw in (("claim", {}), ("passed", {"justify": "center"}), ("predicted", {"justify": "right"}),
                    ("measured", {"justify": "right"}), ("error", {"justify": "right"}),
                    ("tolerance", {"justify": "right"}), ("s", {"justify": "right"})):
        t.add_column(col, **kw)
    for v in verdicts:
        ok = "[green]yes[/green]" if v.passed else ("[red]DIVERGED[/red]" if v.diverged else "[red]NO[/red]")
        t.add_row(v.id, ok, _fmt(v.predicted), _fmt(v.measured), _fmt(v.error), _fmt(v.tolerance),
                  f"{v.seconds:.2f}")
    console.print(t)
    n_ok = sum(v.passed for v in verdicts)
    console.print(f"{n_ok} passed, {len(verdicts) - n_ok} failed")


def verdicts_json(verdicts: Iterable[Verdict]) -> str:
    return json.dumps([v.to_json() for v in verdicts], indent=2, allow_nan=False)


def _summary(claim: Claim, value: Any) -> np.ndarray:
    """The number(s) plotted for a predicted or measured value."""
    if claim.summary is not None:
        return np.atleast_1d(np.asarray(claim.summary(value), dtype=float))
    arr = np.atleast_1d(np.asarray(value, dtype=float)).ravel()
    return arr if arr.size <= 6 else np.array([np.linalg.norm(arr)])


def sweep(claim: Claim, base: Params, values: Sequence[Any] | None = None, *, backend: str = "numpy",
          device: str = "cpu", seed: int = 0) -> list[tuple[Any, Verdict | None, str]]:
    """Check ``claim`` at each value of its sweep parameter; ``(value, verdict or None, note)``."""
    if claim.sweep is None:
        raise ValueError(f"claim {claim.id} has no sweep parameter")
    out = []
    for val in (claim.sweep_values if values is None else values):
        try:
            p = base.replace(**{claim.sweep: val})
        except ValueError as e:
            out.append((val, None, str(e)))
            continue
        out.append((val, claim.check(p, backend=backend, device=device, seed=seed), ""))
    return out


def _figure(claim: Claim, verdict: Verdict, base: Params, path: Path, run: dict) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    note = ""
    if claim.sweep is not None and claim.sweep_values:
        rows = [(v, vd) for v, vd, _ in sweep(claim, base, **run) if vd is not None]
        xs = np.array([float(v) for v, _ in rows])
        pred = np.array([_summary(claim, vd.predicted) for _, vd in rows])
        meas = np.array([_summary(claim, vd.measured) if not vd.diverged else
                         np.full_like(_summary(claim, vd.predicted), np.nan) for _, vd in rows])
        for j in range(pred.shape[1]):
            label = "" if pred.shape[1] == 1 else f"[{j}]"
            line, = ax.plot(xs, pred[:, j], "-", label=f"predicted{label}")
            ax.plot(xs, meas[:, j], "o", color=line.get_color(), label=f"measured{label}")
        for (v, vd), x in zip(rows, xs):
            if not vd.passed:
                ax.axvline(x, color="#c33", alpha=0.25, lw=4)
        if xs.size and xs.min() > 0 and xs.max() / xs.min() >= 20:
            ax.set_xscale("log")
        ax.set_xlabel(claim.sweep)
        note = f"sweep of `{claim.sweep}` over {', '.join(f'{v:g}' for v in xs)}"
    else:
        pred = np.atleast_1d(np.asarray(verdict.predicted, dtype=float)).ravel()
        meas = np.atleast_1d(np.asarray(verdict.measured, dtype=float)).ravel()
        ax.plot(pred, meas, "o", ms=4)
        lo, hi = float(np.nanmin([pred.min(), meas.min()])), float(np.nanmax([pred.max(), meas.max()]))
        ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="measured = predicted")
        ax.set_xlabel("predicted")
        ax.set_ylabel("measured")
        note = "measured against predicted at the run's parameters"
    if claim.summary_label:
        ax.set_ylabel(claim.summary_label)
    elif claim.sweep is not None and claim.sweep_values:
        ax.set_ylabel("predicted and measured")
    ax.set_title(claim.id, fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return note


def write_report(directory: str | Path, verdicts: Sequence[Verdict], claims: dict[str, Claim],
                 params: dict[str, Params], *, backend: str = "numpy", device: str = "cpu", seed: int = 0,
                 progress: Callable[[str], None] | None = None) -> Path:
    """Write ``report.md`` (a section and figure per claim) and ``verdicts.json`` into ``directory``."""
    d = Path(directory)
    (d / "figures").mkdir(parents=True, exist_ok=True)
    (d / "verdicts.json").write_text(verdicts_json(verdicts) + "\n")
    n_ok = sum(v.passed for v in verdicts)
    lines = ["# solvable verification report", "",
             f"{n_ok} of {len(verdicts)} claims passed (backend {backend}, device {device}, seed {seed}).", "",
             "| claim | passed | error | tolerance |", "|---|---|---|---|"]
    for v in verdicts:
        lines.append(f"| [`{v.id}`](#{v.id.replace('.', '')}) | {'yes' if v.passed else '**no**'} | "
                     f"{_fmt(v.error)} | {_fmt(v.tolerance)} |")
    lines.append("")
    run = dict(backend=backend, device=device, seed=seed)
    for v in verdicts:
        if progress is not None:
            progress(v.id)
        c = claims[v.id]
        fig = d / "figures" / f"{v.id}.png"
        try:
            note = _figure(c, v, params[v.id], fig, run)
        except Exception as e:  # a figure that fails must not hide the verdict
            note = f"figure failed: {type(e).__name__}: {e}"
        lines += [f"## {v.id}", "", v.statement, "", f"*Reference:* {v.reference}", "",
                  f"- parameters: `{json.dumps(v.params)}`",
                  f"- predicted: `{_fmt(v.predicted, 200)}`; measured: `{_fmt(v.measured, 200)}`",
                  f"- error {_fmt(v.error)} against tolerance {_fmt(v.tolerance)}: {v.tolerance_reason}",
                  f"- passed: **{'yes' if v.passed else 'no'}**"
                  + (f" (diverged at step {v.diverged_step})" if v.diverged else ""),
                  ]
        if v.checks:
            lines.append("- checks: " + ", ".join(f"{k}={'yes' if ok else 'NO'}" for k, ok in v.checks.items()))
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

