"""The README's example of property-testing a claim of one's own runs as written."""

import re
from pathlib import Path

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_property_testing_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    block = next(b for b in blocks if "params_strategy" in b)
    ns: dict = {}
    exec(compile(block, "README.md", "exec"), ns)
    ns["test_my_claim"]()  # the hypothesis test defined in the example passes
    found = ns["falsify"](ns["my_claim"], max_examples=30, wide=True).counterexample
    # Outside [0.1, 1.9]: too small to converge in 400 steps, or at least 2 (divergence).
    assert found is not None and not 0.1 <= found["eta"] <= 1.9


def test_learning_rate_rules_example_runs():
    section = README.split("## Learning-rate rules on your own model", 1)[1].split("\n## ", 1)[0]
    block = re.findall(r"```python\n(.*?)```", section, flags=re.S)[0]
    assert len(block.strip().splitlines()) == 5
    ns: dict = {}
    exec(compile(block, "README.md", "exec"), ns)
    m, p = ns["measured"], ns["predicted"]
    assert len(m.lr) == 2 and all(x > 0 for x in m.lr) and len(p) == 2
    # B = N (full batch): the linearized threshold is 2/lambda_max of the NTK Hessian, which the
    # measurement (final loss <= 2 L_0 after 40 steps) must not undercut by more than its grid
    assert m.lr[1] > 0.5 * p[1]
