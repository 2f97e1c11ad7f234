"""The Triton kernels, run on CPU tensors by Triton's interpreter (TRITON_INTERPRET=1, set in conftest)."""
from __future__ import annotations

import os

import pytest
import torch

from irstd_ros.ops import haar_dwt2d, haar_idwt2d, selective_scan, selective_scan_reference
from irstd_ros.ops import triton_kernels
from irstd_ros.ops.selective_scan import TENSOR_INPUTS

from ops_cases import SCAN_SHAPES, scan_inputs

pytestmark = pytest.mark.skipif(not triton_kernels.AVAILABLE, reason="triton is not installed")
interpreted = pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1",
                                 reason="CPU tensors need TRITON_INTERPRET=1 before triton is imported")
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine)")


@interpreted
@pytest.mark.parametrize("shape", SCAN_SHAPES)
@pytest.mark.parametrize("block_l", [16, 64])
def test_scan_kernel_matches_reference(shape, block_l):
    args = scan_inputs(*shape)
    out = triton_kernels.selective_scan_triton(**args, block_l=block_l)
    torch.testing.assert_close(out, selective_scan_reference(**args), rtol=1e-4, atol=1e-4)


@interpreted
def test_scan_kernel_without_options():
    args = scan_inputs(2, 3, 5, 33, options="bare")
    torch.testing.assert_close(triton_kernels.selective_scan_triton(**args), selective_scan_reference(**args),
                               rtol=1e-4, atol=1e-4)


def reference_grads(args, grad):
    """Autograd through the per-step reference loop, in float64."""
    ins = {k: (v.double().requires_grad_(True) if isinstance(v, torch.Tensor) else v) for k, v in args.items()}
    out = selective_scan_reference(**ins)
    keys = [k for k in TENSOR_INPUTS if k in ins]
    return dict(zip(keys, torch.autograd.grad(out, [ins[k] for k in keys], grad.double())))


# the interpreter takes 5-15 s a case: several tiles (block 16), grouped B/C with a per-channel neighbour term, a
# per-state neighbour term, and no options at all
@interpreted
@pytest.mark.parametrize("shape, options", [((2, 6, 4, 37, 2, 3), "all"), ((2, 3, 3, 20, None, 4), "all"),
                                            ((1, 2, 5, 33, None, None), "bare")])
def test_scan_backward_kernel_matches_autograd_through_the_reference(shape, options):
    args = scan_inputs(*shape, options=options)
    grad = torch.randn(args["u"].shape, generator=torch.Generator().manual_seed(1))
    got = dict(zip(TENSOR_INPUTS, triton_kernels.selective_scan_backward_triton(**args, grad=grad, block_l=16)))
    for name, ref in reference_grads(args, grad).items():
        assert got[name].shape == ref.shape and got[name].dtype == args[name].dtype, name
        torch.testing.assert_close(got[name].double(), ref, rtol=1e-4, atol=1e-4 * float(ref.abs().max()),
                                   msg=lambda m: f"{name}: {m}")
    assert all(got[name] is None for name in TENSOR_INPUTS if name not in args)


@interpreted
@pytest.mark.parametrize("size", [(8, 8), (5, 7), (1, 1), (17, 2)])
def test_haar_kernels_match_the_op(size):
    x = torch.randn(2, 3, *size)
    y = triton_kernels.haar_dwt2d_triton(x)
    torch.testing.assert_close(y, haar_dwt2d(x), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(triton_kernels.haar_idwt2d_triton(y), haar_idwt2d(y), rtol=1e-6, atol=1e-6)


@cuda
def test_ops_dispatch_to_triton_on_cuda():
    args = {k: (v.cuda() if isinstance(v, torch.Tensor) else v) for k, v in scan_inputs(2, 8, 16, 300, 2, 4).items()}
    ref = selective_scan_reference(**{k: (v.cpu() if isinstance(v, torch.Tensor) else v) for k, v in args.items()})
    torch.testing.assert_close(selective_scan(**args).cpu(), ref, rtol=1e-3, atol=1e-3)
    # the backward through the op on CUDA is the Triton kernel
    grad = torch.randn(args["u"].shape, device="cuda")
    ins = {k: (v.detach().requires_grad_(True) if isinstance(v, torch.Tensor) else v) for k, v in args.items()}
    selective_scan(**ins).backward(grad)
    for name, ref in reference_grads({k: (v.cpu() if isinstance(v, torch.Tensor) else v) for k, v in args.items()},
                                     grad.cpu()).items():
        torch.testing.assert_close(ins[name].grad.cpu().double(), ref, rtol=1e-3, atol=1e-3 * float(ref.abs().max()))
    x = torch.randn(2, 3, 31, 40, device="cuda")
    torch.testing.assert_close(haar_idwt2d(haar_dwt2d(x), (31, 40)), x, rtol=1e-5, atol=1e-5)
