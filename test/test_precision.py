"""``precision: auto`` picks bf16 only where the hardware computes it natively."""
from __future__ import annotations

import pytest

from irstd_ros.runtime.precision import resolve_precision


@pytest.mark.parametrize("capability, want", [((6, 1), "fp32"), ((7, 0), "fp32"), ((7, 5), "fp32"),
                                              ((8, 0), "bf16"), ((8, 6), "bf16"), ((9, 0), "bf16")])
def test_auto_on_cuda_follows_the_compute_capability(capability, want):
    # torch.cuda.is_bf16_supported() says yes on a T4 (7.5) too, where bf16 is emulated and slow
    assert resolve_precision("auto", "cuda:0", cuda_capability=capability) == want


def test_explicit_choices_are_kept_and_unknown_ones_refused():
    assert resolve_precision("fp32", "cuda", cuda_capability=(9, 0)) == "fp32"
    assert resolve_precision("bf16", "cpu") == "bf16"
    with pytest.raises(ValueError, match="unknown precision"):
        resolve_precision("fp8", "cpu")
    with pytest.raises(ValueError, match="torch on cpu runs fp32, bf16, not precision='fp16'"):
        resolve_precision("fp16", "cpu")


@pytest.mark.parametrize("backend, device, want", [("onnxruntime", "cpu", "fp32"), ("tensorrt", "cuda", "fp16")])
def test_auto_follows_the_backend(backend, device, want):
    assert resolve_precision("auto", device, cuda_capability=(9, 0), backend=backend) == want
