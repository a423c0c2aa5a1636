"""solvable.models.rules, Section A: rules.linearized_threshold, and the GPU runs of tools.rules.

Claim-level tests that can fail: on a linear model (the network is its own linearization) the claim's
stability definition must reproduce the closed form to bisection precision (full batch) or within
seed noise (minibatches); the mutants must differ from the closed form by more than the claim's
allowance; the cap must turn a catapult into "unstable". GPU tests run the vmapped copies on CUDA.
"""


import numpy as np
import pytest
import torch
from torch import nn

import solvable
from solvable.backend import cuda_available
from solvable.models import rules as M
from solvable.tools import rules as R

CLAIM = solvable.get("rules.linearized_threshold")


def _linear_problem(N=16, d=32, m=128, seed=0, delta=1e-3):
    """A linear model whose NTK is the two-layer problem's kernel K: features F with F F^T = K."""
    net, data = R.problem(m, N=N, d=d, delta=delta, seed=seed)
    K = R.ntk_gram(net, data[0])
    h, U = np.linalg.eigh(K)
    F = U * np.sqrt(np.clip(h, 0.0, None))
    lin = nn.Linear(N, 1, bias=False).double()
    with torch.no_grad():
        lin.weight.zero_()
    z = torch.randn(N, 1, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64)
    return lin, (torch.tensor(F), delta * z), K


def test_linear_model_full_batch_threshold_is_exact_under_the_claims_definition():
    # B = N without replacement is GD: deterministic, so the claim's "late" criterion must find
    # 2 / lambda_max(s K / N) to bisection precision (no seed noise, no kernel drift)
    lin, data, K = _linear_problem()
    want = R.linearized_threshold(lin, nn.MSELoss(), data, [16], "without")[0]
    assert want == pytest.approx(R.kernel_bounds(K)[1], rel=1e-8)
    r = R.stable_lr(lin, nn.MSELoss(), data, [16], steps=100, c=1.0, criterion="late", average="mean_square",
                    cap=M.LT_CAP, every=M.LT_EVERY, seeds=3, grid=8, rounds=4, lr_range=(0.5 * want, 1.5 * want))
    assert r.out_of_range == [""]
    assert abs(r.lr[0] / want - 1) <= 2 * r.resolution[0] + 1e-3


def test_linear_model_minibatch_threshold_within_seed_noise():
    # B = 2: the mean-square estimate over 16 batch orders agrees with the closed form within 4
    # jackknife standard errors plus the half-length shift (the claim's allowance, without drift)
    lin, data, _ = _linear_problem(seed=2)
    want = R.linearized_threshold(lin, nn.MSELoss(), data, [2], "without")[0]
    kw = dict(c=1.0, criterion="late", average="mean_square", cap=M.LT_CAP, every=M.LT_EVERY, seeds=16)
    half = R.stable_lr(lin, nn.MSELoss(), data, [2], steps=50, grid=8, rounds=2, lr_range=(0.3 * want, 3 * want), **kw)
    full = R.stable_lr(lin, nn.MSELoss(), data, [2], steps=100, grid=7, rounds=1,
                       lr_range=(0.9 * half.lr[0], 1.1 * half.lr[0]), **kw)
    err = abs(full.lr[0] / want - 1)
    allow = 4 * full.stderr[0] / full.lr[0] + abs(half.lr[0] / full.lr[0] - 1) + full.resolution[0]
    assert err <= allow, (err, allow)
    assert err < 0.08


def test_mutants_differ_from_the_closed_form_by_more_than_a_typical_allowance():
    p = CLAIM.params()
    pred = np.asarray(CLAIM.predicted(p))
    assert pred.shape == (len(M.LT_BATCHES),) and np.all(np.diff(pred) > 0)
    for name, fn in CLAIM.mutants.items():
        rel = np.max(np.abs(np.asarray(fn(p)) / pred - 1))
        assert rel > 0.2, (name, rel)       # the allowance is 5-20% on the domain


def test_closed_form_at_B_equal_N_is_the_full_batch_threshold():
    p = CLAIM.params()
    K = M._lt_kernel(p.m, p.delta, p.init)
    gd = M.linearized_ms_threshold(p.m, p.delta, p.init, (M.LT_N,))[0]
    assert gd == pytest.approx(2.0 / (2.0 * np.linalg.eigvalsh(K)[-1] / M.LT_N), rel=1e-8)


def test_cap_turns_a_catapult_into_unstable():
    # GD just above 2/lambda_max from a tiny residual: the loss grows ~1e5-fold, the kernel moves, the
    # loss converges (catapult). "late" alone calls the whole bracket stable; with the cap it is unstable.
    net, data = R.problem(128, N=16, d=32, delta=1e-4, seed=0)
    hi = R.kernel_bounds(R.ntk_gram(net, data[0]))[1]
    kw = dict(steps=100, c=1.0, criterion="late", seeds=1, grid=3, rounds=1, lr_range=(1.2 * hi, 1.4 * hi))
    free = R.stable_lr(net, nn.MSELoss(), data, [16], **kw)
    capped = R.stable_lr(net, nn.MSELoss(), data, [16], cap=M.LT_CAP, every=M.LT_EVERY, **kw)
    assert free.out_of_range == ["above"] and capped.out_of_range == ["below"]


def test_kernels_of_stacked_params_match_ntk_gram():
    net, data = R.problem(32, N=6, d=3, seed=1)
    run = R.run_copies(net, nn.MSELoss(), data, [0.5, 1e-9], [0, 1], 2, steps=4, return_params=True)
    Ks = M._kernels_of(net, run["params"], data[0]).numpy()
    np.testing.assert_allclose(Ks[1], R.ntk_gram(net, data[0]), rtol=1e-6)
    assert np.linalg.norm(Ks[0] - Ks[1]) > 0


def test_run_copies_return_params_is_the_trained_model():
    torch.manual_seed(0)
    net, (X, Y) = R.problem(16, N=6, d=3, delta=0.3, seed=4)
    run = R.run_copies(net, nn.MSELoss(), (X, Y), [0.3], [5], 6, steps=5, return_params=True)
    ref = R.TwoLayer(3, 16).double()
    ref.load_state_dict(net.state_dict())
    opt = torch.optim.SGD(ref.parameters(), lr=0.3)
    for _ in range(5):       # B = N without replacement: every step is the full batch
        opt.zero_grad()
        nn.MSELoss()(ref(X), Y).backward()
        opt.step()
    np.testing.assert_allclose(run["params"]["W"][0].numpy(), ref.W.detach().numpy(), rtol=1e-10)
    np.testing.assert_allclose(run["params"]["a"][0].numpy(), ref.a.detach().numpy(), rtol=1e-10)


def test_params_reject_bad_values():
    with pytest.raises(ValueError, match="m=4 is out of range"):
        CLAIM.params(m=4)
    with pytest.raises(ValueError, match="delta"):
        CLAIM.params(delta=0.0)


def test_measurement_reports_its_allowance_pieces():
    # one check at a cheap point: info carries each piece of the tolerance, the tolerance is their sum
    p = CLAIM.params(m=96)
    v = CLAIM.check(p, backend="torch", seed=1)
    tol = np.asarray(v.tolerance)
    pieces = (M.LT_Z * np.asarray(v.stderr) / np.asarray(v.measured) + np.asarray(v.info["finite_T_shift"])
              + np.asarray(v.info["resolution"]) + np.asarray(v.info["kernel_drift"]))
    np.testing.assert_allclose(tol, pieces, rtol=1e-12)
    assert np.all(np.asarray(v.info["kernel_drift"]) < 1e-3)       # delta = 1e-4: the kernel barely moves
    assert v.checks["inside_search_brackets"]


# --------------------------------------------------------------------------------------------
# GPU: the vmapped runs of tools.rules on CUDA (skip without CUDA)



@pytest.mark.gpu
@pytest.mark.skipif(not cuda_available(), reason="CUDA not available")
def test_run_copies_cuda_float32_matches_cpu_float64():
    # a short run below 2 / max_i s K_ii = 0.64 (every step non-expansive, so round-off is not amplified):
    # float32 round-off (~1e-7 per operation) stays below 1e-4 relative
    net, data = R.problem(64, N=16, d=8, delta=0.1, seed=0)
    lrs, seeds = np.array([0.1, 0.3, 0.6, 0.3]), np.array([0, 0, 1, 2])
    cpu = R.run_copies(net, nn.MSELoss(), data, lrs, seeds, 4, steps=20, record_every=5)
    net32 = R.TwoLayer(8, 64).to("cuda", torch.float32)
    net32.load_state_dict({k: v.float() for k, v in net.state_dict().items()})
    data32 = tuple(t.to("cuda", torch.float32) for t in data)
    gpu = R.run_copies(net32, nn.MSELoss(), data32, lrs, seeds, 4, steps=20, record_every=5)
    np.testing.assert_array_equal(cpu["steps"], gpu["steps"])
    np.testing.assert_allclose(gpu["loss"], cpu["loss"], rtol=1e-4)
    gpu64 = R.run_copies(net.to("cuda"), nn.MSELoss(), tuple(t.to("cuda") for t in data), lrs, seeds, 4, steps=20,
                         record_every=5)
    np.testing.assert_allclose(gpu64["loss"], cpu["loss"], rtol=1e-9)


@pytest.mark.gpu
@pytest.mark.skipif(not cuda_available(), reason="CUDA not available")
def test_stable_lr_on_cuda_brackets_the_cpu_estimate():
    net, data = R.problem(64, N=16, d=32, delta=1e-4, seed=0)
    lo, hi = R.kernel_bounds(R.ntk_gram(net, data[0]))
    kw = dict(steps=60, c=1.0, criterion="late", average="mean_square", cap=M.LT_CAP, every=M.LT_EVERY, seeds=8,
              grid=8, rounds=2, lr_range=(0.8 * lo, 1.05 * hi))
    cpu = R.stable_lr(net, nn.MSELoss(), data, [2, 16], **kw)
    gnet = R.TwoLayer(32, 64).to("cuda", torch.float64)
    gnet.load_state_dict(net.state_dict())
    gpu = R.stable_lr(gnet, nn.MSELoss(), tuple(t.to("cuda") for t in data), [2, 16], **kw)
    assert gpu.out_of_range == ["", ""]
    # same batch orders (generated on the CPU from the seeds), float64 on both: the estimates agree
    # within the seed spread and the bisection cell (the last bits of the kernels differ)
    allow = 3 * np.maximum(cpu.stderr, gpu.stderr) + 2 * cpu.resolution * cpu.lr
    assert np.all(np.abs(gpu.lr - cpu.lr) <= allow), (gpu.lr, cpu.lr, allow)


@pytest.mark.gpu
@pytest.mark.skipif(not cuda_available(), reason="CUDA not available")
def test_chunking_on_cuda_gives_the_same_numbers():
    net, data = R.problem(64, N=12, d=4, delta=0.1, seed=3)
    net, data = net.to("cuda"), tuple(t.to("cuda") for t in data)
    # below 2 / max_i s K_ii = 0.73 (non-expansive steps): last-bit differences between batched kernel
    # choices for 3 and 10 copies are not amplified
    lrs, seeds = np.geomspace(0.05, 0.7, 10), np.arange(10) % 3
    for opt in R.OPTIMIZERS:
        lr = lrs * (0.01 if opt == "adam" else 1.0)
        one = R.run_copies(net, nn.MSELoss(), data, lr, seeds, 3, optimizer=opt, steps=8, chunk=256,
                           return_params=True)
        parts = R.run_copies(net, nn.MSELoss(), data, lr, seeds, 3, optimizer=opt, steps=8, chunk=3,
                             return_params=True)
        np.testing.assert_allclose(parts["loss"], one["loss"], rtol=1e-10)
        for n in one["params"]:
            assert one["params"][n].device.type == "cuda"
            torch.testing.assert_close(parts["params"][n], one["params"][n], rtol=1e-10, atol=0)
