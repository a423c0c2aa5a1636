"""Every registered claim as a property test over its domain, plus the coverage rules.

- property: hypothesis draws parameters from the claim's domain; predicted and measured agree;
- torch: the default parameters verify on torch (CPU here; CUDA under the ``gpu`` marker);
- seeds: the same seed gives the same measured numbers;
- coverage: each claim has a ``@proves`` check in ``proofs_check/``, appears in a notebook, and its
  module has a test file.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import solvable
from solvable.backend import cuda_available
from solvable.claims import _jsonable
from solvable.testing import assert_claim, claim_sample, params_strategy

ROOT = Path(__file__).resolve().parents[1]
CLAIMS = solvable.all_claims()
IDS = [c.id for c in CLAIMS]


def test_registry_is_not_empty():
    assert CLAIMS, "no claim is registered: solvable.models.MODULES is empty"


# Points per claim in the property test: a time budget, not a fixed count (see
# tests/make_claim_examples.py, which writes the file from each claim's measured cost).
CLAIM_EXAMPLES: dict[str, int] = json.loads((ROOT / "tests" / "claim_examples.json").read_text()) \
    if (ROOT / "tests" / "claim_examples.json").exists() else {}
DEFAULT_EXAMPLES = 4


@pytest.mark.parametrize("claim", CLAIMS, ids=IDS)
def test_claim_holds_over_its_domain_and_rejects_its_mutants(claim, record_property):
    """The claim holds at every draw; each mutant is rejected on at least ``mutant_power`` of them
    (judged on the same measurements, so the power costs no extra simulation).

    The sample: ``tests/claim_examples.json`` points for this claim (a ~6 s single-core budget, 4 to
    40; 4 for a claim not in the file). In the ``ci`` profile they are drawn with a fixed seed of the
    claim's own (``solvable.testing.SOLVABLE_CI_SEED``, rotated deliberately once per release), so
    that landing never depends on luck; ``thorough`` draws at least 60 at random. The number of
    points checked is recorded (``record_property("examples", n)``) and printed.
    """
    rejected: dict[str, list[bool]] = {name: [] for name in claim.mutants}
    drawn: list[int] = []

    @claim_sample(claim.id, CLAIM_EXAMPLES.get(claim.id, DEFAULT_EXAMPLES))
    @given(st.data())
    def prop(data):
        p = data.draw(params_strategy(claim.params), label="params")
        seed = data.draw(st.integers(0, 2**16), label="seed")
        v = assert_claim(claim, p, seed=seed, mutants=True)
        drawn.append(seed)
        for name, res in v.mutants.items():
            rejected[name].append(res.rejected)

    prop()
    record_property("examples", len(drawn))
    print(f"{claim.id}: {len(drawn)} examples")
    weak = {name: f"{sum(r)}/{len(r)}" for name, r in rejected.items()
            if r and sum(r) < claim.mutant_power * len(r)}
    assert not weak, (f"{claim.id}: mutants rejected on fewer than {claim.mutant_power:.0%} of the domain "
                      f"draws: {weak}")


def test_claim_examples_file_is_a_budget_per_claim():
    from make_claim_examples import MAX_EXAMPLES, MIN_EXAMPLES, examples_for

    for cid, n in CLAIM_EXAMPLES.items():
        assert "." in cid and isinstance(n, int) and MIN_EXAMPLES <= n <= MAX_EXAMPLES, (cid, n)
    assert examples_for(0.1) == 40 and examples_for(1.0) == 6 and examples_for(3.0) == 4


def _second_backend(claim) -> str:
    return "torch" if "torch" in claim.backends else claim.backends[0]


def _closed_form_targets(claim) -> list[tuple[object, str]]:
    out = []
    for name in claim.closed_forms:
        mod_name, _, fn = name.rpartition(".")
        module = importlib.import_module(f"solvable.models.{mod_name or claim.module}")
        assert hasattr(module, fn), f"{claim.id}: closed_forms names {name!r}, which does not exist"
        out.append((module, fn))
    return out


@pytest.mark.parametrize("claim", CLAIMS, ids=[f"{c.id}-{_second_backend(c)}-cpu" for c in CLAIMS])
def test_defaults_hold_on_torch_and_same_seed_same_numbers(claim, monkeypatch):
    """Default parameters verify on torch (CPU) with the closed forms made unreachable from the
    simulation and the tolerance; every mutant is rejected there; the seed repeats the numbers."""
    p = claim.params()
    be = claim.resolve_backend(_second_backend(claim), "cpu")
    for module, fn in _closed_form_targets(claim):
        def forbidden(*a, _n=f"{module.__name__}.{fn}", **k):
            raise AssertionError(f"{claim.id}: the simulation or tolerance called the closed form {_n}")
        monkeypatch.setattr(module, fn, forbidden)
    try:
        meas = claim.measure(p, backend=be, seed=3)
        tol = claim.tolerance(p, meas, be)
    finally:
        monkeypatch.undo()
    err, marg, passed = claim.judge(p, claim.predicted(p), meas, tol)
    assert passed, (f"{claim.id} failed at its defaults on {be.name}: error {err} vs tolerance {tol.value} "
                    f"({tol.reason}); checks={meas.checks}; diverged={meas.diverged}; info={meas.info}")
    v = claim.check(p, backend=be, seed=3, mutants=True)  # unpatched: same seed, same numbers
    np.testing.assert_array_equal(np.asarray(_jsonable(meas.value), dtype=float), np.asarray(v.measured, dtype=float))
    kept = [name for name, res in v.mutants.items() if not res.rejected]
    assert not kept, f"{claim.id}: mutants not rejected at the defaults: {kept} ({v.mutants})"


def test_every_claim_has_two_mutants_and_names_its_closed_forms():
    weak = [c.id for c in CLAIMS if len(c.mutants) < 2]
    assert not weak, f"claims with fewer than two mutants (wrong formulas their check must reject): {weak}"
    unnamed = [c.id for c in CLAIMS if not c.closed_forms]
    assert not unnamed, f"claims that do not name the closed forms behind `predicted`: {unnamed}"


@pytest.mark.gpu
@pytest.mark.skipif(not cuda_available(), reason="CUDA not available")
@pytest.mark.parametrize("claim", [c for c in CLAIMS if "torch" in c.backends],
                         ids=[c.id + "-torch-cuda" for c in CLAIMS if "torch" in c.backends])
def test_claim_holds_on_cuda(claim):
    assert_claim(claim, backend="torch", device="cuda")


def test_claim_ids_are_owned_by_their_module():
    for c in CLAIMS:
        owner = c.measured.__module__
        assert owner == f"solvable.models.{c.module}" or owner.startswith(f"solvable.models.{c.module}."), (
            f"{c.id} is measured in {owner}: the id's prefix must be the module that owns it")


def _proved_ids() -> set[str]:
    ids: set[str] = set()
    for path in sorted((ROOT / "proofs_check").glob("check_*.py")):
        spec = importlib.util.spec_from_file_location(f"_proofs_{path.stem}", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        for obj in vars(mod).values():
            ids.update(getattr(obj, "__proves__", ()))
    return ids


def _notebook_text() -> str:
    parts = []
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = json.loads(path.read_text())
        parts.extend("".join(cell["source"]) for cell in nb["cells"])
    return "\n".join(parts)


def test_every_claim_has_a_proof_check():
    missing = sorted(set(IDS) - _proved_ids())
    assert not missing, f"claims with no @proves check in proofs_check/: {missing}"


def test_every_proof_check_names_a_registered_claim():
    unknown = sorted(_proved_ids() - set(IDS))
    assert not unknown, f"proofs_check names claims that are not registered: {unknown}"


def test_every_claim_is_shown_in_a_notebook():
    text = _notebook_text()
    missing = [i for i in IDS if i not in text]
    assert not missing, f"claims not shown in any notebook: {missing}"


def test_every_model_has_its_test_file():
    missing = sorted({c.module for c in CLAIMS if not (ROOT / "tests" / f"test_{c.module}.py").exists()})
    assert not missing, f"model modules with no tests/test_<module>.py: {missing}"


# ------------------------------------------------------------------------------------------
# The engine itself, on the toy claim of conftest.py

from _toy import TOY_CLAIM, ToyParams  # noqa: E402
from solvable.claims import Claim, Measurement, Tolerance, apply_overrides, relative_error  # noqa: E402


def test_params_validate_on_construction():
    with pytest.raises(ValueError, match=r"mu=11 is out of range: mu must be a finite number in \[-10, 10\]"):
        ToyParams(mu=11)
    with pytest.raises(ValueError, match="n=1.5 is not an integer"):
        ToyParams(n=1.5)
    assert ToyParams(n=3.0).n == 3 and isinstance(ToyParams(n=3.0).n, int)


def test_select_by_prefix_and_unknown(toy_registry):
    assert [c.id for c in solvable.select("toy")] == ["toy.sample_mean"]
    assert [c.id for c in solvable.select(["toy.sample_mean"])] == ["toy.sample_mean"]
    with pytest.raises(KeyError, match="unknown claim id or prefix 'to'"):
        solvable.select("to")  # a prefix must end at a dot


def test_divergence_is_a_failed_verdict_not_nan():
    diverging = Claim(id="toy.diverging", statement="s", reference="r", params=ToyParams,
                      predicted=lambda p: 1.0,
                      measured=lambda p, be, seed: Measurement(value=float("nan"), diverged=True, diverged_step=7),
                      tolerance=lambda p, m, be: Tolerance(0.1, "any"))
    v = diverging.check()
    assert not v.passed and v.diverged and v.diverged_step == 7
    assert v.to_json()["error"] == "inf" and v.to_json()["measured"] is None  # no NaN in the JSON
    json.dumps(v.to_json(), allow_nan=False)


def test_failed_check_fails_the_verdict():
    checked = Claim(id="toy.checked", statement="s", reference="r", params=ToyParams, predicted=lambda p: 1.0,
                    measured=lambda p, be, seed: Measurement(value=1.0, checks={"monotone": False}),
                    tolerance=lambda p, m, be: Tolerance(0.1, "any"))
    assert not checked.check().passed


def test_relative_error_shapes():
    assert relative_error([1.0, 0.0], [1.0, 0.1]) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="shape"):
        relative_error([1.0], [1.0, 2.0])


def test_verify_api(toy_registry):
    vs = solvable.verify("toy", mu=2)
    assert vs.passed and vs[0].params["mu"] == 2.0 and "toy.sample_mean" in str(vs)
    assert "<table>" in vs._repr_html_()
    with pytest.raises(ValueError, match="zeta"):
        apply_overrides([TOY_CLAIM], {"zeta": "1"})


def test_a_check_that_raises_is_an_error_verdict_with_a_one_line_reason():
    from _toy import TOY_MEMORY, ToyMemoryParams

    with pytest.raises(ValueError, match="n=100000"):
        TOY_MEMORY.check(ToyMemoryParams(n=100000))  # the default: raise
    v = TOY_MEMORY.check(ToyMemoryParams(n=100000), on_error="verdict")
    assert v.status == "error" and not v.passed and v.predicted is None
    assert v.message.startswith("ValueError: n=100000 is out of range") and "\n" not in v.message
    assert "Traceback" in v.info["traceback"] and "check_memory" in v.info["traceback"]
    v = TOY_MEMORY.check(ToyMemoryParams(n=100000, guard="none"), on_error="verdict")
    assert v.status == "error" and v.message.startswith("MemoryError: Unable to allocate")
    d = v.to_json()
    assert d["status"] == "error" and d["error"] is None and d["tolerance"] is None
    json.dumps(d, allow_nan=False)
    with pytest.raises(ValueError, match="on_error"):
        TOY_MEMORY.check(on_error="ignore")


def test_verdict_status_and_message():
    v = TOY_CLAIM.check()
    assert v.status == "passed" and v.message == "" and v.to_json()["status"] == "passed" and v.bound is None
    v = TOY_CLAIM.check(ToyParams(kind="broken", n=10**5))
    assert v.status == "failed" and v.message.startswith("error 0.49") and "> tolerance 0.0158" in v.message


def test_failed_checks_are_named_before_the_error():
    from _toy import TOY_PAIR, ToyPairParams

    v = TOY_PAIR.check(ToyPairParams(x=0.1))
    assert v.status == "failed" and v.message == "failed check: x_at_least_quarter"
    failing = Claim(id="toy.both", statement="s", reference="r", params=ToyParams, predicted=lambda p: 1.0,
                    measured=lambda p, be, seed: Measurement(value=[1.0, 3.0], checks={"a": False, "b": False}),
                    tolerance=lambda p, m, be: Tolerance([0.1, 0.2], "any"), error=lambda p, m: [0.0, 2.0])
    assert failing.check().message == "failed checks: a, b; entry 1: error 2 > tolerance 0.2"


def test_set_messages_name_the_claim_the_value_and_the_range():
    from _toy import TOY_PAIR

    with pytest.raises(ValueError) as e:
        apply_overrides([TOY_CLAIM], {"n": "2.5"})
    assert str(e.value) == "toy.sample_mean: n='2.5' is not an integer: n must be an integer in [2, 1000000]"
    with pytest.raises(ValueError) as e:
        apply_overrides([TOY_CLAIM], {"n": "1"})
    assert str(e.value).startswith("toy.sample_mean: n='1' is out of range") and "[2, 1000000]" in str(e.value)
    with pytest.raises(ValueError) as e:  # valid alone, refused by the claim's cross-parameter check
        apply_overrides([TOY_PAIR], {"lo": "5"})
    msg = str(e.value)
    assert msg.startswith("toy.pair: --set lo=5 is valid alone but conflicts with the claim's other parameters")
    assert "hi=1.0" in msg


def test_outside_domain_notes_name_the_claim():
    from solvable.claims import outside_domain

    assert outside_domain(TOY_CLAIM, ToyParams()) == []
    (note,) = outside_domain(TOY_CLAIM, ToyParams(n=5000))
    assert note.startswith("toy.sample_mean: n=5000 is outside the domain [100, 1000]")
    assert "integers in [2, 1000000]" in note
