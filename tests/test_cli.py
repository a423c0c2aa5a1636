"""The command-line contract of DESIGN.md: JSON keys, --set, exit codes 0/1/2, one-line errors."""

import json
import subprocess
import sys

import pytest

from solvable.cli import main

KEYS = {"id", "statement", "reference", "params", "predicted", "measured", "error", "tolerance", "passed",
        "backend", "device", "seconds"}


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_verify_json_is_one_array_with_the_contract_keys(toy_registry, capsys):
    code, out, err = run(capsys, "verify", "toy", "--json")
    assert code == 0
    data = json.loads(out)
    assert isinstance(data, list) and len(data) == 1
    assert KEYS <= set(data[0])
    assert data[0]["params"] == {"mu": 1.0, "n": 400, "kind": "gauss"}  # defaults filled in
    assert data[0]["passed"] is True and data[0]["backend"] == "numpy" and data[0]["device"] == "cpu"


def test_set_applies_and_is_validated(toy_registry, capsys):
    code, out, _ = run(capsys, "verify", "toy.sample_mean", "--set", "mu=3", "--set", "n=900", "--json")
    assert code == 0
    assert json.loads(out)[0]["params"]["mu"] == 3.0 and json.loads(out)[0]["params"]["n"] == 900


@pytest.mark.parametrize("argv, needle", [
    (["verify", "nosuch"], "unknown claim id or prefix 'nosuch'"),
    (["verify", "toy", "--set", "mu=99"], "mu=99"),
    (["verify", "toy", "--set", "mu=abc"], "mu='abc' is not a number"),
    (["verify", "toy", "--set", "n=2.5"], "toy.sample_mean: n='2.5' is not an integer: n must be an integer in [2, 1000000]"),
    (["verify", "toy", "--seed", "-1"], "seed='-1' is out of range: seed must be an integer in [0, 9223372036854775807]"),
    (["verify", "toy", "--seed", "x"], "seed='x' is not an integer"),
    (["verify", "toy", "--json", "--csv"], "choose one output format"),
    (["falsify", "toy.sample_mean", "--max-examples", "0"], "max-examples='0' is out of range"),
    (["falsify", "toy.sample_mean", "--seeds", "0"], "seeds='0' is out of range"),
    (["list", "nosuch"], "unknown claim id or prefix 'nosuch'"),
    (["show", "toy.nosuch"], "unknown claim id 'toy.nosuch'"),
    (["verify", "toy", "--set", "zeta=1"], "no selected claim has a parameter 'zeta'"),
    (["verify", "toy", "--set", "mu"], "expected NAME=VALUE"),
    (["verify", "toy", "--set", "kind=other"], "kind='other' is not allowed"),
    (["falsify", "nosuch.claim"], "unknown claim id 'nosuch.claim'"),
    (["verify", "--backend", "jax"], "invalid choice"),
])
def test_usage_errors_exit_2_with_one_line(toy_registry, capsys, argv, needle):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert needle in err


def test_failed_claim_exits_1(toy_registry, capsys):
    code, out, _ = run(capsys, "verify", "toy", "--set", "kind=broken", "--json")
    assert code == 1
    assert json.loads(out)[0]["passed"] is False


def test_same_seed_same_numbers_different_seed_different(toy_registry, capsys):
    a = json.loads(run(capsys, "verify", "toy", "--seed", "5", "--json")[1])[0]["measured"]
    b = json.loads(run(capsys, "verify", "toy", "--seed", "5", "--json")[1])[0]["measured"]
    c = json.loads(run(capsys, "verify", "toy", "--seed", "6", "--json")[1])[0]["measured"]
    assert a == b and a != c


def test_torch_backend(toy_registry, capsys):
    code, out, _ = run(capsys, "verify", "toy", "--backend", "torch", "--json")
    assert code == 0 and json.loads(out)[0]["backend"] == "torch"


def test_table_output(toy_registry, capsys):
    code, out, _ = run(capsys, "verify", "toy")
    assert code == 0 and "toy.sample_mean" in out and "1 passed, 0 failed, 0 errors" in out


def test_list(toy_registry, capsys):
    code, out, _ = run(capsys, "list", "--json")
    entry = json.loads(out)[0]
    assert code == 0 and entry["id"] == "toy.sample_mean"
    assert entry["params"]["mu"]["range"] == "[-10, 10]" and entry["params"]["mu"]["default"] == 1.0
    assert run(capsys, "list")[0] == 0


def test_falsify_finds_nothing_in_domain_and_the_bias_in_the_wide_range(toy_registry, capsys):
    code, out, _ = run(capsys, "falsify", "toy.sample_mean", "--max-examples", "10", "--json")
    assert code == 0 and json.loads(out)["found"] is False
    code, out, _ = run(capsys, "falsify", "toy.sample_mean", "--max-examples", "60", "--wide", "--json")
    res = json.loads(out)
    assert code == 1 and res["found"] is True and res["counterexample"]["kind"] == "broken"


def test_report_writes_markdown_figures_and_json(toy_registry, capsys, tmp_path):
    code, _, err = run(capsys, "verify", "toy", "--report", str(tmp_path))
    assert code == 0
    md = (tmp_path / "report.md").read_text()
    assert "## toy.sample_mean" in md and "figures/toy.sample_mean.png" in md
    assert (tmp_path / "figures" / "toy.sample_mean.png").stat().st_size > 1000
    assert json.loads((tmp_path / "verdicts.json").read_text())[0]["id"] == "toy.sample_mean"


def test_python_dash_m_entry_point():
    r = subprocess.run([sys.executable, "-m", "solvable", "verify", "no.such.claim"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2 and r.stdout == "" and "unknown claim id or prefix" in r.stderr


# ---- issue 10, section 4: the command line a user sees

import csv  # noqa: E402
import io  # noqa: E402
import os  # noqa: E402
from pathlib import Path  # noqa: E402

import solvable  # noqa: E402
import solvable.report as report  # noqa: E402
from solvable import claims as _claims  # noqa: E402

from _toy import TOY_CLAIM  # noqa: E402

LONG_IDS = [f"stability.a_long_claim_name_that_rich_would_cut_at_eighty_columns_{i}" for i in range(3)]


@pytest.fixture
def long_ids(monkeypatch):
    """Three claims whose ids differ only after 70 characters (rich cut them to `stability…`)."""
    from dataclasses import replace

    reg = {i: replace(TOY_CLAIM, id=i) for i in LONG_IDS}
    monkeypatch.setattr(_claims, "_REGISTRY", reg)
    monkeypatch.setattr(solvable, "load_models", lambda: None)
    return reg


def _lines_with_id(out):
    return [ln for ln in out.splitlines() if ln.startswith("stability.")]


@pytest.mark.parametrize("width", [None, 60, 250], ids=["piped", "narrow-terminal", "wide-terminal"])
def test_verify_never_cuts_ids(long_ids, capsys, monkeypatch, width):
    monkeypatch.setattr(report, "terminal_width", lambda stream=None: width)
    code, out, _ = run(capsys, "verify", "stability")
    assert code == 0
    for i in LONG_IDS:
        assert i in out
    if width is None:  # a compact table: one line per claim, the whole id first
        assert [ln.split()[0] for ln in _lines_with_id(out)] == LONG_IDS
    elif width == 60:  # one block per claim: the id on its own line
        assert [ln.strip() for ln in _lines_with_id(out)] == LONG_IDS
    assert "…" not in out


@pytest.mark.parametrize("width", [None, 80, 250], ids=["piped", "narrow-terminal", "wide-terminal"])
def test_list_never_cuts_ids_and_filters_by_prefix(long_ids, capsys, monkeypatch, width):
    monkeypatch.setattr(report, "terminal_width", lambda stream=None: width)
    code, out, _ = run(capsys, "list")
    assert code == 0 and all(i in out for i in LONG_IDS) and "…" not in out
    if width is None:
        assert [ln for ln in out.splitlines() if ln.startswith("stability.")] == LONG_IDS
        assert len(out.splitlines()) == 4 * len(LONG_IDS)  # id, statement, parameters, blank
    code, out, _ = run(capsys, "list", LONG_IDS[1])
    assert code == 0 and LONG_IDS[1] in out and LONG_IDS[0] not in out


def test_list_prefix_filters_json(toy_claims, capsys):
    code, out, _ = run(capsys, "list", "toy.memory", "toy.pair", "--json")
    data = json.loads(out)
    assert code == 0 and [d["id"] for d in data] == ["toy.memory", "toy.pair"]
    assert data[1]["mutants"] == ["x from the far end", "the right formula"] and data[1]["bound"] is None


def test_show_prints_what_a_claim_is_and_where_it_lives(toy_claims, capsys):
    code, out, _ = run(capsys, "show", "toy.upper_bound")
    assert code == 0
    for needle in ["toy.upper_bound", "0.8 mu stays below mu", "reference:", "kind: upper bound",
                   "mu", "[-10, 10]", "[-5, 5]", "n", "integers in [2, 1000000]", "[100, 1000]",
                   "bound 0.5 mu", "bound 0.7 mu", "simulation:   tests/_toy.py:", "_toy_bound",
                   "tolerance:    tests/_toy.py:", "--check"]:
        assert needle in out, needle
    code, out, _ = run(capsys, "show", "toy.sample_mean", "--check")
    assert code == 0 and "tolerance reason:" in out and "5 standard errors 1/sqrt(n)" in out and "passed" in out


def test_show_finds_the_derivation_closed_form_and_simulation_of_a_real_claim(capsys):
    code, out, _ = run(capsys, "show", "stability.gd_threshold", "--json")
    d = json.loads(out)
    assert code == 0 and d["params"]["eta"]["range"] == "(0, inf)" and d["params"]["eta"]["domain"] == [0.001, 10]
    where = d["where"]
    assert where["derivation"] and where["derivation"][0]["file"] == "proofs_check/check_stability.py"
    assert where["simulation"]["file"] == "solvable/models/stability.py" and where["simulation"]["line"] > 0
    assert where["notebooks"] == ["notebooks/stability.ipynb"]
    for cf in where["closed_form"]:
        assert cf["file"] == "solvable/models/stability.py"


def test_a_claim_that_raises_is_an_error_row_with_its_reason(toy_claims, capsys):
    code, out, err = run(capsys, "verify", "toy.memory", "toy.sample_mean", "--set", "n=100000")
    assert code == 1
    row = next(ln for ln in out.splitlines() if ln.startswith("toy.memory"))
    assert "ERROR" in row and "ValueError: n=100000 is out of range" in row and "74.5 GiB" in row
    assert "0 passed, 0 failed, 1 error" not in out and "1 error" in out
    assert "toy.memory: n=100000 is outside the domain [2, 1000]" in err  # a note, with the claim
    code, out, _ = run(capsys, "verify", "toy.memory", "--set", "n=100000", "--set", "guard=none", "--json")
    (d,) = json.loads(out)
    assert code == 1 and KEYS <= set(d) and d["status"] == "error" and d["passed"] is False
    assert d["message"].startswith("MemoryError: Unable to allocate")


def test_failed_and_passed_rows_have_a_status(toy_claims, capsys):
    code, out, _ = run(capsys, "verify", "toy.pair", "--set", "x=0.1", "--json")
    (d,) = json.loads(out)
    assert code == 1 and d["status"] == "failed" and d["message"] == "failed check: x_at_least_quarter"


def test_report_to_an_unwritable_place_is_refused_before_running(toy_claims, capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    # toy.user_interrupt would end the run with 130: a 2 shows nothing ran
    code, out, err = run(capsys, "verify", "toy.user_interrupt", "--report", str(blocker / "sub"))
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and "--report" in err
    code, out, err = run(capsys, "verify", "toy.user_interrupt", "--report", str(blocker))
    assert code == 2 and "not a directory" in err


@pytest.mark.parametrize("fmt", ["table", "json"])
def test_ctrl_c_during_verify_prints_what_finished(toy_claims, capsys, fmt):
    argv = ["verify", "toy.sample_mean", "toy.user_interrupt"] + (["--json"] if fmt == "json" else [])
    code, out, err = run(capsys, *argv)
    assert code == 130
    assert err.strip().splitlines() == ["solvable: interrupted after 1 of 2 claims"]
    assert "Traceback" not in out + err
    if fmt == "json":
        assert [d["id"] for d in json.loads(out)] == ["toy.sample_mean"]
    else:
        assert "toy.sample_mean" in out and "passed" in out


def test_ctrl_c_during_falsify_prints_the_search_so_far(toy_claims, capsys):
    import _toy

    _toy.INTERRUPT_AFTER[0] = 4  # three examples, then Ctrl-C
    code, out, err = run(capsys, "falsify", "toy.user_interrupt")
    assert code == 130 and "Traceback" not in out + err and "@seed" not in out + err
    assert err.strip().splitlines() == ["solvable: interrupted after 3 examples"]
    assert "tried 3 examples" in out and "no counterexample found before the interruption" in out


def test_set_messages_name_the_claim_and_blame_no_other_parameter(toy_claims, capsys):
    code, _, err = run(capsys, "verify", "toy.pair", "--set", "lo=5")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "toy.pair: --set lo=5 is valid alone but conflicts with the claim's other parameters" in err


def test_falsify_names_the_failed_check_first_and_says_what_it_searched(toy_claims, capsys):
    code, out, _ = run(capsys, "falsify", "toy.pair", "--wide", "--max-examples", "100")
    assert code == 1
    lines = out.splitlines()
    assert lines[0].startswith("toy.pair: tried ") and "searched over its valid range and its domain" in lines[0]
    assert "  x   [0, 1] and the domain [0.5, 1]" in out
    i = next(k for k, ln in enumerate(lines) if ln.startswith("counterexample"))
    assert lines[i + 1] == "  failed check: x_at_least_quarter"  # the cause, before the numbers
    assert lines[i + 2].strip().startswith("predicted")
    code, out, _ = run(capsys, "falsify", "toy.sample_mean", "--max-examples", "5")
    assert code == 0 and "tried 5 examples" in out and "mu    [-5, 5]" in out and "no counterexample found" in out


def test_falsify_seeds_reports_the_failure_rate_at_the_defaults(toy_claims, capsys):
    code, out, _ = run(capsys, "falsify", "toy.flaky", "--seeds", "8", "--max-examples", "3")
    assert code == 1
    assert "at its defaults: toy.flaky fails for 2 of 8 seeds (0-7): seeds 1, 5; rate 0.25" in out
    code, out, _ = run(capsys, "falsify", "toy.flaky", "--seeds", "8", "--max-examples", "3", "--json")
    d = json.loads(out)
    assert d["defaults"]["k"] == 2 and d["defaults"]["n"] == 8 and d["defaults"]["failed"] == [1, 5]
    assert d["seeds"] == list(range(8)) and d["region"]["seed"].startswith("[0, 7]")


def test_falsify_leaves_no_hypothesis_folder_in_the_current_directory(tmp_path):
    tests = Path(__file__).resolve().parent
    script = ("import sys; sys.path.insert(0, {tests!r}); import solvable; from solvable import claims; "
              "from _toy import ALL_TOYS; [claims.register(c) for c in ALL_TOYS]; "
              "solvable.load_models = lambda: None; from solvable.cli import main; "
              "sys.exit(main(['falsify', 'toy.pair', '--wide', '--max-examples', '100']))").format(tests=str(tests))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYPOTHESIS")}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    env["PYTHONPATH"] = str(tests.parent)
    work = tmp_path / "work"
    work.mkdir()
    r = subprocess.run([sys.executable, "-c", script], cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "counterexample" in r.stdout, r.stderr
    assert list(work.iterdir()) == []  # no .hypothesis/ here
    assert not (tmp_path / "cache" / "solvable" / "hypothesis" / "examples").exists()  # no database anywhere


def _help(capsys, *argv):
    code = main([*argv, "--help"])
    out, _ = capsys.readouterr()
    assert code == 0
    return " ".join(out.split())  # argparse wraps lines


def test_help_describes_every_option_with_its_default(capsys):
    from solvable.cli import _build_parser

    parser = _build_parser()
    subs = next(a for a in parser._actions if isinstance(a, __import__("argparse")._SubParsersAction))
    for name, sub in subs.choices.items():
        for action in sub._actions:
            if action.option_strings and action.dest != "help":
                assert action.help and "default" in action.help, (name, action.option_strings)
    out = _help(capsys, "verify")
    assert "the run's simulation seed" in out and "--set seed=N" in out and "(default: 0)" in out
    assert "(default: numpy" in out and "--csv" in out and "--mutants" in out
    out = _help(capsys, "falsify")
    assert "--seeds N" in out and "(default: 50)" in out
    assert "exit status" in _help(capsys)


def test_verify_csv(toy_claims, capsys):
    for argv in (["--csv"], ["--format", "csv"]):
        code, out, _ = run(capsys, "verify", "toy.sample_mean", "toy.memory", "--set", "n=100000", *argv)
        rows = list(csv.DictReader(io.StringIO(out)))
        assert code == 1 and [r["id"] for r in rows] == ["toy.memory", "toy.sample_mean"]
        assert rows[0]["status"] == "error" and rows[0]["error"] == "" and rows[0]["message"].startswith("ValueError")
        assert rows[1]["status"] == "failed" or rows[1]["status"] == "passed"
        assert json.loads(rows[1]["params"])["n"] == 100000 and float(rows[1]["tolerance"]) > 0


def test_verify_mutants_power_table_json_and_report(toy_claims, capsys, tmp_path):
    code, out, _ = run(capsys, "verify", "toy.sample_mean", "toy.upper_bound", "--mutants")
    assert code == 0
    assert "mutant" in out and "rejected" in out and "biased by one standard deviation" in out
    row = next(ln for ln in out.splitlines() if "bound 0.7 mu" in ln)
    assert row.startswith("toy.upper_bound") and row.split()[-1] == "yes"
    assert "power: 4 of 4 mutants rejected" in out
    code, out, _ = run(capsys, "verify", "toy.pair", "--mutants", "--json")
    (d,) = json.loads(out)
    assert code == 1  # "the right formula" is not rejected: the claim has no power against it
    assert d["mutants"]["the right formula"]["rejected"] is False and d["mutants"]["x from the far end"]["rejected"]
    code, _, _ = run(capsys, "verify", "toy.sample_mean", "toy.upper_bound", "--mutants", "--report", str(tmp_path))
    md = (tmp_path / "report.md").read_text()
    assert code == 0 and "## Power: mutants" in md and "| `toy.upper_bound` | bound 0.5 mu |" in md


def test_report_labels_bounds_and_sweeps_at_least_six_points(toy_claims, capsys, tmp_path):
    code, _, _ = run(capsys, "verify", "toy.upper_bound", "toy.sample_mean", "--report", str(tmp_path))
    md = (tmp_path / "report.md").read_text()
    assert code == 0
    assert "| upper bound |" in md and "kind: upper bound (upper bound: measured must stay below it)" in md
    note = next(ln for ln in md.splitlines() if ln.startswith("*Figure:") and "`mu`" in ln and "bound" in ln)
    assert len(note.split("over ")[1].split(";")[0].split(",")) >= 6
    assert (tmp_path / "figures" / "toy.upper_bound.png").stat().st_size > 1000


def test_report_skips_the_figure_of_an_error_verdict(toy_claims, capsys, tmp_path):
    code, _, _ = run(capsys, "verify", "toy.memory", "--set", "n=100000", "--report", str(tmp_path))
    md = (tmp_path / "report.md").read_text()
    assert code == 1 and "no figure: the check raised" in md and "**error**" in md


def test_tolerance_band_and_sweep_points():
    from _toy import TOY_BOUND, TOY_PAIR

    lo, hi = report.tolerance_band(TOY_CLAIM, 0.0, 0.25)  # max_abs_error: mu +- tolerance
    assert lo[0] == pytest.approx(-0.25, rel=1e-9) and hi[0] == pytest.approx(0.25, rel=1e-9)
    lo, hi = report.tolerance_band(TOY_BOUND, 2.0, 0.01)  # an upper bound: free below, 1% above
    assert lo[0] == -math.inf and hi[0] == pytest.approx(2.02, rel=1e-9)
    assert report.tolerance_band(TOY_PAIR, [1.0] * 7, 0.1) is None  # more entries than a figure shows
    pts = report.sweep_points(TOY_CLAIM)  # declared (-1, 0, 2): linear, the declared values kept
    assert len(pts) >= report.MIN_SWEEP_POINTS and {-1.0, 0.0, 2.0} <= set(pts) and pts == sorted(pts)
    assert len(report.sweep_points(TOY_PAIR)) >= 6 and report.sweep_points(TOY_BOUND)[-1] == 4.0


import math  # noqa: E402
