"""The documentation site builds with warnings as errors, its catalog has a section for every
registered claim, and no page loads a script, a stylesheet or a font from the network.

The fast build (``SOLVABLE_DOCS_FAST=1``: no verification run, no notebook or command executed,
placeholder verdicts) runs in the default suite; the full build (``make docs``: every claim
verified with its mutants and figure, the notebooks and the pages' commands executed) is marked slow.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

pytest.importorskip("sphinx", reason="the docs extra is not installed (pip install -e '.[docs]')")
pytest.importorskip("myst_nb", reason="the docs extra is not installed (pip install -e '.[docs]')")


def _build(out: Path, *, fast: bool, timeout: int) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["SOLVABLE_DOCS_FAST"] = "1" if fast else "0"
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", "-d", str(out / "doctrees"),
           str(DOCS), str(out / "html")]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


class _Refs(HTMLParser):
    """Every script src, stylesheet/preload/icon href, iframe src and inline <style> of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.styles: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag in ("script", "iframe", "img") and a.get("src"):
            self.urls.append(a["src"])
        if tag == "link" and a.get("href") and set((a.get("rel") or "").split()) & {"stylesheet", "preload",
                                                                                  "icon", "modulepreload"}:
            self.urls.append(a["href"])
        self._in_style = tag == "style"

    def handle_data(self, data):
        if self._in_style:
            self.styles.append(data)

    def handle_endtag(self, tag):
        if tag == "style":
            self._in_style = False


_REMOTE = re.compile(r"^\s*(https?:)?//", re.I)
_CSS_REMOTE = re.compile(r"(@import\s+(url\()?\s*['\"]?|url\(\s*['\"]?)(https?:)?//", re.I)


def network_references(html_dir: Path) -> list[str]:
    """``page: url`` for every script, stylesheet, font or image the site would fetch from the network."""
    bad = []
    for page in html_dir.rglob("*.html"):
        p = _Refs()
        p.feed(page.read_text(errors="replace"))
        bad += [f"{page.relative_to(html_dir)}: {u}" for u in p.urls if _REMOTE.match(u)]
        bad += [f"{page.relative_to(html_dir)}: inline style imports {m.group(0)}" for s in p.styles
                for m in _CSS_REMOTE.finditer(s)]
    for css in html_dir.rglob("*.css"):
        bad += [f"{css.relative_to(html_dir)}: {m.group(0)}" for m in _CSS_REMOTE.finditer(css.read_text(errors="replace"))]
    return bad


def _claims():
    import solvable

    return solvable.all_claims()


def _label(claim_id: str) -> str:
    sys.path.insert(0, str(DOCS / "_ext"))
    try:
        import solvable_docs
    finally:
        sys.path.pop(0)
    return solvable_docs.label("claim", claim_id)


def _check_site(html: Path) -> None:
    claims = _claims()
    assert claims
    missing = []
    for c in claims:
        page = html / "generated" / "catalog" / f"{c.module}.html"
        text = page.read_text() if page.exists() else ""
        if f'id="{_label(c.id)}"' not in text or c.id not in text:
            missing.append(c.id)
    assert not missing, f"claims without a catalog section: {missing}"
    index = (html / "generated" / "catalog" / "index.html").read_text()
    assert all(c.id in index for c in claims)
    # the math is typeset by the MathJax copy shipped with the site
    assert (html / "_static" / "mathjax" / "tex-chtml.js").exists()
    assert "_static/mathjax/tex-chtml.js" in (html / "property-testing.html").read_text()
    assert network_references(html) == []


@pytest.fixture(scope="module")
def fast_site(tmp_path_factory):
    out = tmp_path_factory.mktemp("docs-fast")
    res = _build(out, fast=True, timeout=600)
    assert res.returncode == 0, f"the fast docs build failed (warnings are errors):\n{res.stdout[-4000:]}\n{res.stderr[-6000:]}"
    return out / "html"


def test_fast_build_has_every_claim_and_no_network(fast_site):
    _check_site(fast_site)
    # every model page links its notebook, derivation and source pages
    from solvable.models import MODULES

    for m in MODULES:
        if any(c.module == m for c in _claims()):
            text = (fast_site / "generated" / "catalog" / f"{m}.html").read_text()
            assert f"source/{m}.html" in text


def test_findings_page_lists_the_configured_findings(fast_site):
    text = (fast_site / "generated" / "findings.html").read_text()
    conf: dict = {}
    src = (DOCS / "conf.py").read_text()
    exec(compile(src.split("# ---- Findings", 1)[1].split("\n", 1)[1], "conf.py", "exec"), conf)
    ids = {c.id for c in _claims()}
    listed = [i for i in conf["solvable_findings"] if i in ids]
    assert listed and all(i in text for i in listed)


def test_findings_configured_exist():
    """A finding named in docs/conf.py that is no longer registered is a stale entry."""
    conf: dict = {}
    src = (DOCS / "conf.py").read_text()
    exec(compile(src.split("# ---- Findings", 1)[1].split("\n", 1)[1], "conf.py", "exec"), conf)
    ids = {c.id for c in _claims()}
    assert not set(conf["solvable_findings"]) - ids


def test_markdown_helpers():
    sys.path.insert(0, str(DOCS / "_ext"))
    try:
        import solvable_docs as sd
    finally:
        sys.path.pop(0)
    s = sd.md_text("Cohen et al. 2021, arXiv 2103.00065; u*u and |x|_{2}")
    assert "[arXiv 2103\\.00065](https://arxiv.org/abs/2103.00065)" in s
    assert "u\\*u" in s and "\\|x\\|\\_\\{2\\}" in s


def test_network_check_catches_a_cdn(tmp_path):
    (tmp_path / "a.html").write_text('<html><head><script src="https://cdn.example/x.js"></script>'
                                     '<link rel="stylesheet" href="//fonts.example/f.css"></head></html>')
    (tmp_path / "b.css").write_text("@import url('https://fonts.example/css');")
    (tmp_path / "ok.html").write_text('<script src="_static/mathjax/tex-chtml.js"></script><a href="https://arxiv.org">')
    bad = network_references(tmp_path)
    assert len(bad) == 3 and not any("ok.html" in b for b in bad)


@pytest.mark.slow
def test_full_build(tmp_path):
    """`make docs`: every claim verified (figures), notebooks and commands executed."""
    res = _build(tmp_path, fast=False, timeout=3600)
    assert res.returncode == 0, f"the docs build failed:\n{res.stdout[-4000:]}\n{res.stderr[-6000:]}"
    html = tmp_path / "html"
    _check_site(html)
    figs = {p.stem for p in (html / "_images").glob("*.png")}
    no_figure = [c.id for c in _claims() if c.id not in figs]
    assert not no_figure, f"claims without a figure: {no_figure}"
    for nb in (ROOT / "notebooks").glob("*.ipynb"):
        page = (html / "generated" / "notebooks" / f"{nb.stem}.html").read_text()
        assert "<img" in page, f"{nb.name}: no plot on its page"
    assert "not run in this build" not in (html / "cli.html").read_text()
