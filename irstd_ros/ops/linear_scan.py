"""The first-order linear recurrence ``h_t = exp(log_a_t) * h_{t-1} + x_t`` in O(sqrt L) torch steps.

A Python loop over time costs one kernel launch per step (4096 at L=4096).
Here time is cut into ``n`` blocks of ``T ~ sqrt(L)`` steps:

1. every block runs its own recurrence from a zero state, all blocks at once
   (``T`` vectorised steps);
2. the state carried into each block is a recurrence over block ends
   (``n`` steps on small tensors);
3. each step adds ``exp(cumsum(log_a))`` (the decay since its block's start)
   times its block's carry.

Only standard ops (mul, add, cumsum, exp, slicing, stack), no products of
growing factors (the decay is a cumsum of logs, exponentiated once, always in
(0, 1] for stable systems), so the same code is the export decomposition:
ONNX has CumSum but no CumProd.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def block_size(length: int) -> int:
    return max(1, int(math.ceil(math.sqrt(length))))


def linear_scan(log_a: torch.Tensor, x: torch.Tensor, block: int | None = None) -> torch.Tensor:
    """States ``h`` (same shape as ``x``) of ``h_t = exp(log_a_t) h_{t-1} + x_t`` over the last dim, h_{-1} = 0."""
    if log_a.shape != x.shape:
        raise ValueError(f"linear_scan: log_a {tuple(log_a.shape)} and x {tuple(x.shape)} differ")
    *lead, length = x.shape
    if length == 0:
        return x.clone()
    T = block or block_size(length)
    n = -(-length // T)
    pad = n * T - length
    if pad:  # padded steps come last, so they never reach a real one
        log_a = F.pad(log_a, (0, pad))
        x = F.pad(x, (0, pad))
    # time-in-block leading, so each step reads a contiguous slab
    la = log_a.reshape(-1, n, T).permute(2, 0, 1).contiguous()
    xs = x.reshape(-1, n, T).permute(2, 0, 1).contiguous()
    a = torch.exp(la)
    h = xs[0]
    local = [h]
    for t in range(1, T):
        h = a[t] * h + xs[t]
        local.append(h)
    local = torch.stack(local, 0)                      # (T, M, n): block-local states
    decay = torch.exp(torch.cumsum(la, 0))             # (T, M, n): decay since the block's start
    carry = [torch.zeros_like(local[0, :, 0])]
    for k in range(1, n):
        carry.append(decay[T - 1, :, k - 1] * carry[-1] + local[T - 1, :, k - 1])
    carry = torch.stack(carry, -1)                     # (M, n): state entering each block
    states = local + decay * carry.unsqueeze(0)
    states = states.permute(1, 2, 0).reshape(*lead, n * T)
    return states[..., :length] if pad else states


def reverse_linear_scan(log_a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Adjoint of :func:`linear_scan`: ``r_t = g_t + exp(log_a_{t+1}) r_{t+1}``, r_L = 0."""
    shifted = torch.cat([log_a[..., 1:], torch.zeros_like(log_a[..., :1])], -1)
    return linear_scan(shifted.flip(-1), g.flip(-1)).flip(-1)
