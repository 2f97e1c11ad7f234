"""``torch.ops.irstd.selective_scan``: Mamba's selective scan, plus IRMamba's neighbour term.

Contract (Mamba ``selective_scan_fn`` semantics, with one extra input)::

    selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None,
                   delta_softplus=False, neighbor=None) -> y          # (batch, dim, L)

    u, delta, z : (batch, dim, L)        A : (dim, N)       D, delta_bias : (dim,)
    B, C        : (batch, N, L) or (batch, groups, N, L), dim % groups == 0
    neighbor    : (batch, dim, L)    one value per step and channel, added to every state, or
                  (batch, dim, N, L) one value per step, channel and state

    dt_t = delta_t + delta_bias, then softplus(dt_t) if delta_softplus
    h_t  = exp(dt_t * A) * h_{t-1} + dt_t * B_t * u_t + neighbor_t       (h_{-1} = 0)
    y_t  = C_t . h_t + D * u_t,  then  y_t * silu(z_t)  if z is given

``neighbor`` is IRMamba's eq. (8) term ``f(.) * sum_i [W_x(i) dx_i x(t) + W_y(i) dy_i x(t)]``:
the pixel differences, their weights and the spatial-distribution gate f are
ordinary tensor ops on the feature map, computed outside; the scan only has to
add their result to the state update at each step. Without it (None) the op is
exactly Mamba's. Computation is in float32 (float64 stays float64); the output
has u's dtype.

Implementations, all checked against :func:`selective_scan_reference`:
- ``selective_scan_reference``: a Python loop over time, obviously correct, slow;
- the fused C++ kernel (``csrc/``, CPU forward and backward), used on CPU tensors when built;
- ``selective_scan_blocked``: the O(sqrt L)-step torch scan of :mod:`.linear_scan`, the fallback
  without a compiler and the decomposition that ``torch.export``/ONNX see;
- ``triton_kernels.selective_scan_triton`` / ``selective_scan_backward_triton``: the GPU kernels, forward and
  backward (the backward recomputes the states tile by tile rather than saving them).
"""
from __future__ import annotations

from typing import List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from . import cpu_extension
from .linear_scan import linear_scan


class ScanShapeError(ValueError):
    pass


def check_inputs(u, delta, A, B, C, D=None, z=None, delta_bias=None, neighbor=None) -> None:
    """Shape checks with one-line messages (the kernels index raw memory)."""
    if u.dim() != 3:
        raise ScanShapeError(f"selective_scan: u must be (batch, dim, L), got {tuple(u.shape)}")
    bsz, dim, length = u.shape
    if delta.shape != u.shape:
        raise ScanShapeError(f"selective_scan: delta {tuple(delta.shape)} must match u {tuple(u.shape)}")
    if A.dim() != 2 or A.shape[0] != dim:
        raise ScanShapeError(f"selective_scan: A must be (dim={dim}, N), got {tuple(A.shape)}")
    n = A.shape[1]
    for name, m in (("B", B), ("C", C)):
        ok = (m.dim() == 3 and tuple(m.shape) == (bsz, n, length)) or (
            m.dim() == 4 and m.shape[0] == bsz and m.shape[2:] == (n, length) and m.shape[1] > 0
            and dim % m.shape[1] == 0)
        if not ok:
            raise ScanShapeError(f"selective_scan: {name} must be (batch, N, L) or (batch, groups, N, L) with "
                                 f"dim % groups == 0; got {tuple(m.shape)} for u {tuple(u.shape)}, N={n}")
    for name, v in (("D", D), ("delta_bias", delta_bias)):
        if v is not None and tuple(v.shape) != (dim,):
            raise ScanShapeError(f"selective_scan: {name} must be (dim={dim},), got {tuple(v.shape)}")
    if z is not None and z.shape != u.shape:
        raise ScanShapeError(f"selective_scan: z {tuple(z.shape)} must match u {tuple(u.shape)}")
    if neighbor is not None and tuple(neighbor.shape) not in ((bsz, dim, length), (bsz, dim, n, length)):
        raise ScanShapeError(f"selective_scan: neighbor must be (batch, dim, L) or (batch, dim, N, L), "
                             f"got {tuple(neighbor.shape)}")


def _groups4(m: Tensor) -> Tensor:
    return m.unsqueeze(1) if m.dim() == 3 else m


def _per_channel(m: Tensor, dim: int) -> Tensor:
    """(batch, groups, N, L) -> (batch, dim, N, L): channel d uses group d // (dim // groups)."""
    m = _groups4(m)
    bsz, g, n, length = m.shape
    return m.unsqueeze(2).expand(bsz, g, dim // g, n, length).reshape(bsz, dim, n, length)


def _compute_dtype(t: Tensor) -> torch.dtype:
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def _dt(delta, delta_bias, delta_softplus):
    dt = delta if delta_bias is None else delta + delta_bias[None, :, None]
    return F.softplus(dt) if delta_softplus else dt


def _gate(y, u, D, z):
    if D is not None:
        y = y + D[None, :, None] * u
    if z is not None:
        y = y * F.silu(z)
    return y


def selective_scan_reference(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                             neighbor=None) -> Tensor:
    """The recurrence, one time step per Python iteration: slow and obviously right."""
    check_inputs(u, delta, A, B, C, D, z, delta_bias, neighbor)
    ct = _compute_dtype(u)
    u_, delta_, A_ = u.to(ct), delta.to(ct), A.to(ct)
    dim = u.shape[1]
    Bx, Cx = _per_channel(B.to(ct), dim), _per_channel(C.to(ct), dim)
    dt = _dt(delta_, None if delta_bias is None else delta_bias.to(ct), delta_softplus)
    h = u_.new_zeros(u.shape[0], dim, A.shape[1])
    ys = []
    for t in range(u.shape[2]):
        h = torch.exp(dt[:, :, t, None] * A_) * h + (dt[:, :, t] * u_[:, :, t])[..., None] * Bx[..., t]
        if neighbor is not None:
            nb = neighbor.to(ct)
            h = h + (nb[:, :, t, None] if nb.dim() == 3 else nb[..., t])
        ys.append((h * Cx[..., t]).sum(-1))
    y = torch.stack(ys, -1)
    return _gate(y, u_, None if D is None else D.to(ct), None if z is None else z.to(ct)).to(u.dtype)


def selective_scan_blocked(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                           neighbor=None) -> Tensor:
    """Standard torch ops only (the export decomposition and the no-compiler fallback)."""
    ct = _compute_dtype(u)
    u_, A_ = u.to(ct), A.to(ct)
    dim = u.shape[1]
    dt = _dt(delta.to(ct), None if delta_bias is None else delta_bias.to(ct), delta_softplus)
    log_a = dt[:, :, None, :] * A_[None, :, :, None]                    # (b, d, N, L)
    x = (dt * u_)[:, :, None, :] * _per_channel(B.to(ct), dim)
    if neighbor is not None:
        nb = neighbor.to(ct)
        x = x + (nb[:, :, None, :] if nb.dim() == 3 else nb)
    h = linear_scan(log_a, x)
    y = (h * _per_channel(C.to(ct), dim)).sum(2)
    return _gate(y, u_, None if D is None else D.to(ct), None if z is None else z.to(ct)).to(u.dtype)


def _kernel_args(u, delta, A, B, C, D, z, delta_bias, neighbor):
    """Contiguous compute-dtype tensors in the C++ kernel's layout; absent inputs as empty tensors."""
    ct = _compute_dtype(u)
    empty = u.new_empty(0, dtype=ct)

    def c(t):
        return empty if t is None else t.to(ct).contiguous()

    tm = lambda m: _groups4(m).to(ct).transpose(2, 3).contiguous()    # (b, g, L, N)
    nb = empty if neighbor is None else (
        neighbor.to(ct).contiguous() if neighbor.dim() == 3 else neighbor.to(ct).transpose(2, 3).contiguous())
    return [c(u), c(delta), c(A), tm(B), tm(C), c(D), c(z), c(delta_bias), nb]


@torch.library.custom_op("irstd::selective_scan", mutates_args=())
def selective_scan(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Optional[Tensor] = None,
                   z: Optional[Tensor] = None, delta_bias: Optional[Tensor] = None, delta_softplus: bool = False,
                   neighbor: Optional[Tensor] = None) -> Tensor:
    check_inputs(u, delta, A, B, C, D, z, delta_bias, neighbor)
    if u.device.type == "cpu":
        ext = cpu_extension.load()
        if ext is not None:
            args = _kernel_args(u, delta, A, B, C, D, z, delta_bias, neighbor)
            return ext.forward(*args, delta_softplus).to(u.dtype)
    elif u.device.type == "cuda":
        from . import triton_kernels
        if triton_kernels.AVAILABLE:
            return triton_kernels.selective_scan_triton(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                                                        neighbor)
    return selective_scan_blocked(u, delta, A, B, C, D, z, delta_bias, delta_softplus, neighbor)


@selective_scan.register_fake
def _(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, neighbor=None):
    check_inputs(u, delta, A, B, C, D, z, delta_bias, neighbor)
    return torch.empty_like(u)


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs[:8], inputs[9])
    ctx.delta_softplus = inputs[8]


def _reduce_to(g: Tensor, like: Tensor) -> Tensor:
    """The kernel's (b, groups, L, N) gradient -> B/C's own (b, [groups,] N, L) shape."""
    g = g.transpose(2, 3)
    return g.squeeze(1) if like.dim() == 3 else g


def _grads_blocked(u, delta, A, B, C, D, z, delta_bias, delta_softplus, neighbor, grad):
    """Gradients by differentiating the torch decomposition (GPU, or CPU without the C++ kernels)."""
    with torch.enable_grad():
        ins = [t.detach().requires_grad_(True) if t is not None else None
               for t in (u, delta, A, B, C, D, z, delta_bias, neighbor)]
        out = selective_scan_blocked(*ins[:8], delta_softplus, ins[8])
        wrt = [t for t in ins if t is not None]
        grads = iter(torch.autograd.grad(out, wrt, grad, allow_unused=True))
        return [next(grads) if t is not None else None for t in ins]


def _grads_from_kernel(raw, B, C, D, z, delta_bias, neighbor) -> list:
    """A fused backward's outputs in the kernel layout (:func:`_kernel_args`; A's and D's gradients per batch)
    -> the gradients in signature order, None for an absent input. Both the C++ and the Triton kernel return
    ``(gu, gdelta, gA per batch, gB, gC, gD per batch, gz, gneighbor)``; delta_bias's gradient is gdelta's sum."""
    gu, gdelta, gA_bd, gB, gC, gD_bd, gz, gnb = raw
    gn = None
    if neighbor is not None:
        gn = gnb if neighbor.dim() == 3 else gnb.transpose(2, 3)
    return [gu, gdelta, gA_bd.sum(0), _reduce_to(gB, B), _reduce_to(gC, C),
            None if D is None else gD_bd.sum(0), None if z is None else gz,
            None if delta_bias is None else gdelta.sum((0, 2)), gn]


def _grads_cpp(ext, u, delta, A, B, C, D, z, delta_bias, delta_softplus, neighbor, grad):
    args = _kernel_args(u, delta, A, B, C, D, z, delta_bias, neighbor)
    raw = ext.backward(*args, delta_softplus, grad.to(args[0].dtype).contiguous())
    return _grads_from_kernel(raw, B, C, D, z, delta_bias, neighbor)


# the tensor inputs in signature order: the order of every gradient list here
TENSOR_INPUTS = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias", "neighbor")


@torch.library.custom_op("irstd::selective_scan_backward", mutates_args=())
def selective_scan_backward(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Optional[Tensor],
                            z: Optional[Tensor], delta_bias: Optional[Tensor], delta_softplus: bool,
                            neighbor: Optional[Tensor], grad: Tensor) -> List[Tensor]:
    """The fused backward as an opaque op (so compiled graphs keep it whole): the C++ kernel on CPUs, the Triton
    kernel on CUDA; gradients for every input in signature order, an empty tensor for an absent one."""
    if not _fused_backward_available(u):
        raise RuntimeError("irstd::selective_scan_backward needs the C++ CPU kernels or, on CUDA, triton")
    ins = (u, delta, A, B, C, D, z, delta_bias, neighbor)
    if u.device.type == "cpu":
        grads = _grads_cpp(cpu_extension.load(), *ins[:8], delta_softplus, neighbor, grad)
    else:
        from . import triton_kernels
        grads = triton_kernels.selective_scan_backward_triton(*ins[:8], delta_softplus, neighbor, grad)
    return [u.new_empty(0) if g is None else g.to(t.dtype).contiguous() for g, t in zip(grads, ins)]


@selective_scan_backward.register_fake
def _(u, delta, A, B, C, D, z, delta_bias, delta_softplus, neighbor, grad):
    return [u.new_empty(0) if t is None else torch.empty_like(t, memory_format=torch.contiguous_format)
            for t in (u, delta, A, B, C, D, z, delta_bias, neighbor)]


def _fused_backward_available(u: Tensor) -> bool:
    if u.device.type == "cpu":
        return cpu_extension.load() is not None
    if u.device.type == "cuda":
        from . import triton_kernels
        return triton_kernels.AVAILABLE
    return False


def _backward(ctx, grad):
    saved = ctx.saved_tensors
    if _fused_backward_available(saved[0]):
        grads = selective_scan_backward(*saved[:8], ctx.delta_softplus, saved[8], grad)
        grads = [g if t is not None else None for g, t in zip(grads, saved)]
    else:  # no compiler, or triton missing: autograd through the decomposition (must run here, above the op layer)
        grads = _grads_blocked(*saved[:8], ctx.delta_softplus, saved[8], grad)
    return (*grads[:8], None, grads[8])


selective_scan.register_autograd(_backward, setup_context=_setup_context)
