"""``precision: auto`` picks what measured fastest where the frame runs; each precision runs as named."""
from __future__ import annotations

import pytest
import torch

from irstd_ros.runtime.precision import autocast, resolve_precision


def test_auto_on_a_gpu_is_fp32_for_torch():
    # one frame at a time, casts cost more than reduced precision saves (H100, bench/gpu_check.py)
    assert resolve_precision("auto", "cuda:0") == "fp32"


def test_explicit_choices_are_kept_and_unknown_ones_refused():
    assert resolve_precision("fp32", "cuda") == "fp32"
    assert resolve_precision("bf16", "cpu") == "bf16"
    with pytest.raises(ValueError, match="unknown precision"):
        resolve_precision("fp8", "cpu")
    with pytest.raises(ValueError, match="torch on cpu runs fp32, bf16, not precision='fp16'"):
        resolve_precision("fp16", "cpu")


@pytest.mark.parametrize("backend, device, want", [("onnxruntime", "cpu", "fp32"), ("tensorrt", "cuda", "fp16")])
def test_auto_follows_the_backend(backend, device, want):
    assert resolve_precision("auto", device, backend=backend) == want


@pytest.mark.filterwarnings("ignore:CUDA is not available")   # a CPU-only torch disables it, dtype kept
@pytest.mark.parametrize("precision, dtype", [("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_the_forward_context_runs_the_precision_it_names(precision, dtype):
    # fp16 on a GPU once ran fp32 (the context knew only bf16): seen on an H100 by bench/gpu_check.py as fp16
    # latencies and probabilities identical to fp32's
    ctx = autocast(precision, "cuda:0")
    assert (ctx.device, ctx.fast_dtype) == ("cuda", dtype)
    with autocast(precision, "cpu") if precision == "bf16" else torch.autocast("cpu", enabled=False):
        y = torch.nn.functional.linear(torch.ones(2, 4), torch.ones(3, 4))
    assert y.dtype == (torch.bfloat16 if precision == "bf16" else torch.float32)


def test_fp32_on_a_gpu_is_ieee_fp32_while_the_forward_runs():
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    with autocast("fp32", "cuda"):
        assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == (False, False)
    assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == before
    with autocast("fp32", "cpu"):
        assert not torch.is_autocast_enabled("cpu")
