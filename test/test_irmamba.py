"""IRMamba's novel blocks against naive implementations of the paper's equations, on tiny inputs.

PDMamba's neighbour term and gate (eqs. 5-10), the LRM stage (eqs. 20-23) and the
four-route SS2D wiring are each recomputed here with loops and the reference scan,
independently of the vectorised code.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from irstd_ros.layers import SS2D, scan_orders
from irstd_ros.layers.mamba2d import merge_orders
from irstd_ros.models import create_model, model_cfg
from irstd_ros.models.irmamba import LRMStage, PixelDifferenceTerm
from irstd_ros.ops import selective_scan_reference

torch.manual_seed(0)


def naive_pixel_difference(x, w_x, w_y, n=2, gamma=1.0):
    """Eqs. 5-10 pixel by pixel: replicate borders, centre-minus-neighbour differences, hard gate."""
    b, d, h, w = x.shape
    routes = w_x.shape[0]
    out = torch.zeros(b, routes, d, h, w, dtype=torch.float64)

    def v(bi, di, r, c):
        return float(x[bi, di, min(max(r, 0), h - 1), min(max(c, 0), w - 1)])

    for bi in range(b):
        for di in range(d):
            for r in range(h):
                for c in range(w):
                    diff = {key: [] for key in ("x+", "x-", "y+", "y-")}
                    for i in range(1, n + 1):
                        sums = dict.fromkeys(diff, 0.0)
                        for k in range(i):
                            sums["x+"] += (v(bi, di, r, c + k) - v(bi, di, r, c + k + 1)) / (2 * k + 1)
                            sums["x-"] += (v(bi, di, r, c - k) - v(bi, di, r, c - k - 1)) / (2 * k + 1)
                            sums["y+"] += (v(bi, di, r + k, c) - v(bi, di, r + k + 1, c)) / (2 * k + 1)
                            sums["y-"] += (v(bi, di, r - k, c) - v(bi, di, r - k - 1, c)) / (2 * k + 1)
                        for key in diff:
                            diff[key].append(sums[key])
                    window = [v(bi, di, r + a, c + e) for a in range(-n, n + 1) for e in range(-n, n + 1)]
                    mean = sum(window) / len(window)
                    sigma = math.sqrt(sum((q - mean) ** 2 for q in window) / len(window) + 1e-6)
                    last = [diff[key][-1] for key in ("x+", "x-", "y+", "y-")]
                    f = gamma + (math.tanh(sum(last) / (4 * sigma) - 1) if all(q > sigma for q in last) else 0.0)
                    for route in range(routes):
                        term = sum(float(w_x[route, di, i]) * (diff["x+"][i] + diff["x-"][i])
                                   + float(w_y[route, di, i]) * (diff["y+"][i] + diff["y-"][i]) for i in range(n))
                        out[bi, route, di, r, c] = f * term
    return out


def naive_sum_over_sigma(x, b, d, r, c, n=2):
    """ΣΔ^(o_n±) / (4 σ_n) at one interior pixel."""
    v = x[b, d]
    near = lambda dr, dc: float(v[r + dr, c + dc])
    total = 0.0
    for dr, dc in ((0, 1), (0, -1), (1, 0), (-1, 0)):
        total += (near(0, 0) - near(dr, dc)) + (near(dr, dc) - near(2 * dr, 2 * dc)) / 3
    window = v[r - n:r + n + 1, c - n:c + n + 1].double()
    sigma = math.sqrt(float(window.var(unbiased=False)) + 1e-6)
    return total / (4 * sigma)


def test_pixel_difference_term_matches_the_equations():
    pd = PixelDifferenceTerm(3)
    with torch.no_grad():
        pd.w_x.copy_(torch.randn_like(pd.w_x))
        pd.w_y.copy_(torch.randn_like(pd.w_y))
    x = torch.rand(2, 3, 5, 7)
    x[0, 0, 2, 3] = 3.0  # a bright point: case 1 of the gate must fire there
    with torch.no_grad():
        got = pd(x).double()
    want = naive_pixel_difference(x.double(), pd.w_x.detach(), pd.w_y.detach())
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    # the bright point takes case 1 (f != gamma): the term there is not the ungated sum
    with torch.no_grad():
        pd.w_x.fill_(1.0)
        pd.w_y.fill_(0.0)
        gated = pd(x)[0, 0, 0, 2, 3].item()
    xp = x[0, 0, 2]
    ungated = (2 * xp[3] - xp[4] - xp[2]).item() + (2 * xp[3] - xp[4] - xp[2] + (xp[4] - xp[5] + xp[2] - xp[1]) / 3).item()
    assert gated == pytest.approx(ungated * (1 + math.tanh(float(
        naive_sum_over_sigma(x, 0, 0, 2, 3)) - 1)), rel=1e-4)
    assert gated != pytest.approx(ungated, rel=1e-2)


def test_spatial_gate_is_hard_forward_and_straight_through_backward():
    pd = PixelDifferenceTerm(1, sharpness=10.0)
    four = [torch.tensor([[2.0, 0.5]], requires_grad=True) for _ in range(4)]
    sigma = torch.tensor([[1.0, 1.0]])
    diffs = {key: [None, d] for key, d in zip(("x+", "x-", "y+", "y-"), four)}
    f = pd.gate(diffs, sigma)
    # forward: position 0 is case 1 (all > sigma), position 1 case 2 (f = gamma exactly)
    assert f[0, 0].item() == pytest.approx(1.0 + math.tanh(8.0 / 4.0 - 1.0))
    assert f[0, 1].item() == 1.0
    f.sum().backward()
    # backward, by hand: d f / dΔ_j = d soft / dΔ_j · tanh(.) + hard · tanh'(.) / (4σ), with
    # soft = Π_k sigmoid(β (Δ_k / σ - 1)); here the four Δ are equal and σ = 1
    d = torch.tensor([2.0, 0.5])
    sig = torch.sigmoid(10.0 * (d - 1))
    th = torch.tanh(4 * d / 4.0 - 1)
    per_input = 10.0 * sig * (1 - sig) * sig ** 3 * th + torch.tensor([1.0, 0.0]) * (1 - th ** 2) / 4
    for q in four:
        torch.testing.assert_close(q.grad[0], per_input)
    with torch.no_grad():  # inference takes the hard test only
        assert pd.gate({k: [None, d[-1].detach()] for k, d in diffs.items()}, sigma)[0, 1].item() == 1.0


def _naive_ca(ca, x):
    avg = x.mean(dim=(2, 3), keepdim=True)
    mx = x.amax(dim=(2, 3), keepdim=True)
    mlp = lambda v: F.conv2d(F.relu(F.conv2d(v, ca.mlp[0].weight, ca.mlp[0].bias)), ca.mlp[2].weight, ca.mlp[2].bias)
    return torch.sigmoid(mlp(avg) + mlp(mx))


def _naive_sa(sa, x):
    return torch.sigmoid(F.conv2d(torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1),
                                  sa.conv.weight, sa.conv.bias, padding=3))


def test_lrm_stage_matches_eqs_20_to_23():
    stage = LRMStage(4).double()
    with torch.no_grad():
        stage.rho.copy_(torch.tensor([0.3, 0.7]))
        stage.alpha.copy_(torch.tensor([0.2, 0.9]))
    high, low, x_h, x_l = (torch.randn(2, 4, 6, 5, dtype=torch.float64) for _ in range(4))
    A = lambda v: F.conv2d(v, stage.A.weight, padding=1)
    At = lambda v: F.conv_transpose2d(v, stage.A.weight, padding=1)
    rho_h, rho_l = stage.rho.detach()
    alpha_h, alpha_l = stage.alpha.detach()
    # eq. 20 and 21 term by term, as printed
    v_h = x_h - rho_h * At(A(x_h)) + rho_h * At(alpha_h * (low - high)) + rho_h * At(high)
    v_l = x_l - rho_l * At(A(x_l)) + rho_l * At(alpha_l * (high - low)) + rho_l * At(low)
    want_l = v_l * _naive_ca(stage.ca_l, _naive_sa(stage.sa_l, v_l) * v_h)     # eq. 22
    want_h = v_h * _naive_sa(stage.sa_h, _naive_ca(stage.ca_h, v_h) * v_l)     # eq. 23
    got_h, got_l = stage(x_h, x_l, high, low)
    torch.testing.assert_close(got_h, want_h)
    torch.testing.assert_close(got_l, want_l)


def test_lrm_adjoint_is_the_adjoint_of_A():
    """<A x, y> == <x, A^T y> for the zero-padded 3x3 convolution: A^T is A's adjoint, as the paper defines it."""
    stage = LRMStage(3).double()
    x, y = torch.randn(2, 3, 7, 6, dtype=torch.float64), torch.randn(2, 3, 7, 6, dtype=torch.float64)
    torch.testing.assert_close((stage.A(x) * y).sum(), (x * stage.adjoint(y)).sum())


def test_scan_routes_cover_four_directions_and_merge_back():
    x = torch.arange(6.0).view(1, 1, 2, 3)
    routes = scan_orders(x)[0, :, 0]
    assert routes[0].tolist() == [0, 1, 2, 3, 4, 5]          # row-major
    assert routes[1].tolist() == [0, 3, 1, 4, 2, 5]          # column-major
    assert routes[2].tolist() == [5, 4, 3, 2, 1, 0]
    assert routes[3].tolist() == [5, 2, 4, 1, 3, 0]
    torch.testing.assert_close(merge_orders(scan_orders(x), 2, 3), 4 * x)


@pytest.mark.parametrize("with_neighbor", [False, True])
def test_ss2d_equals_four_reference_scans(with_neighbor):
    """SS2D's single grouped op call equals one reference scan per route, un-flattened and summed."""
    dim, h, w = 4, 3, 5
    neighbor = PixelDifferenceTerm(2 * dim) if with_neighbor else None
    m = SS2D(dim, d_state=3, ssm_ratio=2.0, neighbor=neighbor).double()
    x = torch.randn(2, dim, h, w, dtype=torch.float64)
    got = m(x)
    u, z = m.in_proj(x).chunk(2, dim=1)
    u = F.silu(m.dwconv(u))
    inner, n, r = m.inner, m.d_state, m.dt_rank
    nb = neighbor(u).double() if with_neighbor else None
    total = torch.zeros(2, inner, h, w, dtype=torch.float64)
    for route in range(4):
        seq = scan_orders(u)[:, route]                                           # (b, inner, L)
        proj = torch.einsum("bdl,cd->bcl", seq, m.x_proj[route])
        dt_low, bs, cs = proj.split([r, n, n], dim=1)
        dt = torch.einsum("brl,dr->bdl", dt_low, m.dt_proj[route])
        sl = slice(route * inner, (route + 1) * inner)
        nb_r = scan_orders(nb[:, route])[:, route] if with_neighbor else None
        y = selective_scan_reference(seq, dt, -torch.exp(m.A_log[sl]), bs, cs, m.D[sl], None, m.dt_bias[sl], True,
                                     nb_r)
        flat = torch.zeros(2, inner, 4, h * w, dtype=torch.float64)
        flat[:, :, route] = y
        total = total + merge_orders(flat.transpose(1, 2), h, w)
    want = m.out_proj(m.out_norm(total) * F.silu(z))
    torch.testing.assert_close(got, want)


def test_paper_configuration():
    m = create_model("irmamba")
    assert m.stride == model_cfg("irmamba").stride == 16
    assert [len(level.mamba_blocks) for level in m.levels] == [1, 2, 2]
    assert [len(level.lrm.stages) for level in m.decoder] == [1, 2, 3, 4]      # deep to shallow, as the paper
    assert all(isinstance(b.ssm.neighbor, PixelDifferenceTerm) for level in m.levels for b in level.mamba_blocks)
    assert create_model("irmamba", pixel_difference=False).levels[0].mamba_blocks[0].ssm.neighbor is None
