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
    (["verify", "toy", "--set", "n=2.5"], "n='2.5' is not an integer"),
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
    assert code == 0 and "toy.sample_mean" in out and "1 passed, 0 failed" in out


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
