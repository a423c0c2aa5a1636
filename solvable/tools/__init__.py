"""Model-agnostic tools for any ``torch.nn.Module``: ``curvature`` (Hessian-vector products,
Lanczos, preconditioned sharpness), ``kernels`` (empirical and infinite-width NTKs), ``landscape``
(filter-normalized directions, batched 1-D/2-D slices, linear interpolation and barriers), ``rules``
(largest stable learning rate per batch size, measured by vmapped learning-rate copies, against
full-batch, linearized-NTK and noise-scale predictions) and ``sweep`` (stores, executors, regime maps).
Import a tool by name: ``from solvable.tools import curvature``.
"""
