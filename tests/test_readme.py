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
