"""Triton kernels for the GPU: selective-scan forward and backward, and the Haar DWT/IDWT.

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
    def _softplus_dt(raw, SOFTPLUS: tl.constexpr):
        if SOFTPLUS:
            return tl.where(raw <= 20.0, tl.log(1.0 + tl.exp(raw)), raw)
        return raw

    @triton.jit
    def _program_channel(A_ptr, bias_ptr, L, DIM, N, GROUPS, DPG, HAS_BIAS: tl.constexpr, BLOCK_N: tl.constexpr):
        """This program's (batch, channel): its row offset, its group's B/C offset, the states, A and the bias."""
        b = tl.program_id(0)
        d = tl.program_id(1)
        row = (b * DIM + d) * L
        bc_base = (b * GROUPS + d // DPG) * L * N
        n = tl.arange(0, BLOCK_N)
        nmask = n < N
        A = tl.load(A_ptr + d * N + n, mask=nmask, other=0.0).to(tl.float32)
        bias = 0.0
        if HAS_BIAS:
            bias = tl.load(bias_ptr + d).to(tl.float32)
        return b, d, row, bc_base, n, nmask, A, bias

    @triton.jit
    def _tile_terms(u_ptr, dt_ptr, B_ptr, nb_ptr, row, bc_base, t, tmask, n, nmask, A, bias, N,
                    SOFTPLUS: tl.constexpr, NB_MODE: tl.constexpr):
        """One tile of steps: u, the raw and the effective step dt, B, the decays a and the inputs x of
        h_t = a_t h_{t-1} + x_t (padding steps and states: a = 1, x = 0, so they leave h untouched)."""
        m2 = tmask[:, None] & nmask[None, :]
        u = tl.load(u_ptr + row + t, mask=tmask, other=0.0).to(tl.float32)
        raw = tl.load(dt_ptr + row + t, mask=tmask, other=0.0).to(tl.float32) + bias
        dt = _softplus_dt(raw, SOFTPLUS)
        Bt = tl.load(B_ptr + bc_base + t[:, None] * N + n[None, :], mask=m2, other=0.0).to(tl.float32)
        a = tl.where(m2, tl.exp(dt[:, None] * A[None, :]), 1.0)
        x = (dt * u)[:, None] * Bt
        if NB_MODE == 1:
            x += tl.load(nb_ptr + row + t, mask=tmask, other=0.0).to(tl.float32)[:, None]
        if NB_MODE == 2:
            x += tl.load(nb_ptr + (row + t)[:, None] * N + n[None, :], mask=m2, other=0.0).to(tl.float32)
        return u, raw, dt, Bt, a, tl.where(m2, x, 0.0)

    @triton.jit
    def _selective_scan_fwd_kernel(u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, nb_ptr, y_ptr,
                                   L, DIM, N, GROUPS, DPG,
                                   HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
                                   SOFTPLUS: tl.constexpr, NB_MODE: tl.constexpr,
                                   BLOCK_L: tl.constexpr, BLOCK_N: tl.constexpr):
        b, d, row, bc_base, n, nmask, A, bias = _program_channel(A_ptr, bias_ptr, L, DIM, N, GROUPS, DPG,
                                                                 HAS_BIAS, BLOCK_N)
        h = tl.zeros([BLOCK_N], dtype=tl.float32)
        last = (tl.arange(0, BLOCK_L) == BLOCK_L - 1)[:, None]
        for l0 in range(0, L, BLOCK_L):
            t = l0 + tl.arange(0, BLOCK_L)
            tmask = t < L
            m2 = tmask[:, None] & nmask[None, :]
            u, raw, dt, Bt, a, x = _tile_terms(u_ptr, dt_ptr, B_ptr, nb_ptr, row, bc_base, t, tmask, n, nmask, A,
                                               bias, N, SOFTPLUS, NB_MODE)
            Ct = tl.load(C_ptr + bc_base + t[:, None] * N + n[None, :], mask=m2, other=0.0).to(tl.float32)
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
    def _selective_scan_bwd_kernel(u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, nb_ptr, gy_ptr,
                                   hstart_ptr, du_ptr, ddt_ptr, dA_ptr, dB_ptr, dC_ptr, dD_ptr, dz_ptr, dnb_ptr,
                                   L, DIM, N, GROUPS, DPG, NTILES,
                                   HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
                                   SOFTPLUS: tl.constexpr, NB_MODE: tl.constexpr,
                                   BLOCK_L: tl.constexpr, BLOCK_N: tl.constexpr):
        # Pass 1 runs the recurrence forward and keeps only the state at each tile's start (NTILES x N per
        # program). Pass 2 walks the tiles backwards: it recomputes the tile's states from its start state, and
        # scans g_t = dL/dh_t = C_t dy_t + a_{t+1} g_{t+1} (flipped, so a forward scan with the forward combine),
        # carrying g across tiles. a_t h_{t-1} = h_t - x_t gives dA and ddt without dividing by a.
        b, d, row, bc_base, n, nmask, A, bias = _program_channel(A_ptr, bias_ptr, L, DIM, N, GROUPS, DPG,
                                                                 HAS_BIAS, BLOCK_N)
        hrow = (b * DIM + d) * NTILES * N
        Dd = 0.0
        if HAS_D:
            Dd = tl.load(D_ptr + d).to(tl.float32)
        steps = tl.arange(0, BLOCK_L)
        last = (steps == BLOCK_L - 1)[:, None]
        first = (steps == 0)[:, None]

        h = tl.zeros([BLOCK_N], dtype=tl.float32)
        for k in range(0, NTILES):
            tl.store(hstart_ptr + hrow + k * N + n, h, mask=nmask)
            t = k * BLOCK_L + steps
            u, raw, dt, Bt, a, x = _tile_terms(u_ptr, dt_ptr, B_ptr, nb_ptr, row, bc_base, t, t < L, n, nmask, A,
                                               bias, N, SOFTPLUS, NB_MODE)
            acum, hloc = tl.associative_scan((a, x), 0, _combine)
            h = tl.sum(tl.where(last, hloc + acum * h[None, :], 0.0), axis=0)
        tl.debug_barrier()

        g_next = tl.zeros([BLOCK_N], dtype=tl.float32)     # dL/dh at the first step of the tile after this one
        dA_acc = tl.zeros([BLOCK_N], dtype=tl.float32)
        dD_acc = tl.zeros([BLOCK_L], dtype=tl.float32)
        for i in range(0, NTILES):
            k = NTILES - 1 - i
            t = k * BLOCK_L + steps
            tmask = t < L
            m2 = tmask[:, None] & nmask[None, :]
            off = bc_base + t[:, None] * N + n[None, :]
            u, raw, dt, Bt, a, x = _tile_terms(u_ptr, dt_ptr, B_ptr, nb_ptr, row, bc_base, t, tmask, n, nmask, A,
                                               bias, N, SOFTPLUS, NB_MODE)
            Ct = tl.load(C_ptr + off, mask=m2, other=0.0).to(tl.float32)
            h0 = tl.load(hstart_ptr + hrow + k * N + n, mask=nmask, other=0.0)
            acum, hloc = tl.associative_scan((a, x), 0, _combine)
            hs = hloc + acum * h0[None, :]

            gy = tl.load(gy_ptr + row + t, mask=tmask, other=0.0).to(tl.float32)
            if HAS_Z:
                z = tl.load(z_ptr + row + t, mask=tmask, other=0.0).to(tl.float32)
                sig = 1.0 / (1.0 + tl.exp(-z))
                y_pre = tl.sum(hs * Ct, axis=1) + Dd * u
                tl.store(dz_ptr + row + t, gy * y_pre * sig * (1.0 + z * (1.0 - sig)), mask=tmask)
                gy = gy * z * sig
            if HAS_D:
                dD_acc += tl.where(tmask, gy * u, 0.0)
            tl.atomic_add(dC_ptr + off, gy[:, None] * hs, mask=m2)    # B and C are shared by a group's channels

            t1 = t + 1
            t1mask = t1 < L
            raw1 = tl.load(dt_ptr + row + t1, mask=t1mask, other=0.0).to(tl.float32) + bias
            a_next = tl.exp(_softplus_dt(raw1, SOFTPLUS)[:, None] * A[None, :])
            a_next = tl.where(t1mask[:, None] & nmask[None, :], a_next, 1.0)
            c = tl.where(m2, gy[:, None] * Ct, 0.0)
            aprod, gloc = tl.associative_scan((tl.flip(a_next, 0), tl.flip(c, 0)), 0, _combine)
            gs = tl.where(m2, tl.flip(gloc, 0) + tl.flip(aprod, 0) * g_next[None, :], 0.0)
            g_next = tl.sum(tl.where(first, gs, 0.0), axis=0)

            if NB_MODE == 1:
                tl.store(dnb_ptr + row + t, tl.sum(gs, axis=1), mask=tmask)
            if NB_MODE == 2:
                tl.store(dnb_ptr + (row + t)[:, None] * N + n[None, :], gs, mask=m2)
            tl.atomic_add(dB_ptr + off, gs * (dt * u)[:, None], mask=m2)
            gsB = tl.sum(gs * Bt, axis=1)
            g_ah = tl.where(m2, gs * (hs - x), 0.0)          # dL/da_t * a_t
            ddt = gsB * u + tl.sum(g_ah * A[None, :], axis=1)
            dA_acc += tl.sum(g_ah * dt[:, None], axis=0)
            tl.store(du_ptr + row + t, gsB * dt + Dd * gy, mask=tmask)
            if SOFTPLUS:
                ddt = tl.where(raw <= 20.0, ddt / (1.0 + tl.exp(-raw)), ddt)
            tl.store(ddt_ptr + row + t, ddt, mask=tmask)    # delta_bias's gradient is its sum (on the host)
        tl.store(dA_ptr + (b * DIM + d) * N + n, dA_acc, mask=nmask)
        tl.store(dD_ptr + b * DIM + d, tl.sum(dD_acc, axis=0))

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


def _scan_launch(u, delta, A, B, C, D, z, delta_bias, neighbor, delta_softplus, block_l):
    """What both scan kernels take: the inputs in the C++ kernel's layout (``selective_scan._kernel_args``; an
    absent one as a placeholder pointer the kernel never reads), the sizes and the compile-time flags."""
    from .selective_scan import _kernel_args, check_inputs
    check_inputs(u, delta, A, B, C, D, z, delta_bias, neighbor)
    args = _kernel_args(u, delta, A, B, C, D, z, delta_bias, neighbor)
    args = [args[0] if given is None else a for a, given in zip(args, (u, delta, A, B, C, D, z, delta_bias, neighbor))]
    dim, groups = u.shape[1], args[3].shape[1]
    sizes = (u.shape[2], dim, A.shape[1], groups, dim // groups)
    flags = dict(HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None,
                 SOFTPLUS=bool(delta_softplus), NB_MODE=0 if neighbor is None else (1 if neighbor.dim() == 3 else 2),
                 BLOCK_L=block_l, BLOCK_N=_next_pow2(A.shape[1]))
    return args, sizes, flags


def selective_scan_triton(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                          neighbor=None, block_l: int = 64):
    """The scan forward on the GPU (or any device under ``TRITON_INTERPRET=1``); output in u's dtype."""
    _require()
    args, sizes, flags = _scan_launch(u, delta, A, B, C, D, z, delta_bias, neighbor, delta_softplus, block_l)
    y = torch.empty(u.shape, device=u.device, dtype=torch.float32)
    _selective_scan_fwd_kernel[u.shape[:2]](*args, y, *sizes, **flags)
    return y.to(u.dtype)


def selective_scan_backward_triton(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                                   neighbor=None, grad=None, block_l: int = 64):
    """Gradients of the scan for every input, in signature order (u, delta, A, B, C, D, z, delta_bias, neighbor;
    None for an absent one), each in its input's dtype and shape. Recomputes the states instead of saving them:
    memory is one state vector per tile and channel. B/C gradients are summed over a group's channels with
    atomic adds, so their last bits may differ between runs on a GPU."""
    _require()
    from .selective_scan import _grads_from_kernel
    args, sizes, flags = _scan_launch(u, delta, A, B, C, D, z, delta_bias, neighbor, delta_softplus, block_l)
    bsz, dim, length = u.shape
    n = A.shape[1]
    f32 = dict(device=u.device, dtype=torch.float32)
    ntiles = -(-length // block_l)
    hstart = torch.empty(bsz, dim, ntiles, n, **f32)
    du, ddt = torch.empty(u.shape, **f32), torch.empty(u.shape, **f32)
    dz = du if z is None else torch.empty(u.shape, **f32)
    dnb = du if neighbor is None else torch.empty(args[8].shape, **f32)
    dA, dD = torch.empty(bsz, dim, n, **f32), torch.empty(bsz, dim, **f32)
    dB, dC = torch.zeros(args[3].shape, **f32), torch.zeros(args[4].shape, **f32)
    _selective_scan_bwd_kernel[(bsz, dim)](*args, grad.to(args[0].dtype).contiguous(), hstart,
                                           du, ddt, dA, dB, dC, dD, dz, dnb, *sizes, ntiles, **flags)
    grads = _grads_from_kernel((du, ddt, dA, dB, dC, dD, dz, dnb), B, C, D, z, delta_bias, neighbor)
    return [None if g is None else g.to(t.dtype)
            for g, t in zip(grads, (u, delta, A, B, C, D, z, delta_bias, neighbor))]


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
