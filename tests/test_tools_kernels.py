"""solvable.tools.kernels: the empirical NTK against a dense per-example Jacobian, and the
infinite-width ReLU NTK against the mean of empirical NTKs."""

import math

import numpy as np
import pytest
import torch

from solvable.backend import cuda_available
from solvable.tools import kernels as tk


def _net(k=2, seed=0, device="cpu"):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 16),
                               torch.nn.ReLU(), torch.nn.Linear(16, k)).double().to(device)


class _Squeeze(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x)[:, 0]


@pytest.mark.parametrize("method", ["jacobian", "implicit", "auto"])
@pytest.mark.parametrize("k", [1, 3])
def test_empirical_ntk_matches_dense_jacobian(method, k):
    net = _net(k) if k > 1 else _Squeeze(_net(1))  # k = 1: one number per example, shape (n,)
    g = torch.Generator().manual_seed(1)
    x1 = torch.randn(5, 3, dtype=torch.float64, generator=g)
    x2 = torch.randn(4, 3, dtype=torch.float64, generator=g)
    ref = tk.ntk_from_jacobian(tk.dense_jacobian(net, x1), tk.dense_jacobian(net, x2))
    K = tk.empirical_ntk(net, x1, x2, method=method)
    if k == 1:
        ref = ref[..., 0, 0]
    assert K.shape == ref.shape == ((5, 4) if k == 1 else (5, 4, k, k))
    torch.testing.assert_close(K, ref, rtol=1e-12, atol=1e-12)
    # on one set of inputs: a symmetric positive semi-definite (n k) x (n k) matrix
    M = tk.empirical_ntk(net, x1, method=method)
    M = M if k == 1 else M.permute(0, 2, 1, 3).reshape(5 * k, 5 * k)
    torch.testing.assert_close(M, M.T)
    assert torch.linalg.eigvalsh(M).min() > -1e-10


def test_bad_input():
    net = _net()
    with pytest.raises(ValueError, match="method='dense' is not allowed"):
        tk.empirical_ntk(net, torch.zeros(2, 3, dtype=torch.float64), method="dense")
    with pytest.raises(ValueError, match="x2 has shape"):
        tk.empirical_ntk(net, torch.zeros(2, 3, dtype=torch.float64), torch.zeros(2, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"depth=0 is out of range"):
        tk.relu_ntk(np.eye(2), depth=0)


def test_relu_ntk_is_the_mean_of_one_hidden_layer_ntks():
    # with one hidden layer E_init[Theta_emp] equals the arc-cosine NTK at every width: the mean over
    # 64 initialisations agrees within 4 standard errors
    g = torch.Generator().manual_seed(2)
    x = torch.randn(4, 5, dtype=torch.float64, generator=g)
    Ks = []
    for s in range(64):
        torch.manual_seed(s)
        Ks.append(tk.empirical_ntk(tk.NTKMLP(5, 64, depth=1, dtype=torch.float64), x).numpy())
    Ks = np.array(Ks)
    m, se = Ks.mean(0), Ks.std(0, ddof=1) / math.sqrt(len(Ks))
    assert np.all(np.abs(m - tk.relu_ntk(x.numpy(), depth=1)) < 4 * se + 1e-12)


def test_relu_ntk_fluctuations_shrink_with_width():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(4, 5, dtype=torch.float64, generator=g)
    Ka = tk.relu_ntk(x.numpy(), depth=2)
    errs = {}
    for w in (64, 1024):
        e = []
        for s in range(4):
            torch.manual_seed(s)
            K = tk.empirical_ntk(tk.NTKMLP(5, w, depth=2, dtype=torch.float64), x).numpy()
            e.append(np.linalg.norm(K - Ka) / np.linalg.norm(Ka))
        errs[w] = np.mean(e)
    # O(1/sqrt(w)): a factor 4 expected between the widths; asserted at least 2
    assert errs[1024] < errs[64] / 2


def test_kernel_distance():
    K = np.array([[2.0, 1.0], [1.0, 2.0]])
    assert tk.kernel_distance(K, 3 * K) == pytest.approx(0.0, abs=1e-15)
    assert tk.kernel_distance(K, np.eye(2)) > 0


@pytest.mark.gpu
@pytest.mark.skipif(not cuda_available(), reason="CUDA not available")
def test_empirical_ntk_on_cuda_at_larger_sizes():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(32, 512), torch.nn.ReLU(), torch.nn.Linear(512, 512),
                              torch.nn.ReLU(), torch.nn.Linear(512, 4)).double().cuda()
    x = torch.randn(64, 32, dtype=torch.float64, device="cuda")
    a = tk.empirical_ntk(net, x, method="jacobian")
    b = tk.empirical_ntk(net, x, method="implicit")
    ref = tk.ntk_from_jacobian(tk.dense_jacobian(net, x[:8]))
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(a[:8, :8], ref, rtol=1e-10, atol=1e-10)
