"""The ops through torch.export (round trip), torch.compile, ONNX Runtime, OpenVINO and the TensorRT hook."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

import irstd_ros.ops as ops
from irstd_ros.ops import deploy


class TinyWaveletMamba(torch.nn.Module):
    """A little of each op, the way IRSTD-Diff (DWT/IDWT) and IRMamba (scan) use them."""

    def __init__(self, dim=8, n=4):
        super().__init__()
        self.A_log = torch.nn.Parameter(torch.randn(dim, n) * 0.1)
        self.D = torch.nn.Parameter(torch.ones(dim))
        self.proj = torch.nn.Conv1d(dim, dim, 1)

    def forward(self, image, u, delta, B, C, neighbor):
        bands = ops.haar_dwt2d(image)
        image = ops.haar_idwt2d(bands * 1.5, image.shape[-2:])
        y = torch.ops.irstd.selective_scan(self.proj(u), delta, -torch.exp(self.A_log), B, C, self.D,
                                           None, None, True, neighbor)
        return image, y


def _inputs(length=100):
    g = torch.Generator().manual_seed(0)
    return (torch.randn(1, 3, 17, 20, generator=g), torch.randn(2, 8, length, generator=g),
            torch.randn(2, 8, length, generator=g), torch.randn(2, 4, length, generator=g),
            torch.randn(2, 4, length, generator=g), torch.randn(2, 8, length, generator=g))


@pytest.fixture(scope="module")
def model_and_ref():
    torch.manual_seed(0)
    m = TinyWaveletMamba().eval()
    with torch.no_grad():
        return m, m(*_inputs())


def _close(outs, refs, atol):
    for o, r in zip(outs, refs):
        np.testing.assert_allclose(np.asarray(o), r.detach().numpy(), atol=atol, rtol=1e-4)


def test_export_keeps_the_ops_and_round_trips(model_and_ref, tmp_path):
    m, ref = model_and_ref
    program = torch.export.export(m, _inputs())
    assert deploy.uses_irstd_ops(program)
    torch.export.save(program, tmp_path / "m.pt2")
    loaded = torch.export.load(tmp_path / "m.pt2")
    with torch.no_grad():
        _close([t.numpy() for t in loaded.module()(*_inputs())], ref, atol=1e-6)


def test_decomposition_removes_the_ops_and_keeps_the_numbers(model_and_ref):
    m, ref = model_and_ref
    program = deploy.decompose(torch.export.export(m, _inputs()))
    assert not deploy.uses_irstd_ops(program)
    with torch.no_grad():
        _close([t.numpy() for t in program.module()(*_inputs())], ref, atol=1e-4)


def test_compile_fullgraph_forward_and_backward(model_and_ref):
    m, ref = model_and_ref
    compiled = torch.compile(m, fullgraph=True, dynamic=False)
    image, y = compiled(*_inputs())
    _close([image.detach().numpy(), y.detach().numpy()], ref, atol=1e-5)
    y.sum().backward()
    assert m.A_log.grad is not None and torch.isfinite(m.A_log.grad).all()
    m.zero_grad()


@pytest.fixture(scope="module")
def onnx_file(model_and_ref, tmp_path_factory):
    pytest.importorskip("onnx")
    m, _ = model_and_ref
    return deploy.export_onnx(m, _inputs(), tmp_path_factory.mktemp("onnx") / "tiny.onnx")


def test_onnxruntime_runs_the_decomposed_graph(onnx_file, model_and_ref):
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    feeds = {i.name: a.numpy() for i, a in zip(session.get_inputs(), _inputs())}
    _close(session.run(None, feeds), model_and_ref[1], atol=1e-4)


def test_openvino_runs_the_decomposed_graph(onnx_file, model_and_ref):
    ov = pytest.importorskip("openvino")
    compiled = ov.Core().compile_model(str(onnx_file), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    result = compiled([a.numpy() for a in _inputs()])
    _close([result[i] for i in range(2)], model_and_ref[1], atol=1e-4)


def test_tensorrt_registration_says_why_when_unavailable(caplog):
    try:
        import torch_tensorrt  # noqa: F401
        pytest.skip("torch_tensorrt is installed: see test_tensorrt_engine")
    except ImportError:
        pass
    with caplog.at_level(logging.WARNING, logger="irstd_ros.ops"):
        assert deploy.register_tensorrt_plugins() is False
    assert "Torch-TensorRT is not importable" in caplog.text


@pytest.mark.skipif(not torch.cuda.is_available(), reason="TensorRT engines need a CUDA GPU (none here)")
def test_tensorrt_engine(model_and_ref):
    torch_tensorrt = pytest.importorskip("torch_tensorrt", reason="Torch-TensorRT is not installed")
    assert deploy.register_tensorrt_plugins()
    m = model_and_ref[0].cuda()
    inputs = [t.cuda() for t in _inputs()]
    trt = torch_tensorrt.compile(m, ir="dynamo", inputs=inputs, min_block_size=1)
    with torch.no_grad():
        for a, b in zip(trt(*inputs), m(*inputs)):
            torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-3)
