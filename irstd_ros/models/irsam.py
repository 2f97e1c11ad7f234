"""IRSAM: a TinyViT encoder with wavelet Perona-Malik diffusion and a granularity-aware decoder.

Written from Zhang et al., "IRSAM: Advancing Segment Anything Model for Infrared Small Target
Detection" (ECCV 2024), ``../shared/papers/irsam.txt``. The authors' public code never released
WPMD (its encoder is plain MobileSAM), uses only the deep feature in its decoder and upsamples
every input to 1024x1024; we follow the paper and run at the frame's own size.

Layout (11.58 M parameters at the default configuration, 6 % under the 12.33 M of the paper's Table 1:
encoder 5.74 M, WPMD 1.64 M, decoder 4.18 M, native-resolution head 0.006 M; SAM's IoU head (0.14 M)
and prompt encoder are not built, and the paper does not break its count down):

* Encoder: MobileSAM's TinyViT-5M (``irstd_ros.layers.tinyvit``: widths 64/128/160/320, depths
  2/2/6/2, heads 2/4/5/10, windows 7/7/14/7) and its neck to a 256-channel embedding at 1/16,
  5.7 M parameters. One input channel (thermal); a MobileSAM RGB stem is summed over its three
  input channels when loaded.
* WPMD (§3.2, eq. 4), one block per encoder stage (the paper's best, Table 4: 4 blocks). Block i
  takes stage i's input ``u``, runs ``steps`` explicit diffusion steps on its Haar high bands and
  maps the result with a 3x3 conv (stride = the stage's merge stride) + BN to the stage's output
  width, added to the stage's output ("ViT-Tiny aggregates the edge features extracted by WPMD at
  each layer"). One step, with ``W``/``W^T`` the orthonormal Haar DWT/IDWT
  (``torch.ops.irstd.haar_dwt2d``/``haar_idwt2d``)::

      (LL, LH, HL, HH) = W u;   s = sqrt(LH² + HL²);   g = 1 / (1 + s² / k²)
      u <- u - W^T(0, g·LH, g·HL, 0)

  The sign: eq. 4 is printed with ``+``, but its right-hand side discretises div(g ∇u), and the
  adjoint of a difference operator is minus a divergence. With ``+`` a step would amplify the LH/HL
  bands by (1 + g), sharpening noise most where the image is flat, against the paper's own "the
  output of WPMD would be a smoother version of the input". With ``-`` a flat region (s << k, g ≈ 1)
  loses its LH/HL detail and an edge (s >> k, g ≈ 0) keeps it: Perona-Malik. Eq. 4's step Δt = 1 is
  kept. ``k`` ("a positive constant") is learned per channel (as ``log k``, initial k = 1): encoder
  features have no fixed scale, so no single constant would fit all channels. The BN after the conv
  starts at zero weight (``wpmd_gain_init``), so a pretrained encoder starts undisturbed. Trained from
  scratch, those gains stayed near zero (|γ| ≈ 0.01 after 40 epochs, against ≈ 1 elsewhere): the branch
  hardly opened, so ``wpmd_gain_init=1`` is there for from-scratch runs (``bench/wpmd_gates.py``).
* GAD (§3.3). Tokens: 4 mask tokens and the new edge token (no prompt tokens, no IoU token); SAM's
  dense no-mask embedding is added to the image embedding and SAM's random-Fourier encoding is its
  positional encoding. SAM's two-way transformer (depth 2, 8 heads, MLP 2048) gives X_coarse and
  the updated tokens (eq. 5). SAM's output upscaling (two transposed convs, 256 -> 32 channels, 1/16
  -> 1/4) is eq. 6's TConv. X_multi (eq. 7) = Conv-LN-ReLU-Conv of the shallow feature +
  TConv-LN-ReLU-TConv of the deep feature (stage 3's output, 320 channels at 1/16).
  The shallow feature: eq. 7 names the first stage's output (128 channels at 1/8 for a 1024 input)
  but adds Conv(X_shallow) to a 1/4 map, which only the first stage's feature *before* its patch
  merging is (64 channels at 1/4). We use that one: it is also the finest, which is what the
  1-3 px targets need. Masks = MLP_i(mask token i) · upscaled X_coarse, one per mask token
  (eq. 9, SAM's four hypernetwork MLPs), edge = MLP(edge token) · X_fine (eq. 8).
* How the edge "improves the shape and size of the mask" (the paper does not say), and the output
  resolution: the authors' masks come out at 1/4 of a 1024 input that was itself the 512 frame
  upsampled 2x, i.e. at half the frame's resolution. Running at the frame's own size, 1/4 would
  blur the 1-3 px targets away, so a native-resolution head (``native_head``, ours) follows the
  decoder: the four 1/4 mask maps and the edge map are upsampled bilinearly to the frame and
  refined by two 3x3 convs that also see a two-conv feature of the frame itself, added to mask 0
  (SAM's single-mask output); its last conv starts at zero, so the output starts as the upsampled
  eq. 9 mask. This is where the edge shapes the mask. ``native_head=False`` gives the paper's
  1/4 mask 0, upsampled (mask tokens 1-3 then only take part in attention).

Loss (§3.4): Dice on the mask + λ·BCE on the edge map, λ = 10, edge labels the mask's inner boundary
(``training.losses.IRSAMLoss``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..layers.mamba2d import LayerNorm2d
from ..layers.sam_decoder import RandomFourierPE, TokenMLP, TwoWayTransformer
from ..layers.tinyvit import ConvBN, TinyViT
from ..ops.haar import haar_dwt2d, haar_idwt2d
from .registry import ModelCfg, register_model


class WPMD(nn.Module):
    """Wavelet Perona-Malik diffusion of ``cin`` channels, then a conv to ``cout`` at ``stride`` (see module doc)."""

    def __init__(self, cin: int, cout: int, stride: int = 1, steps: int = 1, gain_init: float = 0.0):
        super().__init__()
        self.steps = steps
        self.log_k = nn.Parameter(torch.zeros(cin))
        self.proj = ConvBN(cin, cout, 3, stride, bn_weight_init=gain_init)

    def conductance(self, lh: torch.Tensor, hl: torch.Tensor) -> torch.Tensor:
        """Perona-Malik's g = 1 / (1 + s²/k²), s² = LH² + HL²: near 1 diffuses (flat), near 0 keeps (edge)."""
        inv_k2 = torch.exp(-2 * self.log_k).view(1, -1, 1, 1)
        return 1.0 / (1.0 + (lh * lh + hl * hl) * inv_k2)

    def diffuse(self, u: torch.Tensor) -> torch.Tensor:
        size = u.shape[-2:]
        for _ in range(self.steps):
            ll, lh, hl, hh = haar_dwt2d(u).chunk(4, 1)
            g = self.conductance(lh, hl)
            zero = torch.zeros_like(ll)
            u = u - haar_idwt2d(torch.cat([zero, g * lh, g * hl, zero], 1), size)
        return u

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.proj(self.diffuse(u))


class GranularityAwareDecoder(nn.Module):
    """GAD (§3.3): two-way transformer over mask + edge tokens, multi-granularity fine feature, dynamic kernels."""

    def __init__(self, dim: int, shallow_dim: int, deep_dim: int, upscale_dim: int = 32, depth: int = 2,
                 heads: int = 8, mlp_dim: int = 2048, num_mask_tokens: int = 4):
        super().__init__()
        self.pe_layer = RandomFourierPE(dim)
        self.no_mask_embed = nn.Embedding(1, dim)
        self.mask_tokens = nn.Embedding(num_mask_tokens, dim)
        self.edge_token = nn.Embedding(1, dim)
        self.transformer = TwoWayTransformer(dim, depth, heads, mlp_dim)
        mid = max(upscale_dim, dim // 4)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(dim, mid, 2, 2), LayerNorm2d(mid), nn.GELU(),
            nn.ConvTranspose2d(mid, upscale_dim, 2, 2), nn.GELU())
        self.shallow = nn.Sequential(  # eq. 7, first term: Conv(ReLU(Norm(Conv(X_shallow))))
            nn.Conv2d(shallow_dim, upscale_dim, 3, padding=1), LayerNorm2d(upscale_dim), nn.ReLU(),
            nn.Conv2d(upscale_dim, upscale_dim, 3, padding=1))
        self.deep = nn.Sequential(     # eq. 7, second term: TConv(ReLU(Norm(TConv(X_deep))))
            nn.ConvTranspose2d(deep_dim, mid, 2, 2), LayerNorm2d(mid), nn.ReLU(),
            nn.ConvTranspose2d(mid, upscale_dim, 2, 2))
        self.mask_mlps = nn.ModuleList(TokenMLP(dim, dim, upscale_dim, 3) for _ in range(num_mask_tokens))
        self.edge_mlp = TokenMLP(dim, dim, upscale_dim, 3)

    def forward(self, embedding: torch.Tensor, shallow: torch.Tensor, deep: torch.Tensor
                ) -> Tuple[torch.Tensor, torch.Tensor]:
        """(mask logits (B, T, H/4, W/4), one per mask token, edge logits (B, 1, H/4, W/4)) for a 1/16 ``embedding``."""
        b, c, h, w = embedding.shape
        src = embedding + self.no_mask_embed.weight.view(1, c, 1, 1)
        pe = self.pe_layer(h, w).to(src.dtype).unsqueeze(0)
        tokens = torch.cat([self.mask_tokens.weight, self.edge_token.weight]).unsqueeze(0).expand(b, -1, -1)
        tokens, image = self.transformer(src, pe, tokens)                                # eq. 5
        coarse = self.output_upscaling(image.transpose(1, 2).reshape(b, c, h, w))         # TConv(X_coarse)
        fine = coarse + self.shallow(shallow) + self.deep(deep)                           # eqs. 6, 7
        kernels = torch.stack([mlp(tokens[:, i]) for i, mlp in enumerate(self.mask_mlps)], 1)
        mask = torch.einsum("btc,bchw->bthw", kernels, coarse)                             # eq. 9
        edge = torch.einsum("bc,bchw->bhw", self.edge_mlp(tokens[:, -1]), fine)           # eq. 8
        return mask, edge.unsqueeze(1)


class NativeResolutionHead(nn.Module):
    """Ours: upsample the 1/4 mask and edge logits to the frame and refine them with the frame's own detail."""

    def __init__(self, in_chans: int, num_masks: int, width: int = 16):
        super().__init__()
        self.image = nn.Sequential(nn.Conv2d(in_chans, width, 3, padding=1), nn.GELU(),
                                   nn.Conv2d(width, width, 3, padding=1), nn.GELU())
        self.refine = nn.Sequential(nn.Conv2d(width + num_masks + 1, width, 3, padding=1), nn.GELU(),
                                    nn.Conv2d(width, 1, 3, padding=1))
        nn.init.zeros_(self.refine[-1].weight)
        nn.init.zeros_(self.refine[-1].bias)

    def forward(self, image: torch.Tensor, mask: torch.Tensor, edge: torch.Tensor):
        size = image.shape[-2:]
        mask = F.interpolate(mask, size=size, mode="bilinear", align_corners=False)
        edge = F.interpolate(edge, size=size, mode="bilinear", align_corners=False)
        return mask[:, :1] + self.refine(torch.cat([self.image(image), mask, edge], 1)), edge


class IRSAM(nn.Module):
    """IRSAM. ``forward`` returns mask logits (B, 1, H, W) (and the edge logits with ``return_edge``);
    H and W multiples of :attr:`stride`."""

    def __init__(self, in_chans: int = 1, embed_dims: Sequence[int] = (64, 128, 160, 320),
                 depths: Sequence[int] = (2, 2, 6, 2), heads: Sequence[int] = (2, 4, 5, 10),
                 windows: Sequence[int] = (7, 7, 14, 7), neck_dim: int = 256, decoder_depth: int = 2,
                 decoder_heads: int = 8, decoder_mlp_dim: int = 2048, upscale_dim: int = 32,
                 wpmd_stages: Sequence[int] = (0, 1, 2, 3), wpmd_steps: int = 1, wpmd_gain_init: float = 0.0,
                 native_head: bool = True, head_width: int = 16):
        super().__init__()
        merge_strides = (2, 2, 1)
        self.encoder = TinyViT(in_chans, embed_dims, depths, heads, windows, merge_strides, neck_dim)
        self.stride = self.encoder.stride
        outs = list(embed_dims[1:]) + [embed_dims[-1]]
        strides = list(merge_strides) + [1]
        self.wpmd = nn.ModuleDict({str(i): WPMD(embed_dims[i], outs[i], strides[i], wpmd_steps, wpmd_gain_init)
                                   for i in range(len(embed_dims)) if i in wpmd_stages})
        self.decoder = GranularityAwareDecoder(neck_dim, embed_dims[0], embed_dims[-1], upscale_dim,
                                               decoder_depth, decoder_heads, decoder_mlp_dim)
        self.head = NativeResolutionHead(in_chans, 4, head_width) if native_head else None

    def forward(self, x: torch.Tensor, return_edge: bool = False):
        embedding, inner, outer = self.encoder.forward_stages(x, self.wpmd)
        mask, edge = self.decoder(embedding, inner[0], outer[-1])
        if self.head is not None:
            mask, edge = self.head(x, mask, edge)
        else:
            mask = F.interpolate(mask[:, :1], size=x.shape[-2:], mode="bilinear", align_corners=False)
            edge = F.interpolate(edge, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return (mask, edge) if return_edge else mask


# ---- MobileSAM checkpoints as initialisation --------------------------------------------------------------------------
# MobileSAM's key prefix -> ours; None: MobileSAM parts IRSAM has no use for (prompts, IoU head).
_MOBILESAM_PREFIXES: Tuple[Tuple[str, str | None], ...] = (
    ("image_encoder.head.", None),
    ("image_encoder.norm_head.", None),
    ("image_encoder.", "encoder."),
    ("prompt_encoder.pe_layer.", "decoder.pe_layer."),
    ("prompt_encoder.no_mask_embed.", "decoder.no_mask_embed."),
    ("prompt_encoder.", None),
    ("mask_decoder.iou_token.", None),
    ("mask_decoder.iou_prediction_head.", None),
    ("mask_decoder.output_hypernetworks_mlps.", "decoder.mask_mlps."),
    ("mask_decoder.", "decoder."),
)
_STEM = "encoder.patch_embed.seq.0.c.weight"


@dataclass
class InitReport:
    """What :func:`load_mobilesam` did, as the one-line-each report training prints."""

    loaded: List[str] = field(default_factory=list)     # our keys that took MobileSAM weights
    adapted: List[str] = field(default_factory=list)    # ... after a change (RGB stem summed to one channel)
    new: List[str] = field(default_factory=list)        # our keys MobileSAM has nothing for (WPMD, edge token, ...)
    ignored: List[str] = field(default_factory=list)    # MobileSAM keys with no place here, or of another shape

    @staticmethod
    def _groups(keys: Sequence[str], depth: int = 2) -> str:
        counts: Dict[str, int] = {}
        for k in keys:
            g = ".".join(k.split(".")[:depth])
            counts[g] = counts.get(g, 0) + 1
        return ", ".join(f"{g} ({n})" for g, n in counts.items()) or "nothing"

    def lines(self) -> List[str]:
        return [f"loaded {len(self.loaded)} tensors from MobileSAM: {self._groups(self.loaded)}"
                + (f"; adapted: {', '.join(self.adapted)}" if self.adapted else ""),
                f"new, no MobileSAM counterpart ({len(self.new)} tensors): {self._groups(self.new)}",
                f"ignored MobileSAM tensors ({len(self.ignored)}): {self._groups(self.ignored)}"]


def is_mobilesam_state(state: Dict[str, torch.Tensor]) -> bool:
    return any(k.startswith(("image_encoder.", "mask_decoder.")) for k in state)


def load_mobilesam(model: IRSAM, state: Dict[str, torch.Tensor]) -> InitReport:
    """Copy a MobileSAM state dict (``image_encoder.*``, ``prompt_encoder.*``, ``mask_decoder.*``) into ``model``
    wherever name and shape match; everything else is reported, nothing raises on a mismatch."""
    own = model.state_dict()
    report, take = InitReport(), {}
    for key, value in state.items():
        target = None
        for prefix, ours in _MOBILESAM_PREFIXES:
            if key.startswith(prefix):
                target = None if ours is None else ours + key[len(prefix):]
                break
        if target is None or target not in own:
            report.ignored.append(key)
            continue
        if target == _STEM and value.dim() == 4 and value.shape[1] != own[target].shape[1] == 1:
            value = value.sum(1, keepdim=True)  # grey input: the sum of the RGB filters sees a grey image the same
            report.adapted.append(f"{target} (RGB summed to 1 channel)")
        if tuple(value.shape) != tuple(own[target].shape):
            report.ignored.append(f"{key} (shape {tuple(value.shape)}, ours {tuple(own[target].shape)})")
            continue
        take[target] = value.to(own[target].dtype)
        report.loaded.append(target)
    report.new = [k for k in own if k not in take]
    model.load_state_dict(take, strict=False)
    return report


@register_model(ModelCfg(
    stride=16, weights="irsam_sirst-v1.pt", loss="irsam", paper_params=(12.33e6, 0.10),
    tiny_args={"embed_dims": (8, 16, 16, 16), "depths": (1, 1, 1, 1), "heads": (1, 2, 2, 2), "windows": (7, 7, 7, 7),
               "neck_dim": 32, "decoder_depth": 1, "decoder_heads": 2, "decoder_mlp_dim": 32, "upscale_dim": 8,
               "head_width": 4},
    init_adapter=(is_mobilesam_state, load_mobilesam),
    description="IRSAM (Zhang et al., ECCV 2024): TinyViT + wavelet Perona-Malik diffusion, granularity-aware decoder"))
def irsam(**cfg) -> IRSAM:
    """IRSAM at the paper's configuration (TinyViT-5M, 4 WPMD blocks, GAD) with our native-resolution head."""
    return IRSAM(**cfg)
