"""Sphinx extension that builds the claim catalog, the executed notebooks and the API pages from the
code, and a ``solvable-command`` directive that runs a command line during the build.

Everything under ``docs/generated/`` is written here at ``builder-inited`` (never edit it by hand):

- ``catalog/<model>.md``: one page per model in ``solvable.models.MODULES``, one section per
  registered claim (statement, reference with arXiv links, parameters with ranges and domains,
  tolerance reason, mutants with their margins, latest verdict, figure, derivation, source);
- ``catalog/index.md`` and ``findings.md`` ("What did not hold as stated");
- ``source/<model>.md``: the closed forms, simulators and tolerances the claims point to;
- ``derivations/check_<model>.md``: each ``proofs_check`` file rendered;
- ``notebooks/<model>.ipynb``: each notebook executed (cached), widgets rendered as static figures;
- ``api/<module>.md``: autodoc pages of the public modules.

The numbers come from ``solvable verify --mutants --json --report DIR`` run at build time (in
``SOLVABLE_DOCS_JOBS`` processes, default 2) and cached under ``docs/_build/.solvable-cache`` by a
hash of the ``solvable`` sources; the figures are the report's (``solvable.report``). Environment:

- ``SOLVABLE_DOCS_FAST=1``: no verification run and no notebook or command execution; placeholder
  verdicts, but every claim still gets its catalog section (the check ``make test`` runs);
- ``SOLVABLE_DOCS_REPORT=DIR``: read ``DIR/verdicts.json`` and ``DIR/figures/`` of an earlier
  ``solvable verify --mutants --report DIR`` instead of running it.

Locations (file:line of the derivation, the closed forms, the simulation) come from the command
line's own ``solvable show`` helpers (``solvable.cli._describe``), so the site and ``show`` agree.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
GEN = DOCS / "generated"
CACHE = DOCS / "_build" / ".solvable-cache"

# the placeholder's words, which tests/test_docs.py looks for in a fast build
FAST_NOTE = "not run in this build (fast mode, SOLVABLE_DOCS_FAST=1)"


def fast_mode() -> bool:
    return os.environ.get("SOLVABLE_DOCS_FAST", "") not in ("", "0")


def _jobs() -> int:
    try:
        return max(1, int(os.environ.get("SOLVABLE_DOCS_JOBS", "") or min(2, os.cpu_count() or 1)))
    except ValueError:
        return 1


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env.setdefault(k, "1")
    env.setdefault("COLUMNS", "100")
    return env


def sources_hash() -> str:
    """A hash of every file of the ``solvable`` package: verdicts and notebook outputs cached under
    it are reused only while the code that made them is unchanged."""
    h = hashlib.sha256()
    for p in sorted((ROOT / "solvable").rglob("*.py")):
        h.update(str(p.relative_to(ROOT)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------------------------
# Markdown helpers

_ARXIV = re.compile(r"(arXiv[:\s]*)(\d{4}\.\d{4,5})(v\d+)?", re.I)
_MD_SPECIAL = set("\\`*_{}[]<>()#+-.!|$~&:^")


def md_escape(text: str) -> str:
    """Text shown as written (statements hold ``|x|``, ``u*u``, ``argmin_{...}``)."""
    return "".join("\\" + ch if ch in _MD_SPECIAL else ch for ch in text)


def md_text(text: str) -> str:
    """Escaped text with every arXiv id linked to its abstract page."""
    out, pos = [], 0
    for m in _ARXIV.finditer(text):
        out.append(md_escape(text[pos:m.start()]))
        ident = m.group(2) + (m.group(3) or "")
        out.append(f"[{md_escape(m.group(0))}](https://arxiv.org/abs/{ident})")
        pos = m.end()
    out.append(md_escape(text[pos:]))
    return "".join(out)


def label(*parts: str) -> str:
    return "-".join(re.sub(r"[^a-z0-9]+", "-", p.lower()).strip("-") for p in parts)


def _write(path: Path, text: str) -> None:
    """Write only when changed, so Sphinx rebuilds only the pages whose source changed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def _fmt(x: Any) -> str:
    from solvable.report import _fmt as f

    return f(x, 80)


# --------------------------------------------------------------------------------------------
# Verdicts and figures


def _run_verify(ids: list[str], out: Path) -> dict:
    """``solvable verify --mutants --json --report`` over ``ids`` in parallel groups."""
    jobs = min(_jobs(), len(ids)) or 1
    groups = [ids[i::jobs] for i in range(jobs)]
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    procs = []
    for k, group in enumerate(groups):
        d = tmp / f"part{k}"
        cmd = [sys.executable, "-m", "solvable", "verify", *group, "--mutants", "--json", "--report", str(d)]
        procs.append((d, subprocess.Popen(cmd, cwd=ROOT, env=_child_env(), stdout=subprocess.DEVNULL,
                                          stderr=subprocess.PIPE, text=True)))
    verdicts: list = []
    (tmp / "figures").mkdir(parents=True, exist_ok=True)
    for d, p in procs:
        _, err = p.communicate()
        if p.returncode not in (0, 1):  # 1: some claim failed, which the catalog reports
            raise RuntimeError(f"solvable verify exited {p.returncode}: {err.strip()[-2000:]}")
        verdicts += json.loads((d / "verdicts.json").read_text())
        for fig in (d / "figures").glob("*.png"):
            shutil.move(str(fig), tmp / "figures" / fig.name)
        _captions_from_report(d / "report.md", tmp / "captions.json")
    (tmp / "verdicts.json").write_text(json.dumps(verdicts, indent=1))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return {v["id"]: v for v in verdicts}


def _captions_from_report(report: Path, into: Path) -> None:
    """The figure notes the report writes under each figure (``*Figure: ...*``)."""
    caps = json.loads(into.read_text()) if into.exists() else {}
    if report.exists():
        for sec in report.read_text().split("\n## ")[1:]:
            head, _, body = sec.partition("\n")
            m = re.search(r"^\*Figure: (.*)\.\*$", body, re.M)
            if m:
                caps[head.strip()] = m.group(1)
    into.write_text(json.dumps(caps, indent=1))


def load_results(ids: list[str]) -> tuple[dict, Path | None, dict, str]:
    """``(verdicts by id, figure directory, captions, where they came from)``."""
    if fast_mode():
        return {}, None, {}, FAST_NOTE
    given = os.environ.get("SOLVABLE_DOCS_REPORT")
    if given:
        d = Path(given).resolve()
        vs = {v["id"]: v for v in json.loads((d / "verdicts.json").read_text())}
        caps = {}
        if (d / "report.md").exists():
            _captions_from_report(d / "report.md", CACHE / "given-captions.json")
            caps = json.loads((CACHE / "given-captions.json").read_text())
        return vs, d / "figures", caps, f"read from {d} (SOLVABLE_DOCS_REPORT)"
    out = CACHE / f"verify-{sources_hash()}"
    if (out / "verdicts.json").exists():
        vs = {v["id"]: v for v in json.loads((out / "verdicts.json").read_text())}
        if set(ids) <= set(vs):
            logger.info(f"solvable docs: verdicts from the cache {out.name}")
            caps = json.loads((out / "captions.json").read_text()) if (out / "captions.json").exists() else {}
            return vs, out / "figures", caps, "cached run of this source tree"
    logger.info(f"solvable docs: running solvable verify --mutants --report over {len(ids)} claims")
    for old in CACHE.glob("verify-*"):
        shutil.rmtree(old, ignore_errors=True)
    vs = _run_verify(ids, out)
    caps = json.loads((out / "captions.json").read_text()) if (out / "captions.json").exists() else {}
    return vs, out / "figures", caps, "run during this build"


# --------------------------------------------------------------------------------------------
# Findings: claims whose literature statement did not hold as stated


def finding_note(claim, config) -> str | None:
    """Why ``claim`` is a finding, or None. A claim is a finding when the docs' configuration lists
    it (``solvable_findings``: id -> one line) or its statement matches ``solvable_finding_pattern``
    (wording such as "the paper's ... is not reproduced"), unless ``solvable_not_findings`` lists it."""
    if claim.id in config.solvable_not_findings:
        return None
    if claim.id in config.solvable_findings:
        return config.solvable_findings[claim.id]
    m = re.search(config.solvable_finding_pattern, claim.statement, re.I)
    if m:
        return f'the statement says where the literature\'s form fails ("{m.group(0)}")'
    return None


# --------------------------------------------------------------------------------------------
# Pages


def _source_span(obj: Any) -> tuple[str, int, int] | None:
    """``(path from the docs root, first line, last line)`` of a function's source."""
    fn = inspect.unwrap(obj)
    try:
        path = Path(inspect.getsourcefile(fn) or "").resolve()
        lines, start = inspect.getsourcelines(fn)
        path.relative_to(ROOT)
    except (TypeError, OSError, ValueError):
        return None
    return str(path.relative_to(ROOT)), start, start + len(lines) - 1


def _loc(w: dict) -> str:
    return f"{w['file']}:{w['line']}" if w.get("file") else "source not found"


def _param_rows(claim) -> list[str]:
    from solvable.claims import describe_param_domain, describe_param_range

    rows = ["| name | default | valid range | domain (asserted on) | meaning |", "|---|---|---|---|---|"]
    for name, m in claim.params.fields().items():
        dom = describe_param_domain(m) or "the valid range"
        if m["log"] and m["choices"] is None:
            dom += " (log)"
        rows.append(f"| `{name}` | `{m['default']!r}` | {md_escape(describe_param_range(m))} | {md_escape(dom)} | "
                    f"{md_text(m['doc'])} |")
    return rows


def _verdict_lines(v: dict | None, origin: str) -> list[str]:
    if v is None:
        return [f"**Latest verdict:** {md_escape(origin)}.", ""]
    status = {"passed": "passed", "failed": "**failed**", "error": "**error**"}.get(v.get("status"), "?")
    s = (f"**Latest verdict:** {status} at the defaults ({v.get('backend')}, seed 0, {v.get('seconds', 0):.2f} s of "
         f"simulation; {md_escape(origin)})")
    lines = [s, ""]
    if v.get("status") != "error":
        lines += [f"- predicted: `{_fmt(v.get('predicted'))}`", f"- measured: `{_fmt(v.get('measured'))}`",
                  f"- error {md_escape(_fmt(v.get('error')))} against tolerance {md_escape(_fmt(v.get('tolerance')))} "
                  f"(margin {md_escape(_fmt(v.get('margin')))}; below 1 holds)"]
    if v.get("message"):
        lines.append(f"- {md_escape(v['message'])}")
    if v.get("checks"):
        lines.append("- checks: " + ", ".join(f"`{k}` {'yes' if ok else 'NO'}" for k, ok in v["checks"].items()))
    lines.append("")
    return lines


def _mutant_lines(claim, v: dict | None) -> list[str]:
    if not claim.mutants:
        return ["**Mutants:** none declared.", ""]
    lines = [f"**Mutants** (wrong formulas the check must reject, at the defaults and on at least "
             f"{claim.mutant_power:.0%} of the domain; margin = error / tolerance, above 1 rejects):", "",
             "| mutant | margin at the defaults | rejected |", "|---|---|---|"]
    judged = (v or {}).get("mutants") or {}
    for name in claim.mutants:
        m = judged.get(name)
        if m is None:
            lines.append(f"| {md_escape(name)} | not judged in this build | |")
        else:
            lines.append(f"| {md_escape(name)} | {md_escape(_fmt(m.get('margin')))} | "
                         f"{'yes' if m.get('rejected') else '**NO**'} |")
    return lines + [""]


_DESCRIBED: dict = {}


def describe(claim) -> dict:
    """``solvable show``'s description of a claim (where its derivation, closed form, simulation live)."""
    from solvable.cli import _describe

    if claim.id not in _DESCRIBED:
        _DESCRIBED[claim.id] = _describe(claim)
    return _DESCRIBED[claim.id]


def claim_section(claim, v: dict | None, origin: str, figdir: Path | None, captions: dict, note: str | None,
                  src_labels: dict, derivation_pages: dict, notebook_docs: dict) -> list[str]:
    info = describe(claim)
    kind = info["kind"]
    out = [f"({label('claim', claim.id)})=", f"## `{claim.id}`", ""]
    if note:
        out += ["```{admonition} What did not hold as stated", ":class: warning", "",
                md_text(note) + " See {doc}`../findings`.", "```", ""]
    out += [md_text(claim.statement), "", f"**Reference:** {md_text(claim.reference)}", "",
            f"**Kind:** {kind}" + ({"upper": " (measured must stay below predicted)",
                                     "lower": " (measured must stay above predicted)"}.get(claim.bound or "", ""))
            + f"; backends: {', '.join(claim.backends)}.", ""]
    out += _verdict_lines(v, origin)
    if v is not None and v.get("tolerance_reason"):
        out += [f"**Tolerance:** {md_text(v['tolerance_reason'])}", ""]
    else:
        out += ["**Tolerance:** its reason is computed with the measurement; " + md_escape(origin) + ".", ""]
    out += ["**Parameters:**", ""] + _param_rows(claim) + [""]
    out += _mutant_lines(claim, v)
    # the figure: predicted vs measured over the sweep, from solvable.report
    fig = figdir / f"{claim.id}.png" if figdir is not None else None
    if fig is not None and fig.exists():
        dest = GEN / "catalog" / "figures" / fig.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not dest.exists() or dest.read_bytes() != fig.read_bytes():
            shutil.copyfile(fig, dest)
        cap = captions.get(claim.id, "predicted and measured over the claim's sweep")
        out += [f"```{{figure}} figures/{fig.name}", f":alt: predicted and measured for {claim.id}", ":width: 90%", "",
                md_text(cap) + " (made by `solvable.report`).", "```", ""]
    elif v is None:
        out += [f"**Figure:** {md_escape(origin)}.", ""]
    else:
        out += ["**Figure:** none (the check raised, or the figure failed; see the verdict).", ""]
    # where it lives
    wh = info["where"]
    out += ["**Derivation:**", ""]
    if not wh["derivation"]:
        out += ["no `@proves` check found in `proofs_check/`.", ""]
    for d in wh["derivation"]:
        page = derivation_pages.get(d["file"])
        link = f" (whole file: {{doc}}`../derivations/{page}`)" if page else ""
        out += [f"`{d['function']}` in `{d['file']}:{d['line']}`{link}:", "",
                f"```{{literalinclude}} /../{d['file']}", f":pyobject: {d['function']}", ":language: python",
                ":lineno-match:", "```", ""]
    out += ["**Source:**", ""]
    items = [("closed form", w) for w in wh["closed_form"]] or [("closed form (predicted)", wh["predicted"])]
    items += [("simulation", wh["simulation"]), ("tolerance", wh["tolerance"])]
    for what, w in items:
        lab = src_labels.get((w.get("file"), w.get("line")))
        name = re.sub(r"<(\w+)>", r"\1", str(w.get("function")))  # <lambda>, <locals>: no angle brackets in a role
        ref = f"{{ref}}`{name} <{lab}>`" if lab else md_escape(name)
        out.append(f"- {what}: {ref} (`{_loc(w)}`)")
    for nb in wh["notebooks"]:
        stem = Path(nb).stem
        if stem in notebook_docs:
            out.append(f"- notebook: {{doc}}`../notebooks/{stem}`")
    out.append("")
    return out


def _module_title(module) -> str:
    doc = inspect.getdoc(module) or ""
    first = doc.strip().split("\n\n")[0].replace("\n", " ")
    return first


def write_source_page(model: str, claims: list) -> dict:
    """One page with each function the model's claims point to; returns ``{(file, line): label}``."""
    seen: dict = {}
    blocks: list[str] = []
    for c in claims:
        wh = describe(c)["where"]
        fns = [(w, None) for w in wh["closed_form"]]
        objs = [(wh["predicted"], c.predicted), (wh["simulation"], c.measured), (wh["tolerance"], c.tolerance)]
        for w, obj in fns + objs:
            key = (w.get("file"), w.get("line"))
            if key in seen or not w.get("file"):
                continue
            span = None
            if obj is not None:
                span = _source_span(obj)
            else:  # a closed form, found by name as `solvable show` finds it
                import importlib

                for name in c.closed_forms:
                    mod, _, fn = name.rpartition(".")
                    try:
                        f = getattr(importlib.import_module(f"solvable.models.{mod or c.module}"), fn)
                    except (ImportError, AttributeError):
                        continue
                    s = _source_span(f)
                    if s and (s[0], s[1]) == key:
                        span = s
            if span is None:
                continue
            lab = label("src", model, str(w["function"]), str(w["line"]))
            seen[key] = lab
            blocks += [f"({lab})=", f"## `{w['function']}`", "", f"`{span[0]}:{span[1]}`", "",
                       f"```{{literalinclude}} /../{span[0]}", f":lines: {span[1]}-{span[2]}", ":language: python",
                       ":lineno-match:", "```", ""]
    text = [f"# Source of the `{model}` claims", "",
            f"The closed forms, simulations and tolerances that the claims on {{doc}}`../catalog/{model}` point to, "
            "as `solvable show ID` lists them.", ""] + blocks
    _write(GEN / "source" / f"{model}.md", "\n".join(text))
    return seen


def write_derivation_pages() -> dict:
    pages = {}
    for path in sorted((ROOT / "proofs_check").glob("check_*.py")):
        rel = str(path.relative_to(ROOT))
        doc = (path.read_text().split('"""')[1].strip().split("\n")[0]) if path.read_text().startswith('"""') else ""
        text = [f"# `{rel}`", "", md_escape(doc), "",
                f"```{{literalinclude}} /../{rel}", ":language: python", ":linenos:", "```", ""]
        _write(GEN / "derivations" / f"{path.stem}.md", "\n".join(text))
        pages[rel] = path.stem
    return pages


def write_catalog(app) -> list[str]:
    import solvable
    from solvable.models import MODULES

    claims = solvable.all_claims()
    ids = [c.id for c in claims]
    verdicts, figdir, captions, origin = load_results(ids)
    derivation_pages = write_derivation_pages()
    notebook_docs = {p.stem: p for p in (GEN / "notebooks").glob("*.ipynb")}
    by_model: dict[str, list] = {}
    for c in claims:
        by_model.setdefault(c.module, []).append(c)
    models = [m for m in MODULES if m in by_model] + sorted(set(by_model) - set(MODULES))
    findings = []
    index = ["# Claim catalog", "",
             f"Every registered claim ({len(claims)} claims of {len(models)} models), generated from the registry "
             "(`solvable.all_claims()`). Verdicts and figures: " + md_escape(origin) + ".", "",
             "```{toctree}", ":maxdepth: 1", ""] + models + ["```", "",
             "| claim | kind | verdict | margin | note |", "|---|---|---|---|---|"]
    for model in models:
        cs = by_model[model]
        mod = sys.modules[f"solvable.models.{model}"]
        src_labels = write_source_page(model, cs)
        page = [f"# `{model}`: {md_escape(_module_title(mod))}", "",
                f"{len(cs)} claims. API: {{doc}}`../api/solvable.models.{model}`; "
                f"source of the claims: {{doc}}`../source/{model}`"
                + (f"; notebook: {{doc}}`../notebooks/{model}`" if model in notebook_docs else "") + ".", ""]
        for c in cs:
            note = finding_note(c, app.config)
            v = verdicts.get(c.id)
            page += claim_section(c, v, origin, figdir, captions, note, src_labels, derivation_pages, notebook_docs)
            if note:
                findings.append((c, note, v))
            status = "not run" if v is None else v.get("status", "?")
            index.append(f"| {{ref}}`{c.id} <{label('claim', c.id)}>` | {c.bound + ' bound' if c.bound else 'estimate'} "
                         f"| {status} | {md_escape(_fmt(v.get('margin')) if v else '-')} | "
                         f"{'finding' if note else ''} |")
        _write(GEN / "catalog" / f"{model}.md", "\n".join(page))
    _write(GEN / "catalog" / "index.md", "\n".join(index) + "\n")
    fpage = ["# What did not hold as stated", "",
             "Claims from the literature that the sandbox found false, or true only in a narrower regime. Each is "
             "registered in the form that holds; its statement says where the original fails. A claim is listed "
             "here when `docs/conf.py` names it in `solvable_findings` (with a one-line summary) or its statement "
             "matches `solvable_finding_pattern` (wording such as \"the paper's ... is not reproduced\", \"holds "
             "only for\").", ""]
    for c, note, v in findings:
        fpage += [f"## {{ref}}`{c.id} <{label('claim', c.id)}>`", "", f"**Finding:** {md_text(note)}", "",
                  f"**As registered:** {md_text(c.statement)}", "", f"**Reference:** {md_text(c.reference)}", "",
                  f"**Latest verdict:** {'not run' if v is None else v.get('status')}.", ""]
    if not findings:
        fpage += ["No registered claim is marked as a finding.", ""]
    _write(GEN / "findings.md", "\n".join(fpage))
    _write(GEN / "claim_ids.json", json.dumps(ids, indent=0))
    return ids


# --------------------------------------------------------------------------------------------
# API pages


def api_modules() -> list[str]:
    import pkgutil

    import solvable.tools
    from solvable.models import MODULES

    mods = ["solvable", "solvable.claims", "solvable.testing", "solvable.backend", "solvable.stats"]
    mods += [f"solvable.models.{m}" for m in MODULES]
    mods += [f"solvable.tools.{m.name}" for m in pkgutil.iter_modules(solvable.tools.__path__) if not m.name.startswith("_")]
    return mods


def write_api() -> None:
    mods = api_modules()
    import importlib

    for m in mods:
        mod = importlib.import_module(m)
        names = getattr(mod, "__all__", None)
        members = "   :members:"
        if names is not None:  # a re-export is documented where it is defined, and linked from there
            own = [n for n in names if getattr(getattr(mod, n, None), "__module__", m) == m]
            others = [n for n in names if n not in own]
            members = "   :members: " + ", ".join(own) if own else "   :no-members:"
        else:
            others = []
        see = (["", "Also exported here: " + ", ".join(f"`{n}`" for n in others) + " (documented in the modules that "
                "define them)."] if others else [])
        _write(GEN / "api" / f"{m}.md", "\n".join([
            f"# `{m}`", "", "```{eval-rst}", f".. automodule:: {m}", members, "   :show-inheritance:", "```"]
            + see + [""]))
    _write(GEN / "api" / "index.md", "\n".join([
        "# API reference", "", "From the docstrings of the public modules (their `__all__`).", "",
        "```{toctree}", ":maxdepth: 1", ""] + mods + ["```", ""]))


# --------------------------------------------------------------------------------------------
# Notebooks: executed at build time (cached), sliders shown as static figures

# Run first in the kernel (a cell removed from the page): `interact` calls the function once with
# each widget's value and shows its figure in the cell, instead of an interactive widget whose
# figure lives in the widget's state (which a static page cannot show without a widget runtime).
_STATIC_INTERACT = """\
import ipywidgets as _ipw
from IPython.display import display as _display

def _solvable_docs_interact(_f=None, **kwargs):
    def run(f):
        w = _ipw.interactive(f, **kwargs)
        result = f(**{wd._kwarg: wd.get_interact_value() for wd in w.kwargs_widgets})
        if result is not None:
            _display(result)
        return f
    return run if _f is None else run(_f)

_ipw.interact = _ipw.interact_manual = _solvable_docs_interact
_ipw.widgets.interact = _ipw.widgets.interact_manual = _solvable_docs_interact
"""
_NOTE = ("*This page is the notebook `notebooks/{name}` executed when the site was built. Sliders are shown as "
         "static figures at their default values; open the notebook in JupyterLab (`make lab`) to move them.*")
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def _prepare(nb, name: str, executed: bool):
    import nbformat

    nb.cells.insert(0, nbformat.v4.new_markdown_cell(_NOTE.format(name=name) if executed else
                                                     f"*The notebook `notebooks/{name}`, {FAST_NOTE}.*"))
    nb.metadata.pop("widgets", None)
    return nb


def _strip_widgets(nb):
    for c in nb.cells:
        if c.cell_type != "code":
            continue
        keep = []
        for o in c.get("outputs", []):
            data = o.get("data", {})
            if WIDGET_MIME in data:
                data.pop(WIDGET_MIME)
                data.pop("text/plain", None)
                if not data:
                    continue
            keep.append(o)
        c.outputs = keep
    nb.metadata.pop("widgets", None)
    return nb


def execute_notebook(path: Path, out: Path) -> None:
    """Execute ``path`` with the static-interact shim and write it, outputs and all, to ``out``
    (run in its own process: one kernel client per process)."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell(_STATIC_INTERACT))
    client = NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    if errors:
        raise RuntimeError(f"{path.name}: {errors[0].get('ename')}: {errors[0].get('evalue')}")
    nb.cells.pop(0)  # the shim
    _strip_widgets(nb)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    nbformat.write(nb, tmp)
    tmp.rename(out)


def _execute_all(todo: list[tuple[Path, Path]]) -> None:
    """Execute notebooks in ``SOLVABLE_DOCS_JOBS`` processes (the kernels inherit their environment:
    this checkout on the path, the inline matplotlib backend so that figures land in the outputs)."""
    env = _child_env()
    env.pop("MPLBACKEND", None)
    env["PYTHONPATH"] = str(Path(__file__).parent) + os.pathsep + env["PYTHONPATH"]
    pending, running, failed = list(todo), [], []
    while pending or running:
        while pending and len(running) < _jobs():
            src, out = pending.pop(0)
            cmd = [sys.executable, "-c", "import sys, solvable_docs as d; from pathlib import Path; "
                   "d.execute_notebook(Path(sys.argv[1]), Path(sys.argv[2]))", str(src), str(out)]
            running.append((src, subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                                  stderr=subprocess.STDOUT, text=True)))
        src, p = running.pop(0)
        log, _ = p.communicate()
        if p.returncode != 0:
            failed.append(f"{src.name}: {log.strip().splitlines()[-1] if log.strip() else p.returncode}")
    if failed:
        raise RuntimeError("notebooks failed to execute: " + "; ".join(failed))


def write_notebooks() -> None:
    import nbformat

    paths = sorted((ROOT / "notebooks").glob("*.ipynb"))
    dest = GEN / "notebooks"
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.glob("*.ipynb"):
        if not (ROOT / "notebooks" / old.name).exists():
            old.unlink()
    if fast_mode():
        for p in paths:
            nb = _prepare(nbformat.read(p, as_version=4), p.name, executed=False)
            _write(dest / p.name, nbformat.writes(nb))
        return
    src = sources_hash()
    keys = {p: hashlib.sha256(p.read_bytes() + src.encode() + _STATIC_INTERACT.encode()).hexdigest()[:16]
            for p in paths}
    done = {p: CACHE / "notebooks" / f"{p.stem}-{keys[p]}.ipynb" for p in paths}
    todo = [(p, done[p]) for p in paths if not done[p].exists()]
    if todo:
        logger.info(f"solvable docs: executing {len(todo)} notebooks ({', '.join(p.stem for p, _ in todo)})")
        _execute_all(todo)
    for p in paths:
        nb = _prepare(nbformat.read(done[p], as_version=4), p.name, executed=True)
        _write(dest / p.name, nbformat.writes(nb))
    for old in (CACHE / "notebooks").glob("*.ipynb"):
        if old not in done.values():
            old.unlink()


def generate(app) -> None:
    _DESCRIBED.clear()
    GEN.mkdir(parents=True, exist_ok=True)
    write_api()
    write_notebooks()
    write_catalog(app)


# --------------------------------------------------------------------------------------------
# The solvable-command directive


class SolvableCommand(SphinxDirective):
    """Run a command line during the build and show it with its output::

        ```{solvable-command} solvable show stability.gd_threshold
        :returncode: 0
        ```

    ``solvable`` runs as ``python -m solvable`` from the repository root. The output is the
    command's stdout and stderr. A return code other than ``:returncode:`` (default 0) is a build
    warning (an error under ``-W``). In fast mode the command is shown without running it.
    """

    required_arguments = 1
    final_argument_whitespace = True
    option_spec = {"returncode": directives.nonnegative_int, "max-lines": directives.nonnegative_int}

    def run(self) -> list[nodes.Node]:
        import shlex

        line = self.arguments[0].strip()
        argv = shlex.split(line)
        if fast_mode():
            text = f"$ {line}\n# output {FAST_NOTE}"
        else:
            cmd = [sys.executable, "-m", "solvable", *argv[1:]] if argv[0] == "solvable" else argv
            p = subprocess.run(cmd, cwd=ROOT, env=_child_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, timeout=600, stdin=subprocess.DEVNULL)
            want = self.options.get("returncode", 0)
            if p.returncode != want:
                logger.warning(f"solvable-command `{line}` exited {p.returncode}, expected {want}:\n{p.stdout[-2000:]}",
                               location=self.get_location())
            out = p.stdout.rstrip("\n")
            n = self.options.get("max-lines")
            if n and out.count("\n") >= n:
                lines = out.split("\n")
                out = "\n".join(lines[:n] + [f"... ({len(lines) - n} more lines)"])
            text = f"$ {line}\n{out}" + (f"\n# exit status {p.returncode}" if p.returncode else "")
        block = nodes.literal_block(text, text)
        block["language"] = "console"
        return [block]


_SECTION = re.compile(r"^\s*[A-Z][A-Za-z ]*:\s*$")  # Args:, References:, ... (napoleon's sections)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def preformatted_math(app, what, name, obj, options, lines: list[str]) -> None:
    """The docstrings write their math as plain text, with aligned formulas in indented blocks after a
    blank line (``GD:  x+ = x - eta lambda x   stable iff lambda < 2/eta``). reStructuredText would read
    such a block as a block quote (and a deeper line in it as an error): make each one a literal block,
    shown exactly as written, by ending the line before it with ``::``. Runs before napoleon."""
    last = None  # index of the last non-blank line
    literal_at = None  # indentation of the paragraph that opened the current literal block
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        ind = _indent(line)
        if literal_at is not None:
            if ind > literal_at:
                last = i
                continue
            literal_at = None
        if (last is not None and ind > _indent(lines[last]) and not lines[i - 1].strip()
                and not lines[last].rstrip().endswith("::") and not _SECTION.match(lines[last])
                and not lines[last].lstrip().startswith(("..", ">>>", "- ", "* "))):
            prev = lines[last].rstrip()
            lines[last] = prev + ":" if prev.endswith(":") else prev + " ::"
            literal_at = _indent(lines[last])
        last = i


def _outdated(app, env, added, changed, removed) -> list[str]:
    """Pages whose executed content (commands, code cells) depends on the code: re-read them when
    the ``solvable`` sources changed since the last build (generated pages are rewritten anyway)."""
    h = sources_hash()
    if getattr(env, "solvable_sources_hash", None) == h:
        return []
    env.solvable_sources_hash = h
    return [d for d in env.found_docs if not d.startswith("generated/") and d not in added]


def setup(app):
    # the mode is part of the environment: a full build after a fast one re-reads every page
    app.add_config_value("solvable_docs_mode", "full", "env")
    app.connect("env-get-outdated", _outdated)
    app.connect("autodoc-process-docstring", preformatted_math, priority=100)
    app.add_config_value("solvable_findings", {}, "env")
    app.add_config_value("solvable_not_findings", (), "env")
    app.add_config_value("solvable_finding_pattern", r"(?!)", "env")
    app.add_directive("solvable-command", SolvableCommand)
    app.connect("builder-inited", generate)
    return {"version": "0.1", "parallel_read_safe": True, "parallel_write_safe": True}
