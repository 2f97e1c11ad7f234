"""Every registered model through torch.export and the deployment runtimes, on a real frame.

The custom ops stay single nodes in the exported program (what TensorRT's plugin
path consumes); decomposed to standard ops, the ONNX graph runs in ONNX Runtime
and OpenVINO and matches eager: probabilities within 1e-3 (fp32) and binary masks
with IoU >= 0.99. Each model runs its tiny test variant, so this stays fast; the
shipped weights' parity is measured by ``bench/check_export_parity.py``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from irstd_ros.eval.datasets import read_image
from irstd_ros.models import create_model, list_models, model_cfg
from irstd_ros.ops import deploy
from irstd_ros.runtime.pipeline import preprocess

SAMPLE = Path(__file__).resolve().parents[1] / "irstd_ros" / "sample" / "sirst-v1" / "images" / "Misc_58.png"


def _frame(stride: int) -> torch.Tensor:
    image = read_image(SAMPLE)[:96, :120]      # a real thermal frame, cropped to keep the export small
    x, _ = preprocess(image, stride)
    return x


def _mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def _parts():
    return [(name, part) for name in list_models()
            for part in (sorted(_export_parts(name, create_model(name, **model_cfg(name).tiny_args), _frame(32)))
                         if model_cfg(name).export_parts else ["model"])]


def _export_parts(name, model, x) -> dict:
    fn = model_cfg(name).export_parts
    return fn(model, x) if fn else {"model": (model, (x,))}


@pytest.fixture(scope="module", params=_parts(), ids=lambda p: f"{p[0]}-{p[1]}")
def exported(request, tmp_path_factory):
    """(name, part, module, inputs, eager outputs, onnx path) for a model or one of its export parts."""
    pytest.importorskip("onnx")
    name, part = request.param
    torch.manual_seed(0)
    model = create_model(name, **model_cfg(name).tiny_args).eval()
    module, inputs = _export_parts(name, model, _frame(model_cfg(name).stride))[part]
    with torch.no_grad():
        out = module(*inputs)
    outs = [o.numpy() for o in (out if isinstance(out, tuple) else (out,))]
    path = deploy.export_onnx(module, inputs, tmp_path_factory.mktemp("export") / f"{name}-{part}.onnx")
    return name, part, module, inputs, outs, path


def _compare(label, ref, got, logits: bool):
    """Mask logits: probabilities within 1e-3 and masks at IoU >= 0.99; other outputs (features, ε): within
    1e-3 of their scale."""
    got = np.asarray(got).reshape(ref.shape)
    if logits:
        probs, got_p = 1 / (1 + np.exp(-ref)), 1 / (1 + np.exp(-got))
        assert np.abs(got_p - probs).max() < 1e-3, f"{label}: probabilities differ by {np.abs(got_p - probs).max():.2e}"
        # an untrained tiny net's probabilities cluster near its prior: threshold at their median so the
        # mask has pixels on both sides
        t = float(np.median(probs))
        assert _mask_iou(got_p > t, probs > t) >= 0.99
    else:
        scale = max(1.0, float(np.abs(ref).max()))
        assert np.abs(got - ref).max() < 1e-3 * scale, f"{label}: differs by {np.abs(got - ref).max():.2e}"


def _irstd_ops_called(module, inputs) -> dict:
    """How often eager inference calls each ``torch.ops.irstd`` op (seen at the dispatcher)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    calls: dict = {}

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.namespace == "irstd":
                calls[func._opname] = calls.get(func._opname, 0) + 1
            return func(*args, **(kwargs or {}))

    with torch.no_grad(), Record():
        module(*inputs)
    return calls


def test_export_keeps_custom_ops_as_single_nodes(exported):
    """Each custom op the eager model calls is one node per call in the exported program (the scan for
    IRMamba, the Haar pair for IRSAM's WPMD and IRSTD-Diff's LIW), and none is left after decomposition."""
    name, part, module, inputs, _, _ = exported
    program = torch.export.export(module, tuple(inputs))
    nodes: dict = {}
    for n in program.graph.nodes:
        if n.op == "call_function" and getattr(n.target, "namespace", None) == "irstd":
            nodes[n.target._opname] = nodes.get(n.target._opname, 0) + 1
    assert nodes == _irstd_ops_called(module, inputs)
    assert deploy.uses_irstd_ops(program) == bool(nodes)
    assert not deploy.uses_irstd_ops(deploy.decompose(program))


def _check_all(exported, run):
    name, part, _, inputs, outs, path = exported
    got = run(path, [i.numpy() for i in inputs])
    assert len(got) == len(outs)
    for k, (ref, g) in enumerate(zip(outs, got)):
        _compare(f"{name}/{part}[{k}]", ref, g, logits=(part in ("model", "condition") and k == 0))


def test_onnxruntime_matches_eager(exported):
    ort = pytest.importorskip("onnxruntime")

    def run(path, arrays):
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(None, {i.name: a for i, a in zip(session.get_inputs(), arrays)})
    _check_all(exported, run)


def test_openvino_matches_eager(exported):
    ov = pytest.importorskip("openvino")

    def run(path, arrays):
        compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        result = compiled(arrays)
        return [result[o] for o in compiled.outputs]
    _check_all(exported, run)
