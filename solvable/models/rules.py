"""Learning-rate scaling rules measured on small torch networks, against their predictions.

The measurements come from :mod:`solvable.tools.rules` (``stable_lr``: the largest stable learning
rate per batch size, from vmapped learning-rate copies of the network and bisection); the
predictions from the same tool's curvature, linearized-kernel and gradient-noise formulas. This
module registers the claims that hold on those networks, in the form that holds.

References:
  Lewkowycz, Bahri, Dyer, Sohl-Dickstein, Gur-Ari, 2020. "The large learning rate phase of deep learning: the catapult mechanism." arXiv 2003.02218.
  McCandlish, Kaplan, Amodei et al., 2018. "An empirical model of large-batch training." arXiv 1812.06162.
  Ma, Bassily, Belkin, 2018. "The power of interpolation: understanding the effectiveness of SGD in modern over-parametrized learning." ICML, arXiv 1712.06559.
  Malladi, Lyu, Panigrahi, Arora, 2022. "On the SDEs and scaling rules for adaptive gradient algorithms." NeurIPS, arXiv 2205.10287.
"""

from __future__ import annotations

__all__: list[str] = []


# --------------------------------------------------------------------------------------------
# Section A: rules.linearized_threshold (wide two-layer networks near initialization)


# --------------------------------------------------------------------------------------------
# Section B: rules.noise_scale_critical_batch and rules.adam_sqrt_network
