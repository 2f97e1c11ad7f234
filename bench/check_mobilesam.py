"""Check IRSAM's MobileSAM mapping against MobileSAM's own code (a script; needs a MobileSAM source checkout).

    .venv/bin/python bench/check_mobilesam.py /path/to/MobileSAM [--dump-keys test/data/mobilesam_vit_t_keys.json]

(a work tree: ``git clone``, or ``git archive HEAD mobile_sam | tar -x -C dir`` of a bare mirror)

Builds MobileSAM's ``build_sam_vit_t()`` from the checkout (timm and torchvision are stubbed: only their
DropPath/to_2tuple/trunc_normal_ are used, and no weights are needed), fills it with random weights, loads
them into IRSAM through ``load_mobilesam`` and compares, on the same inputs: the image encoder (a grey
1024x1024 frame, three channels for MobileSAM), the two-way transformer and the positional encoding.
``--dump-keys`` writes MobileSAM's state-dict names and shapes, the fixture ``test/test_irsam.py`` uses.
"""
from __future__ import annotations

import argparse
import json
import sys
import types
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from irstd_ros.models import create_model  # noqa: E402
from irstd_ros.models.irsam import load_mobilesam  # noqa: E402


def _stub_timm() -> None:
    class DropPath(nn.Identity):
        def __init__(self, drop_prob: float = 0.0):
            super().__init__()

    layers = types.ModuleType("timm.models.layers")
    layers.DropPath = DropPath
    layers.to_2tuple = lambda x: x if isinstance(x, tuple) else (x, x)
    layers.trunc_normal_ = lambda t, std=1.0, **k: nn.init.trunc_normal_(t, std=std)
    registry = types.ModuleType("timm.models.registry")
    registry.register_model = lambda fn: fn
    for name, mod in (("timm", types.ModuleType("timm")), ("timm.models", types.ModuleType("timm.models")),
                      ("timm.models.layers", layers), ("timm.models.registry", registry)):
        sys.modules.setdefault(name, mod)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("mobilesam", type=Path, help="a checkout of github.com/ChaoningZhang/MobileSAM")
    ap.add_argument("--dump-keys", type=Path)
    args = ap.parse_args()
    _stub_timm()
    # import mobile_sam.build_sam without its package __init__ (which pulls in torchvision)
    pkg = types.ModuleType("mobile_sam")
    pkg.__path__ = [str(args.mobilesam / "mobile_sam")]
    sys.modules["mobile_sam"] = pkg
    from mobile_sam.build_sam import build_sam_vit_t  # noqa: E402

    torch.manual_seed(0)
    ref = build_sam_vit_t().eval()
    state = {}
    for k, v in ref.state_dict().items():
        if not v.is_floating_point():
            state[k] = v
        elif k.endswith("running_var"):
            state[k] = v.abs() + 0.5 + 0.1 * torch.rand_like(v)
        else:
            state[k] = 0.05 * torch.randn_like(v)
    ref.load_state_dict(state)
    if args.dump_keys:
        commit = "unknown"
        head = args.mobilesam / ".git" / "HEAD"
        if head.is_file():
            commit = head.read_text().strip()
        args.dump_keys.write_text(json.dumps({"source": f"MobileSAM build_sam_vit_t() state_dict() ({commit}); names "
                                                        f"and shapes only, no weights",
                                              "shapes": {k: list(v.shape) for k, v in state.items()}}))
    net = create_model("irsam").eval()
    report = load_mobilesam(net, state)
    for line in report.lines():
        print(line)
    grey = torch.rand(1, 1, 1024, 1024)
    with torch.no_grad():
        a, b = ref.image_encoder(grey.expand(1, 3, -1, -1)), net.encoder(grey)
        print(f"image encoder, 1024x1024: max |MobileSAM - ours| = {(a - b).abs().max():.2e} "
              f"(outputs up to {a.abs().max():.2f})")
        src, pe, tok = torch.randn(1, 256, 64, 64), torch.randn(1, 256, 64, 64), torch.randn(1, 5, 256)
        (qa, ka), (qb, kb) = ref.mask_decoder.transformer(src, pe, tok), net.decoder.transformer(src, pe, tok)
        print(f"two-way transformer: max difference tokens {(qa - qb).abs().max():.2e}, image {(ka - kb).abs().max():.2e}")
        pa, pb = ref.prompt_encoder.pe_layer((64, 64)), net.decoder.pe_layer(64, 64)
        print(f"positional encoding: max difference {(pa - pb).abs().max():.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
