"""torch.ops.irstd.haar_dwt2d / haar_idwt2d against pywt, with odd sizes, gradients and k levels."""
from __future__ import annotations

import numpy as np
import pytest
import pywt
import torch

from irstd_ros.ops import haar_dwt2d, haar_dwt2d_reference, haar_idwt2d, haar_wavedec2d, haar_waverec2d

SIZES = [(8, 8), (5, 7), (1, 1), (3, 2), (33, 64)]


@pytest.mark.parametrize("size", SIZES)
def test_dwt_equals_pywt_bands_in_order(size):
    x = torch.randn(2, 3, *size)
    y = haar_dwt2d(x)
    assert y.shape == (2, 12, (size[0] + 1) // 2, (size[1] + 1) // 2)
    ca, (ch, cv, cd) = pywt.dwt2(x.double().numpy(), "haar")       # default mode 'symmetric'
    expected = np.concatenate([ca, ch, cv, cd], axis=1)
    np.testing.assert_allclose(y.numpy(), expected, atol=1e-5)
    torch.testing.assert_close(haar_dwt2d_reference(x), y, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("size", SIZES)
def test_perfect_reconstruction(size):
    x = torch.randn(1, 2, *size, dtype=torch.float64)
    torch.testing.assert_close(haar_idwt2d(haar_dwt2d(x), size), x, atol=1e-12, rtol=0)
    torch.testing.assert_close(torch.ops.irstd.haar_idwt2d(haar_dwt2d(x))[..., : size[0], : size[1]], x,
                               atol=1e-12, rtol=0)


def test_idwt_equals_pywt_idwt2():
    y = torch.randn(1, 8, 5, 6, dtype=torch.float64)
    ll, lh, hl, hh = y.chunk(4, 1)
    expected = pywt.idwt2((ll.numpy(), (lh.numpy(), hl.numpy(), hh.numpy())), "haar")
    np.testing.assert_allclose(haar_idwt2d(y).numpy(), expected, atol=1e-12)


@pytest.mark.parametrize("size", [(4, 6), (5, 3)])
def test_gradcheck(size):
    x = torch.randn(1, 2, *size, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(haar_dwt2d, (x,))
    y = torch.randn(1, 8, *size, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: haar_idwt2d(t), (y,))
    assert torch.autograd.gradgradcheck(haar_dwt2d, (x,))


@pytest.mark.parametrize("levels", [1, 3])
def test_multilevel_matches_pywt_wavedec2(levels):
    x = torch.randn(1, 2, 37, 50, dtype=torch.float64)
    low, highs = haar_wavedec2d(x, levels)
    coeffs = pywt.wavedec2(x.numpy(), "haar", level=levels)   # [cA_k, (details_k), ..., (details_1)]
    np.testing.assert_allclose(low.numpy(), coeffs[0], atol=1e-10)
    for level, high in enumerate(highs, start=1):
        np.testing.assert_allclose(high.numpy(), np.concatenate(coeffs[-level], axis=1), atol=1e-10)
    torch.testing.assert_close(haar_waverec2d(low, highs, (37, 50)), x, atol=1e-12, rtol=0)


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="expected a \\(B, C, H, W\\)"):
        haar_dwt2d(torch.zeros(3, 4, 4))
    with pytest.raises(ValueError, match="4\\*C"):
        haar_idwt2d(torch.zeros(1, 6, 4, 4))
    with pytest.raises(ValueError, match="levels"):
        haar_wavedec2d(torch.zeros(1, 1, 4, 4), 0)
