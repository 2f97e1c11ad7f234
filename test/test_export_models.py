"""Every registered model through torch.export and the deployment runtimes, on a real frame.

The custom ops stay single nodes in the exported program (what TensorRT's plugin
path consumes); decomposed to standard ops, the ONNX graph runs in ONNX Runtime
and OpenVINO and matches eager: probabilities within 1e-3 (fp32) and binary masks
with IoU >= 0.99. Each model runs its tiny test variant, so this stays fast; the
shipped weights' parity is measured by ``irstd-eval --backend`` once it exists.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from irstd_ros.datasets import read_image
from irstd_ros.models import create_model, list_models, model_cfg
from irstd_ros.ops import deploy
from irstd_ros.pipeline import preprocess

SAMPLE = Path(__file__).resolve().parents[1] / "irstd_ros" / "sample" / "sirst-v1" / "images" / "Misc_58.png"


def _frame(stride: int) -> torch.Tensor:
    image = read_image(SAMPLE)[:96, :120]      # a real thermal frame, cropped to keep the export small
    x, _ = preprocess(image, stride)
    return x


def _mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


@pytest.fixture(scope="module", params=list_models())
def exported(request, tmp_path_factory):
    pytest.importorskip("onnx")
    name = request.param
    torch.manual_seed(0)
    model = create_model(name, **model_cfg(name).tiny_args).eval()
    x = _frame(model_cfg(name).stride)
    with torch.no_grad():
        probs = torch.sigmoid(model(x)).numpy()
    path = deploy.export_onnx(model, (x,), tmp_path_factory.mktemp("export") / f"{name}.onnx")
    return name, model, x, probs, path


def _compare(name, probs, got):
    got = np.asarray(got).reshape(probs.shape)
    assert np.abs(got - probs).max() < 1e-3, f"{name}: probabilities differ by {np.abs(got - probs).max():.2e}"
    # an untrained tiny net's probabilities cluster near its prior: threshold at their median so the
    # mask has pixels on both sides
    t = float(np.median(probs))
    assert _mask_iou(got > t, probs > t) >= 0.99


def _irstd_ops_called(model, x) -> dict:
    """How often eager inference calls each ``torch.ops.irstd`` op (seen at the dispatcher)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    calls: dict = {}

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.namespace == "irstd":
                calls[func._opname] = calls.get(func._opname, 0) + 1
            return func(*args, **(kwargs or {}))

    with torch.no_grad(), Record():
        model(x)
    return calls


def test_export_keeps_custom_ops_as_single_nodes(exported):
    """Each custom op the eager model calls is one node per call in the exported program (the scan for
    IRMamba, the Haar pair for IRSAM's WPMD), and none is left after decomposition."""
    name, model, x, _, _ = exported
    program = torch.export.export(model, (x,))
    nodes: dict = {}
    for n in program.graph.nodes:
        if n.op == "call_function" and getattr(n.target, "namespace", None) == "irstd":
            nodes[n.target._opname] = nodes.get(n.target._opname, 0) + 1
    assert nodes == _irstd_ops_called(model, x)
    assert deploy.uses_irstd_ops(program) == bool(nodes)
    assert not deploy.uses_irstd_ops(deploy.decompose(program))


def test_onnxruntime_matches_eager(exported):
    ort = pytest.importorskip("onnxruntime")
    name, _, x, probs, path = exported
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    _compare(name, probs, 1 / (1 + np.exp(-logits)))


def test_openvino_matches_eager(exported):
    ov = pytest.importorskip("openvino")
    name, _, x, probs, path = exported
    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    logits = compiled([x.numpy()])[0]
    _compare(name, probs, 1 / (1 + np.exp(-logits)))
