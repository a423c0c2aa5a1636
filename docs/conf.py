"""Sphinx configuration of the solvable site (Sphinx + MyST-NB; see README, "Documentation").

Build: `make docs` (the whole site, notebooks executed, every claim verified) or
`SOLVABLE_DOCS_FAST=1 sphinx-build -W docs docs/_build/html` (no execution; what `make test` checks).
The catalog, notebooks, API and source pages are generated into docs/generated/ by
docs/_ext/solvable_docs.py; nothing there is edited by hand.
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# kernels and subprocesses (executed pages, `solvable-command`) import this checkout too
os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
sys.path.insert(0, str(Path(__file__).resolve().parent / "_ext"))

import solvable  # noqa: E402

project = "solvable"
author = "the solvable authors"
copyright = "the solvable authors"
release = version = solvable.__version__

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "sphinx-mathjax-offline",  # MathJax 3 copied from the package into _static: no CDN
    "solvable_docs",
]

exclude_patterns = ["_build", "**.ipynb_checkpoints", "_ext"]
html_theme = "furo"
html_title = f"solvable {release}"
html_static_path = []
# furo and the basic theme load nothing from the network; the test checks every page for it
html_theme_options = {"navigation_with_keys": True}

# MyST: $...$ and $$...$$ math, ::: fences
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

# Notebooks: the .ipynb pages are executed by solvable_docs (cached, sliders as static figures)
# and arrive with their outputs; the Markdown pages with code cells ("Property-test your own
# claim") are executed here, on every full build, and any error fails it.
solvable_docs_mode = "fast" if os.environ.get("SOLVABLE_DOCS_FAST", "") not in ("", "0") else "full"
nb_execution_mode = "off" if solvable_docs_mode == "fast" else "auto"
nb_execution_raise_on_error = True
nb_execution_timeout = 600
nb_execution_excludepatterns = ["generated/notebooks/*"]
nb_ipywidgets_js = {}  # no widget runtime from a CDN: widgets were rendered as static figures
nb_merge_streams = True

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True  # Attributes: as fields, not a second description of each dataclass field
napoleon_custom_sections = [("References", "notes_style")]

suppress_warnings = ["myst.header"]
nitpicky = False

# ---- Findings: claims whose literature statement did not hold as stated --------------------
# Listed here by id with a one-line summary, or found by the wording of their statement
# (solvable_finding_pattern); solvable_not_findings removes a false match of the pattern.
solvable_findings = {
    "dln.gr_rich_bias": "forward FD-GR shrinks the effective alpha more than GR (as Karakida et al. say), but with a "
                        "sparse teacher the solution moves away from the min-l1 interpolator: \"towards the rich "
                        "regime\" holds only in the effective-alpha sense.",
    "stability.adaptive_edge_of_stability": "Adam's preconditioned sharpness saws just below 38/eta (the final-window "
                                            "mean 2-14% under it), so the claim is stated on the window's 90th "
                                            "percentile.",
    "stability.sharpness_after_training": "sharpness <= 2/eta after training holds once GD has reached the edge; "
                                          "while still sharpening it can overshoot 2/eta by 11%.",
    "scaling.sgd_linear": "the SGD threshold grows linearly in the batch size only as B/B* -> 0 (fitted exponent 0.93 "
                          "over B <= 4) and flattens above the critical batch size.",
    "scaling.adam_sqrt": "Adam's square-root rule holds only for B << B*; above B* the threshold falls as 1/sqrt(B).",
    "scaling.batch_hessian_extremes": "the batch-Hessian outlier prediction holds for sampling without replacement; "
                                      "with replacement, duplicated examples act as extra spikes.",
    "sphere.convergence_threshold": "the threshold 2/(a_max - a_min) holds for F(u) = u^T A u / 2; for the Rayleigh "
                                    "quotient without the 1/2 it is 1/(a_max - a_min).",
    "sphere.three_regimes": "regime 3 is close to, not exactly, uniform on the sphere (the loss sits 0.3-1.2% below "
                            "the sphere average; KS rejects uniformity at d = 6).",
    "ergodic.weights_do_not_converge": "the weights' law settles within the run only once lr * weight_decay >= 0.006.",
    "symmetry.leaky_relu_invariance": "the LeakyReLU action is exact iff the rows of U s(VX) lie in the row space of "
                                      "s(gVX): width >= batch size is neither necessary nor sufficient.",
    "symmetry.newton_alignment": "on a linear-net orbit ||grad L||^2 has no maximum, only a balanced minimum, so the "
                                 "Newton-alignment premise does not apply there.",
    "symmetry.curvature_generalization": "sharpness (+) and orbit curvature (-) correlate with validation loss, but "
                                         "both track the initialisation scale; teleporting to larger curvature did "
                                         "not lower validation loss.",
    "symmetry.teleport_increases_gradient": "the paper's form of the action projects U when h > n, and a single step "
                                            "can then lower the gradient; the claim is registered for a corrected form.",
}
solvable_not_findings = ()
solvable_finding_pattern = (r"(does not hold|did not hold|not hold as stated|not reproduced|holds only|"
                            r"only (?:holds|as \w+ ->)|the paper's [^.;]* (?:fails|is wrong|is not)|contrary to)")
