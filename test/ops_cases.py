"""Random selective-scan inputs shared by the op tests."""
from __future__ import annotations

import torch

# (batch, dim, N, L, groups, neighbor): groups None = B/C as (batch, N, L); neighbor 3 = (b, d, L), 4 = (b, d, N, L)
SCAN_SHAPES = [
    (1, 1, 1, 1, None, None),      # the smallest scan
    (2, 6, 4, 37, None, None),     # prime length: a partial last block
    (2, 6, 4, 37, 2, 3),           # grouped B/C, per-channel neighbour term
    (1, 4, 16, 130, 4, 4),         # one group per channel, per-state neighbour term
    (3, 5, 3, 64, None, 4),
]


def scan_inputs(batch, dim, n, length, groups=None, neighbor=None, dtype=torch.float32, seed=0, options="all"):
    """Inputs in Mamba's usual ranges: negative real A, small delta, optional D / z / delta_bias."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=dtype)
    bc = (batch, n, length) if groups is None else (batch, groups, n, length)
    # delta is a step size: positive when used raw, any sign before softplus
    delta = r(batch, dim, length) * 0.5 if options == "all" else torch.rand(batch, dim, length, generator=g,
                                                                             dtype=dtype) * 0.5
    args = dict(u=r(batch, dim, length), delta=delta,
                A=-(torch.rand(dim, n, generator=g, dtype=dtype) + 0.1), B=r(*bc), C=r(*bc))
    if options == "all":
        args.update(D=r(dim), z=r(batch, dim, length), delta_bias=r(dim) * 0.1, delta_softplus=True)
    if neighbor == 3:
        args["neighbor"] = r(batch, dim, length)
    elif neighbor == 4:
        args["neighbor"] = r(batch, dim, n, length)
    return args
