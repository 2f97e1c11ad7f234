"""torch.ops.irstd.selective_scan: fused C++ and blocked torch scans against the Python-loop reference."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from irstd_ros.ops import ScanShapeError, selective_scan, selective_scan_blocked, selective_scan_reference
from irstd_ros.ops import cpu_extension
from irstd_ros.ops.selective_scan import _grads_blocked, _grads_cpp

from ops_cases import SCAN_SHAPES, scan_inputs

needs_cpp = pytest.mark.skipif(cpu_extension.load() is None,
                               reason="the C++ CPU kernels could not be built here (no compiler)")


@pytest.mark.parametrize("shape", SCAN_SHAPES)
@pytest.mark.parametrize("options", ["all", "bare"])
def test_fast_paths_match_reference_float32(shape, options):
    args = scan_inputs(*shape, options=options)
    ref = selective_scan_reference(**args)
    for fn in (selective_scan, selective_scan_blocked):
        out = fn(**args)
        assert out.shape == ref.shape and out.dtype == torch.float32
        torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


@needs_cpp
def test_op_on_cpu_runs_the_cpp_kernel_exactly_in_float64():
    args = scan_inputs(2, 6, 4, 37, 2, 4, dtype=torch.float64)
    ext = cpu_extension.load()
    from irstd_ros.ops.selective_scan import _kernel_args
    direct = ext.forward(*_kernel_args(args["u"], args["delta"], args["A"], args["B"], args["C"], args["D"],
                                       args["z"], args["delta_bias"], args["neighbor"]), True)
    torch.testing.assert_close(selective_scan(**args), direct, rtol=0, atol=0)
    torch.testing.assert_close(direct, selective_scan_reference(**args), rtol=1e-12, atol=1e-12)


def test_cpp_kernel_is_deterministic_bit_for_bit():
    """Identical inputs in freshly allocated buffers give identical bits, forward and backward: training
    resumes bit-exactly only then. (Built with -fassociative-math, the vectorised sums associated with the
    buffers' alignment and 5 of 30 calls differed in the last bit.)"""
    args = scan_inputs(2, 64, 8, 301, 4, 3)
    grad = torch.randn(2, 64, 301, generator=torch.Generator().manual_seed(1))

    def run():
        leaves = {k: v.clone().requires_grad_(v.is_floating_point()) if isinstance(v, torch.Tensor) else v
                  for k, v in args.items()}
        y = selective_scan(**leaves)
        y.backward(grad)
        return [y.detach()] + [v.grad for v in leaves.values() if isinstance(v, torch.Tensor)]

    first = run()
    for i in range(30):
        shift = torch.empty(3 * i + 1)  # noqa: F841  (moves the next allocations)
        assert all(torch.equal(a, b) for a, b in zip(first, run())), f"call {i} differs"


def test_neighbor_term_enters_the_state_not_the_output():
    """A per-channel neighbour term equals a per-state one broadcast over N, and is decayed like the state."""
    args = scan_inputs(1, 3, 4, 20, neighbor=3, options="bare")
    y3 = selective_scan(**args)
    y4 = selective_scan(**{**args, "neighbor": args["neighbor"][:, :, None, :].expand(1, 3, 4, 20).contiguous()})
    torch.testing.assert_close(y3, y4, rtol=1e-5, atol=1e-5)
    # a single impulse at t=5 shows up in y from t=5 on, decaying with exp(dt*A)
    args = scan_inputs(1, 1, 1, 10, options="bare")
    args.update(u=torch.zeros(1, 1, 10), delta=torch.full((1, 1, 10), 0.5), A=torch.tensor([[-1.0]]),
                C=torch.ones(1, 1, 10))
    nb = torch.zeros(1, 1, 10)
    nb[..., 5] = 1.0
    y = selective_scan(**args, neighbor=nb)[0, 0]
    expected = torch.tensor([0.0] * 5 + [torch.exp(torch.tensor(-0.5 * k)).item() for k in range(5)])
    torch.testing.assert_close(y, expected)


def test_reduced_precision_inputs_compute_in_float32():
    args = scan_inputs(1, 4, 8, 50)
    ref = selective_scan_reference(**args)
    half = {k: (v.bfloat16() if isinstance(v, torch.Tensor) else v) for k, v in args.items()}
    out = selective_scan(**half)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref, rtol=0.05, atol=0.05)


@pytest.mark.parametrize("shape", [(2, 4, 3, 9, None, None), (1, 4, 2, 7, 2, 3), (2, 2, 3, 5, None, 4)])
def test_gradcheck_float64(shape):
    args = scan_inputs(*shape, dtype=torch.float64, seed=3)
    names = [k for k, v in args.items() if isinstance(v, torch.Tensor)]
    tensors = [args[k].clone().requires_grad_(True) for k in names]

    def fn(*ts):
        return selective_scan(**{**args, **dict(zip(names, ts))})

    assert torch.autograd.gradcheck(fn, tensors, eps=1e-6, atol=1e-6)


@needs_cpp
def test_cpp_backward_matches_autograd_of_the_decomposition():
    args = scan_inputs(2, 6, 4, 37, 2, 4, dtype=torch.float64, seed=5)
    order = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")
    grad = torch.randn(2, 6, 37, dtype=torch.float64)
    ins = [args[k] for k in order]
    a = _grads_cpp(cpu_extension.load(), *ins, True, args["neighbor"], grad)
    b = _grads_blocked(*ins, True, args["neighbor"], grad)
    for name, ga, gb in zip(order + ("neighbor",), a, b):
        torch.testing.assert_close(ga, gb, rtol=1e-9, atol=1e-9, msg=name)


def test_bad_shapes_are_one_line_errors():
    args = scan_inputs(2, 6, 4, 10)
    for key, bad in [("u", torch.zeros(2, 6)), ("delta", torch.zeros(2, 6, 9)), ("A", torch.zeros(5, 4)),
                     ("B", torch.zeros(2, 4, 9)), ("C", torch.zeros(2, 4, 4, 10)), ("D", torch.zeros(7)),
                     ("neighbor", torch.zeros(2, 6, 3, 10))]:
        with pytest.raises(ScanShapeError) as err:
            selective_scan(**{**args, key: bad})
        assert "\n" not in str(err.value)


def test_nan_input_propagates_instead_of_crashing():
    args = scan_inputs(1, 2, 3, 8, options="bare")
    args["u"][0, 0, 4] = float("nan")
    y = selective_scan(**args)
    assert torch.isnan(y[0, 0, 4:]).all() and torch.isfinite(y[0, 0, :4]).all() and torch.isfinite(y[0, 1]).all()


def test_without_cpp_kernels_the_op_falls_back_to_torch_and_still_matches():
    """Where no compiler exists (IRSTD_OPS_NO_CPP=1 stands in for it) the op runs the blocked scan, with gradients."""
    script = textwrap.dedent("""
        import torch
        from irstd_ros.ops import cpu_extension, selective_scan, selective_scan_reference
        from ops_cases import scan_inputs
        assert cpu_extension.load() is None
        args = scan_inputs(2, 6, 4, 37, 2, 4, dtype=torch.float64)
        torch.testing.assert_close(selective_scan(**args), selective_scan_reference(**args))
        small = scan_inputs(1, 2, 3, 6, None, 3, dtype=torch.float64)
        names = [k for k, v in small.items() if isinstance(v, torch.Tensor)]
        ts = [small[k].clone().requires_grad_(True) for k in names]
        assert torch.autograd.gradcheck(lambda *t: selective_scan(**{**small, **dict(zip(names, t))}), ts)
        print("fallback ok")
    """)
    env = {**os.environ, "IRSTD_OPS_NO_CPP": "1", "PYTHONPATH": str(Path(__file__).parent)}
    r = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "fallback ok" in r.stdout, r.stderr
