"""``torch.ops.irstd.haar_dwt2d`` / ``haar_idwt2d``: the orthonormal 2-D Haar transform and its inverse.

Contract::

    haar_dwt2d(x: (B, C, H, W)) -> (B, 4C, ceil(H/2), ceil(W/2))
        sub-bands stacked band-major, [LL | LH | HL | HH], each C channels;
        equal to pywt.dwt2(x, 'haar') -> (cA, (cH, cV, cD)) in that order.
        For a 2x2 block [[a, b], [c, d]]:
            LL = (a+b+c+d)/2   LH = (a+b-c-d)/2   HL = (a-b+c-d)/2   HH = (a-b-c+d)/2
        Odd H or W: the last row/column is repeated once before the transform
        (pywt's default 'symmetric' mode gives the same coefficients for Haar).
    haar_idwt2d(y: (B, 4C, h, w)) -> (B, C, 2h, 2w)
        the exact inverse; crop to the original (H, W) after an odd-sized DWT
        (``haar_idwt2d(y, size=(H, W))`` does it), which reconstructs x exactly.

Both are differentiable: the transform is orthonormal, so the gradient of the
DWT is the IDWT of the gradient (folding the repeated row/column back), and
the other way round. ``haar_wavedec2d``/``haar_waverec2d`` apply them k times
on the low band (IRSTD-Diff's k-level low-frequency isolation).
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor


def _check4(x: Tensor, name: str) -> None:
    if x.dim() != 4:
        raise ValueError(f"{name}: expected a (B, C, H, W) tensor, got shape {tuple(x.shape)}")


def _pad_even(x: Tensor) -> Tensor:
    ph, pw = x.shape[-2] % 2, x.shape[-1] % 2
    if not (ph or pw):
        return x
    if ph:
        x = torch.cat([x, x[..., -1:, :]], -2)
    if pw:
        x = torch.cat([x, x[..., :, -1:]], -1)
    return x


def dwt_decomposed(x: Tensor) -> Tensor:
    """The DWT in standard ops (strided slices, adds): the CPU kernel and the export decomposition."""
    x = _pad_even(x)
    a, b = x[..., 0::2, 0::2], x[..., 0::2, 1::2]
    c, d = x[..., 1::2, 0::2], x[..., 1::2, 1::2]
    s, t = a + b, a - b
    u, v = c + d, c - d
    return torch.cat([s + u, s - u, t + v, t - v], 1) * 0.5


def idwt_decomposed(y: Tensor) -> Tensor:
    """The IDWT in standard ops (adds, stack, reshape): the CPU kernel and the export decomposition."""
    ll, lh, hl, hh = y.chunk(4, 1)
    s, u = ll + lh, ll - lh          # a+b, c+d (x2 scaled)
    t, v = hl + hh, hl - hh          # a-b, c-d
    a, b = (s + t) * 0.5, (s - t) * 0.5
    c, d = (u + v) * 0.5, (u - v) * 0.5
    top = torch.stack([a, b], -1).flatten(-2)        # (B, C, h, 2w)
    bottom = torch.stack([c, d], -1).flatten(-2)
    return torch.stack([top, bottom], -2).flatten(-3, -2)


def haar_dwt2d_reference(x: Tensor) -> Tensor:
    """Depthwise stride-2 convolution with the four Haar filters: an independent formulation for tests."""
    _check4(x, "haar_dwt2d")
    channels = x.shape[1]
    k = torch.tensor([[[1, 1], [1, 1]], [[1, 1], [-1, -1]], [[1, -1], [1, -1]], [[1, -1], [-1, 1]]],
                     dtype=x.dtype, device=x.device) * 0.5
    weight = k[:, None].repeat(channels, 1, 1, 1)                      # (4C, 1, 2, 2), channel-major
    out = F.conv2d(_pad_even(x), weight, stride=2, groups=channels)   # [c0: LL LH HL HH, c1: ...]
    b, _, h, w = out.shape
    return out.reshape(b, channels, 4, h, w).transpose(1, 2).reshape(b, 4 * channels, h, w)


def _dispatch(x: Tensor, inverse: bool) -> Tensor:
    if x.device.type == "cuda":
        from . import triton_kernels
        if triton_kernels.AVAILABLE:
            return triton_kernels.haar_idwt2d_triton(x) if inverse else triton_kernels.haar_dwt2d_triton(x)
    return (idwt_decomposed if inverse else dwt_decomposed)(x).contiguous()


@torch.library.custom_op("irstd::haar_dwt2d", mutates_args=())
def _dwt_op(x: Tensor) -> Tensor:
    _check4(x, "haar_dwt2d")
    return _dispatch(x, inverse=False)


@_dwt_op.register_fake
def _(x):
    _check4(x, "haar_dwt2d")
    b, c, h, w = x.shape
    return x.new_empty(b, 4 * c, (h + 1) // 2, (w + 1) // 2)


@torch.library.custom_op("irstd::haar_idwt2d", mutates_args=())
def _idwt_op(y: Tensor) -> Tensor:
    _check4(y, "haar_idwt2d")
    if y.shape[1] % 4:
        raise ValueError(f"haar_idwt2d: channels must be 4*C (LL, LH, HL, HH), got {y.shape[1]}")
    return _dispatch(y, inverse=True)


@_idwt_op.register_fake
def _(y):
    _check4(y, "haar_idwt2d")
    if y.shape[1] % 4:
        raise ValueError(f"haar_idwt2d: channels must be 4*C (LL, LH, HL, HH), got {y.shape[1]}")
    b, c4, h, w = y.shape
    return y.new_empty(b, c4 // 4, 2 * h, 2 * w)


def _dwt_setup(ctx, inputs, output):
    ctx.size = tuple(inputs[0].shape[-2:])


def _dwt_backward(ctx, grad):
    g = _idwt_op(grad.contiguous())
    h, w = ctx.size
    if h % 2:  # the repeated last row got gradient twice
        g = torch.cat([g[..., : h - 1, :], g[..., h - 1: h, :] + g[..., h: h + 1, :]], -2)
    if w % 2:
        g = torch.cat([g[..., : w - 1], g[..., w - 1: w] + g[..., w: w + 1]], -1)
    return g


def _idwt_backward(ctx, grad):
    return _dwt_op(grad.contiguous())


_dwt_op.register_autograd(_dwt_backward, setup_context=_dwt_setup)
_idwt_op.register_autograd(_idwt_backward, setup_context=lambda ctx, inputs, output: None)


def haar_dwt2d(x: Tensor) -> Tensor:
    """One level of the 2-D Haar DWT (``torch.ops.irstd.haar_dwt2d``)."""
    return torch.ops.irstd.haar_dwt2d(x)


def haar_idwt2d(y: Tensor, size: Optional[Sequence[int]] = None) -> Tensor:
    """The inverse (``torch.ops.irstd.haar_idwt2d``), cropped to ``size`` = the DWT input's (H, W) if given."""
    x = torch.ops.irstd.haar_idwt2d(y)
    return x if size is None else x[..., : size[0], : size[1]]


def haar_wavedec2d(x: Tensor, levels: int) -> Tuple[Tensor, List[Tensor]]:
    """k-level decomposition: (low band at level k, [details (B, 3C, h_i, w_i) for levels 1..k, finest first])."""
    if levels < 1:
        raise ValueError(f"haar_wavedec2d: levels must be >= 1, got {levels}")
    highs = []
    low = x
    for _ in range(levels):
        y = haar_dwt2d(low)
        c = low.shape[1]
        low = y[:, :c]
        highs.append(y[:, c:])
    return low, highs


def haar_waverec2d(low: Tensor, highs: Sequence[Tensor], size: Optional[Sequence[int]] = None) -> Tensor:
    """Invert :func:`haar_wavedec2d`; ``size`` is the original (H, W) (needed only when some level was odd)."""
    for i in range(len(highs) - 1, -1, -1):
        target = tuple(highs[i - 1].shape[-2:]) if i > 0 else size
        low = haar_idwt2d(torch.cat([low, highs[i]], 1), target)
    return low
