"""Triton kernels for the GPU: selective-scan forward and the Haar DWT/IDWT.

On a CUDA machine the custom ops dispatch here. Without a GPU the same kernels
run on CPU tensors under Triton's interpreter (``TRITON_INTERPRET=1``, set
before triton is imported), which is how the tests check them against the
reference. ``AVAILABLE`` is False when triton is not installed; the ops then
use the torch decomposition on every device.

The scan kernel: one program per (batch, channel), the N states as a vector;
time advances in tiles of ``BLOCK_L`` steps, each tile scanned in parallel with
``tl.associative_scan`` over the pairs (decay, input) and joined to the state
carried from the previous tile.
"""
from __future__ import annotations

import torch

try:
    import triton
    import triton.language as tl
    AVAILABLE = True
except ImportError:  # pragma: no cover - exercised where triton is absent
    triton = tl = None
    AVAILABLE = False


def _next_pow2(n: int) -> int:
    return 1 << max(0, (int(n) - 1).bit_length())


if AVAILABLE:
    @triton.jit
    def _combine(a1, x1, a2, x2):
        # (a1, x1) then (a2, x2): h -> a2 * (a1 * h + x1) + x2
        return a1 * a2, a2 * x1 + x2

    @triton.jit
    def _selective_scan_fwd_kernel(u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, nb_ptr, y_ptr,
                                   L, DIM, N, GROUPS, DPG,
                                   HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
                                   SOFTPLUS: tl.constexpr, NB_MODE: tl.constexpr,
                                   BLOCK_L: tl.constexpr, BLOCK_N: tl.constexpr):
        b = tl.program_id(0)
        d = tl.program_id(1)
        g = d // DPG
        row = (b * DIM + d) * L
        bc_base = (b * GROUPS + g) * L * N
        n = tl.arange(0, BLOCK_N)
        nmask = n < N
        A = tl.load(A_ptr + d * N + n, mask=nmask, other=0.0).to(tl.float32)
        h = tl.zeros([BLOCK_N], dtype=tl.float32)
        last = (tl.arange(0, BLOCK_L) == BLOCK_L - 1)[:, None]
        for l0 in range(0, L, BLOCK_L):
            t = l0 + tl.arange(0, BLOCK_L)
            tmask = t < L
            m2 = tmask[:, None] & nmask[None, :]
            u = tl.load(u_ptr + row + t, mask=tmask, other=0.0).to(tl.float32)
            dt = tl.load(dt_ptr + row + t, mask=tmask, other=0.0).to(tl.float32)
            if HAS_BIAS:
                dt = dt + tl.load(bias_ptr + d).to(tl.float32)
            if SOFTPLUS:
                dt = tl.where(dt <= 20.0, tl.log(1.0 + tl.exp(dt)), dt)
            off = bc_base + t[:, None] * N + n[None, :]
            Bt = tl.load(B_ptr + off, mask=m2, other=0.0).to(tl.float32)
            Ct = tl.load(C_ptr + off, mask=m2, other=0.0).to(tl.float32)
            a = tl.exp(dt[:, None] * A[None, :])
            x = (dt * u)[:, None] * Bt
            if NB_MODE == 1:
                x += tl.load(nb_ptr + row + t, mask=tmask, other=0.0).to(tl.float32)[:, None]
            if NB_MODE == 2:
                x += tl.load(nb_ptr + (row + t)[:, None] * N + n[None, :], mask=m2, other=0.0).to(tl.float32)
            a = tl.where(m2, a, 1.0)      # padding steps and states leave h untouched
            x = tl.where(m2, x, 0.0)
            acum, hloc = tl.associative_scan((a, x), 0, _combine)
            hs = hloc + acum * h[None, :]
            y = tl.sum(hs * Ct, axis=1)
            if HAS_D:
                y += tl.load(D_ptr + d).to(tl.float32) * u
            if HAS_Z:
                z = tl.load(z_ptr + row + t, mask=tmask, other=0.0).to(tl.float32)
                y = y * z / (1.0 + tl.exp(-z))
            tl.store(y_ptr + row + t, y, mask=tmask)
            h = tl.sum(tl.where(last, hs, 0.0), axis=0)

    @triton.jit
    def _coarse_pixels(total, h, w, BLOCK: tl.constexpr):
        """This program's pixels of the half-size grid: flat (batch*channel) index, offset in the plane, row, col."""
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        bc = offs // (h * w)
        rem = offs % (h * w)
        return offs < total, bc, rem, rem // w, rem % w

    @triton.jit
    def _haar_dwt_kernel(x_ptr, y_ptr, total, C, H, W, h, w, BLOCK: tl.constexpr):
        mask, bc, rem, i, j = _coarse_pixels(total, h, w, BLOCK)
        base = bc * H * W + 2 * i * W + 2 * j
        a = tl.load(x_ptr + base, mask=mask, other=0.0)
        b = tl.load(x_ptr + base + 1, mask=mask, other=0.0)
        c = tl.load(x_ptr + base + W, mask=mask, other=0.0)
        d = tl.load(x_ptr + base + W + 1, mask=mask, other=0.0)
        out = ((bc // C) * 4 * C + bc % C) * h * w + rem
        band = C * h * w
        tl.store(y_ptr + out, (a + b + c + d) * 0.5, mask=mask)
        tl.store(y_ptr + out + band, (a + b - c - d) * 0.5, mask=mask)
        tl.store(y_ptr + out + 2 * band, (a - b + c - d) * 0.5, mask=mask)
        tl.store(y_ptr + out + 3 * band, (a - b - c + d) * 0.5, mask=mask)

    @triton.jit
    def _haar_idwt_kernel(y_ptr, x_ptr, total, C, h, w, BLOCK: tl.constexpr):
        mask, bc, rem, i, j = _coarse_pixels(total, h, w, BLOCK)
        src = ((bc // C) * 4 * C + bc % C) * h * w + rem
        band = C * h * w
        ll = tl.load(y_ptr + src, mask=mask, other=0.0)
        lh = tl.load(y_ptr + src + band, mask=mask, other=0.0)
        hl = tl.load(y_ptr + src + 2 * band, mask=mask, other=0.0)
        hh = tl.load(y_ptr + src + 3 * band, mask=mask, other=0.0)
        W = 2 * w
        base = bc * 2 * h * W + 2 * i * W + 2 * j
        tl.store(x_ptr + base, (ll + lh + hl + hh) * 0.5, mask=mask)
        tl.store(x_ptr + base + 1, (ll + lh - hl - hh) * 0.5, mask=mask)
        tl.store(x_ptr + base + W, (ll - lh + hl - hh) * 0.5, mask=mask)
        tl.store(x_ptr + base + W + 1, (ll - lh - hl + hh) * 0.5, mask=mask)


def _require():
    if not AVAILABLE:
        raise RuntimeError("triton is not installed: pip install triton (the GPU kernels need it)")


def selective_scan_triton(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                          neighbor=None, block_l: int = 64):
    """The scan forward on the GPU (or any device under ``TRITON_INTERPRET=1``); output in u's dtype."""
    _require()
    from .selective_scan import _groups4, check_inputs
    check_inputs(u, delta, A, B, C, D, z, delta_bias, neighbor)
    bsz, dim, length = u.shape
    n = A.shape[1]
    Bt = _groups4(B).transpose(2, 3).contiguous()      # (b, g, L, N)
    Ct = _groups4(C).transpose(2, 3).contiguous()
    groups = Bt.shape[1]
    nb_mode = 0 if neighbor is None else (1 if neighbor.dim() == 3 else 2)
    nb = u if neighbor is None else (neighbor.contiguous() if nb_mode == 1 else neighbor.transpose(2, 3).contiguous())
    y = torch.empty(bsz, dim, length, device=u.device, dtype=torch.float32)
    u_, dt_, A_ = u.contiguous(), delta.contiguous(), A.contiguous()
    _selective_scan_fwd_kernel[(bsz, dim)](
        u_, dt_, A_, Bt, Ct, u_ if D is None else D.contiguous(), u_ if z is None else z.contiguous(),
        u_ if delta_bias is None else delta_bias.contiguous(), nb, y,
        length, dim, n, groups, dim // groups,
        HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None,
        SOFTPLUS=bool(delta_softplus), NB_MODE=nb_mode, BLOCK_L=block_l, BLOCK_N=_next_pow2(n))
    return y.to(u.dtype)


def haar_dwt2d_triton(x, block: int = 256):
    _require()
    from .haar import _pad_even
    x = _pad_even(x).contiguous()
    b, c, H, W = x.shape
    h, w = H // 2, W // 2
    y = torch.empty(b, 4 * c, h, w, device=x.device, dtype=x.dtype)
    total = b * c * h * w
    if total:
        _haar_dwt_kernel[(triton.cdiv(total, block),)](x, y, total, c, H, W, h, w, BLOCK=block)
    return y


def haar_idwt2d_triton(y, block: int = 256):
    _require()
    y = y.contiguous()
    b, c4, h, w = y.shape
    c = c4 // 4
    x = torch.empty(b, c, 2 * h, 2 * w, device=y.device, dtype=y.dtype)
    total = b * c * h * w
    if total:
        _haar_idwt_kernel[(triton.cdiv(total, block),)](y, x, total, c, h, w, BLOCK=block)
    return x
