"""Segment Anything's mask-decoder parts (Kirillov et al., ICCV 2023): the two-way transformer between
output tokens and image embedding, its token MLPs and the random-Fourier positional encoding.

Written from the SAM paper's description (§3 and its appendix): the names follow SAM's checkpoint
layout (``mask_decoder.transformer.*``, ``prompt_encoder.pe_layer.*``) so SAM/MobileSAM weights map
one to one. The positional encoding here is computed for the actual embedding grid, so any frame
size works.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn


class TokenMLP(nn.Module):
    """``num_layers`` linear layers with ReLU between them (SAM's ``MLP``, names ``layers.i``)."""

    def __init__(self, dim: int, hidden: int, out: int, num_layers: int):
        super().__init__()
        dims = [dim] + [hidden] * (num_layers - 1) + [out]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = torch.relu(x)
        return x


class TokenAttention(nn.Module):
    """Multi-head attention whose inner width can be ``dim / downsample_rate`` (SAM's cross-attentions use 2)."""

    def __init__(self, dim: int, heads: int, downsample_rate: int = 1):
        super().__init__()
        inner = dim // downsample_rate
        if inner % heads:
            raise ValueError(f"attention width {inner} is not divisible by {heads} heads")
        self.heads = heads
        self.q_proj, self.k_proj, self.v_proj = nn.Linear(dim, inner), nn.Linear(dim, inner), nn.Linear(dim, inner)
        self.out_proj = nn.Linear(inner, dim)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.view(b, n, self.heads, c // self.heads).transpose(1, 2)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        q, k, v = self._split(self.q_proj(q)), self._split(self.k_proj(k)), self._split(self.v_proj(v))
        attn = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
        out = attn.softmax(-1) @ v
        return self.out_proj(out.transpose(1, 2).flatten(2))


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.lin1, self.lin2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin2(torch.relu(self.lin1(x)))


class TwoWayBlock(nn.Module):
    """Token self-attention, token->image cross-attention, token MLP, image->token cross-attention (post-norm)."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, skip_first_pe: bool):
        super().__init__()
        self.skip_first_pe = skip_first_pe
        self.self_attn = TokenAttention(dim, heads)
        self.cross_attn_token_to_image = TokenAttention(dim, heads, 2)
        self.mlp = FeedForward(dim, mlp_dim)
        self.cross_attn_image_to_token = TokenAttention(dim, heads, 2)
        self.norm1, self.norm2, self.norm3, self.norm4 = (nn.LayerNorm(dim) for _ in range(4))

    def forward(self, tokens, image, token_pe, image_pe):
        if self.skip_first_pe:
            tokens = self.self_attn(tokens, tokens, tokens)
        else:
            q = tokens + token_pe
            tokens = tokens + self.self_attn(q, q, tokens)
        tokens = self.norm1(tokens)
        tokens = self.norm2(tokens + self.cross_attn_token_to_image(tokens + token_pe, image + image_pe, image))
        tokens = self.norm3(tokens + self.mlp(tokens))
        image = self.norm4(image + self.cross_attn_image_to_token(image + image_pe, tokens + token_pe, tokens))
        return tokens, image


class TwoWayTransformer(nn.Module):
    """SAM's two-way transformer: returns (updated tokens (B, T, C), updated image tokens (B, HW, C))."""

    def __init__(self, dim: int = 256, depth: int = 2, heads: int = 8, mlp_dim: int = 2048):
        super().__init__()
        self.layers = nn.ModuleList(TwoWayBlock(dim, heads, mlp_dim, skip_first_pe=(i == 0)) for i in range(depth))
        self.final_attn_token_to_image = TokenAttention(dim, heads, 2)
        self.norm_final_attn = nn.LayerNorm(dim)

    def forward(self, image: torch.Tensor, image_pe: torch.Tensor, tokens: torch.Tensor):
        image = image.flatten(2).transpose(1, 2)
        image_pe = image_pe.flatten(2).transpose(1, 2)
        queries = tokens
        for layer in self.layers:
            queries, image = layer(queries, image, tokens, image_pe)
        queries = self.norm_final_attn(
            queries + self.final_attn_token_to_image(queries + tokens, image + image_pe, image))
        return queries, image


class RandomFourierPE(nn.Module):
    """Positional encoding by random spatial frequencies (SAM's ``PositionEmbeddingRandom``): a fixed
    Gaussian (2, dim/2) matrix, saved with the weights, maps pixel-centre coordinates in [-1, 1] to
    sin/cos features."""

    def __init__(self, dim: int = 256, scale: float = 1.0):
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", scale * torch.randn(2, dim // 2))

    def forward(self, h: int, w: int) -> torch.Tensor:
        """(dim, h, w) encoding of an h x w grid."""
        m = self.positional_encoding_gaussian_matrix
        ys = (torch.arange(h, device=m.device, dtype=m.dtype) + 0.5) / h
        xs = (torch.arange(w, device=m.device, dtype=m.dtype) + 0.5) / w
        coords = torch.stack(torch.broadcast_tensors(xs[None, :], ys[:, None]), -1) * 2 - 1  # (h, w, 2) as (x, y)
        proj = 2 * math.pi * (coords @ m)
        return torch.cat([proj.sin(), proj.cos()], -1).permute(2, 0, 1)
