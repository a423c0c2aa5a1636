"""Model-agnostic tools for any ``torch.nn.Module``: ``curvature`` (Hessian-vector products,
Lanczos, preconditioned sharpness), ``landscape`` (filter-normalized directions, batched 1-D/2-D
slices, linear interpolation and barriers). Import a tool by name: ``from solvable.tools import curvature``.
"""
