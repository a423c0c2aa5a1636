"""Model-agnostic tools for any ``torch.nn.Module``: ``curvature`` (Hessian-vector products,
Lanczos, preconditioned sharpness). Import a tool by name: ``from solvable.tools import curvature``.
"""
