"""The compiling backends through :class:`Detector`: parity with eager torch on real frames, the engine cache
(hits, corrupt and foreign entries), refused pairs, ``irstd-build``, and what a CPU can check of TensorRT."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from irstd_ros.runtime.backends import BACKEND_PRECISIONS, BACKENDS, pair_problem, unavailable
from irstd_ros.runtime.backends.cache import EngineCache
from irstd_ros.eval.datasets import read_image
from irstd_ros.runtime.detector import Detector, DetectorConfig
from irstd_ros.eval.metrics import components
from irstd_ros.models import model_cfg
from irstd_ros.runtime.pipeline import preprocess

from conftest import architectures, tiny_checkpoint, visible_noise  # noqa: I100

SAMPLE = Path(__file__).resolve().parents[1] / "irstd_ros" / "sample" / "sirst-v1" / "images"
CPU_ENGINES = [b for b in ("openvino", "onnxruntime") if unavailable(b) is None]


def _mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def _frame(name="Misc_58", crop=(slice(0, 100), slice(0, 130))) -> np.ndarray:
    """A real thermal frame, cropped (odd size: the pipeline pads it) to keep the compiles short."""
    return read_image(SAMPLE / f"{name}.png")[crop]


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    """An untrained test-sized checkpoint of every registered model, the same every run (seeded: unseeded, the
    IRSTD-Diff parity case failed once in four runs on 2026-11-26, so a failure here was not reproducible)."""
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("weights")
    prepare = {"irstd_diff": visible_noise}
    return {name: tiny_checkpoint(d / f"{name}.pt", name, prepare.get(name)) for name in architectures()}


# every model under OpenVINO (the bar); ONNX Runtime runs the same ONNX graphs (test_export_models checks
# each model's graphs in both engines), so through the Detector it is checked on LRRNet only, to save time
PARITY = [(name, "openvino") for name in architectures()] + [("lrrnet", "onnxruntime")]


@pytest.mark.parametrize("name, backend", [p for p in PARITY if p[1] in CPU_ENGINES])
def test_models_match_eager_torch_through_the_compiled_engines(name, backend, tiny_weights, tmp_path):
    """fp32 probabilities within 1e-3 of eager torch and masks at IoU >= 0.99, through the whole Detector
    (IRSTD-Diff: its sampling loop around the compiled condition and denoising step)."""
    if backend not in model_cfg(name).backends:
        pytest.skip(f"{name} does not run under {backend}")
    image = _frame()
    ref = Detector(DetectorConfig(model=name, weights=str(tiny_weights[name]), precision="fp32")).probabilities(image)
    det = Detector(DetectorConfig(model=name, weights=str(tiny_weights[name]), backend=backend, precision="fp32",
                                  cache_dir=str(tmp_path)))
    got = det.probabilities(image)
    assert got.shape == image.shape
    assert np.abs(got - ref).max() < 1e-3, f"{name}/{backend}: {np.abs(got - ref).max():.2e}"
    t = float(np.median(ref))  # an untrained net's probabilities sit near its prior: split them at the median
    assert _mask_iou(got > t, ref > t) >= 0.99
    assert [lk.status for _, _, lk in det.compiled.lookups] == ["built"] * len(det.compiled.lookups)


@pytest.mark.parametrize("backend", CPU_ENGINES)
def test_shipped_lrrnet_matches_torch_on_real_frames(backend, tmp_path):
    """The shipped weights on three real frames, two of one size: fp32 within 1e-3, masks at IoU >= 0.99; the
    second frame of a size reuses its engine."""
    ref = Detector(DetectorConfig(precision="fp32"))
    det = Detector(DetectorConfig(backend=backend, precision="fp32", cache_dir=str(tmp_path)))
    frames = [read_image(SAMPLE / f"{n}.png")[:240, :320] for n in ("Misc_58", "Misc_70")]
    frames.append(read_image(SAMPLE / "Misc_96.png"))
    for k, image in enumerate(frames):
        want, got = ref.probabilities(image), det.probabilities(image)
        assert np.abs(got - want).max() < 1e-3, k
        assert _mask_iou(got > 0.5, want > 0.5) >= 0.99, k
    assert [s[-2:] for s, _, _ in det.compiled.lookups] == [(240, 320), (224, 304)], "one engine per frame size"


@pytest.mark.skipif("openvino" not in CPU_ENGINES, reason="openvino is not installed")
def test_openvino_bf16_finds_what_torch_fp32_finds():
    """bf16 keeps 8 mantissa bits, so a boundary pixel of a small target may flip: over the ten sample frames (paper
    protocol, 256x256: one engine) the same targets are found and the masks agree at pixel IoU >= 0.98."""
    ref = Detector(DetectorConfig(precision="fp32", input_size=256))
    det = Detector(DetectorConfig(backend="openvino", precision="bf16", input_size=256))
    assert det.precision == "bf16"
    inter = union = 0
    for path in sorted(SAMPLE.glob("*.png")):
        image = read_image(path)
        want, got = ref.probabilities(image) > 0.5, det.probabilities(image) > 0.5
        assert len(components(got)[2]) == len(components(want)[2]), path.name
        inter += np.logical_and(got, want).sum()
        union += np.logical_or(got, want).sum()
    assert inter / union >= 0.98


def _detector(weights, cache, backend="onnxruntime"):
    return Detector(DetectorConfig(model="lrrnet", weights=str(weights), backend=backend, precision="fp32",
                                   cache_dir=str(cache)))


@pytest.fixture(scope="module")
def two_lrrnets(tmp_path_factory):
    """Two different untrained LRRNet checkpoints (same architecture, other weights)."""
    d = tmp_path_factory.mktemp("two")
    torch.manual_seed(1)
    a = tiny_checkpoint(d / "a.pt", "lrrnet")
    torch.manual_seed(2)
    b = tiny_checkpoint(d / "b.pt", "lrrnet")
    return a, b


@pytest.fixture(scope="module")
def built_a(two_lrrnets, tmp_path_factory):
    """``(cache, probabilities)``: a cache holding weights A's ONNX Runtime engine for :func:`_frame`, built once
    (an export costs ~10 s); each test works on its own copy (:func:`_copy_of`)."""
    a, _ = two_lrrnets
    cache = tmp_path_factory.mktemp("built_a")
    first = _detector(a, cache)
    want = first.probabilities(_frame())
    (_, _, built), = first.compiled.lookups
    assert built.status == "built"
    return cache, want


def _copy_of(built, tmp_path) -> None:
    shutil.copytree(built[0], tmp_path, dirs_exist_ok=True)


@pytest.mark.skipif("onnxruntime" not in CPU_ENGINES, reason="onnxruntime is not installed")
def test_second_load_hits_the_cache_and_a_corrupt_entry_is_rebuilt(two_lrrnets, built_a, tmp_path):
    a, _ = two_lrrnets
    image = _frame()
    _copy_of(built_a, tmp_path)
    (built,) = EngineCache(tmp_path).entries()
    want = built_a[1]

    again = _detector(a, tmp_path)
    np.testing.assert_array_equal(again.probabilities(image), want)
    (_, _, hit), = again.compiled.lookups
    assert hit.status == "hit" and hit.path == built

    onnx = built / "model.onnx"
    onnx.write_bytes(onnx.read_bytes()[: onnx.stat().st_size // 2])       # a truncated write
    lines = []
    third = Detector(DetectorConfig(model="lrrnet", weights=str(a), backend="onnxruntime", precision="fp32",
                                    cache_dir=str(tmp_path)), report=lambda line, warn: lines.append((line, warn)))
    np.testing.assert_array_equal(third.probabilities(image), want)
    (_, _, rebuilt), = third.compiled.lookups
    assert rebuilt.status == "rebuilt" and "model.onnx" in rebuilt.reason
    assert len(lines) == 1 and lines[0][1] and "rebuilt" in lines[0][0], lines  # one warning line says why
    assert EngineCache(tmp_path).check() == [(built, None)]


@pytest.mark.skipif("onnxruntime" not in CPU_ENGINES, reason="onnxruntime is not installed")
def test_an_entry_from_other_weights_is_detected_and_never_served(two_lrrnets, built_a, tmp_path):
    """Copy weights A's engine to where weights B's belongs (a cache copied between vehicles, a renamed
    directory): B's detector sees the key mismatch, rebuilds, and answers with B's numbers."""
    a, b = two_lrrnets
    image = _frame()
    _copy_of(built_a, tmp_path)
    (entry_a,) = EngineCache(tmp_path).entries()
    probs_a = built_a[1]
    det_b = _detector(b, tmp_path)
    x, _ = preprocess(image, det_b.stride)
    key_b = det_b.compiled.key("model", (x,))
    assert key_b.digest != entry_a.name, "other weights must be another key"
    shutil.copytree(entry_a, EngineCache(tmp_path).entry(key_b))
    probs_b = det_b.probabilities(image)
    (_, _, lk), = det_b.compiled.lookups
    assert lk.status == "rebuilt" and "weights_sha256" in lk.reason, lk
    want_b = Detector(DetectorConfig(model="lrrnet", weights=str(b), precision="fp32")).probabilities(image)
    assert np.abs(probs_b - want_b).max() < 1e-3 and np.abs(probs_b - probs_a).max() > 1e-3
    assert [p for _, p in EngineCache(tmp_path).check()] == [None, None]


def test_pairs_that_cannot_run_are_refused_with_the_reason():
    assert pair_problem("onnxruntime", "cpu", "bf16") == "backend onnxruntime on cpu runs fp32, int8, not precision='bf16'"
    assert "runs on cuda" in pair_problem("tensorrt", "cpu", "auto")
    assert "unknown backend" in pair_problem("tflite")
    assert "does not run under openvino" in pair_problem("openvino", model="x", model_backends=("torch",))
    for backend in BACKENDS:
        for kind, precisions in BACKEND_PRECISIONS[backend].items():
            for p in precisions:
                assert pair_problem(backend, kind, p) is None
    with pytest.raises(ValueError, match="runs fp32, int8, not precision='bf16'"):
        Detector(DetectorConfig(backend="onnxruntime", precision="bf16"))
    with pytest.raises(ValueError, match="tensorrt runs on cuda"):
        Detector(DetectorConfig(backend="tensorrt"))


def test_tensorrt_says_why_it_cannot_run_without_a_gpu():
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is visible: the reason is not needed here")
    assert "CUDA" in unavailable("tensorrt", "cuda")
    assert "device=cuda" in unavailable("tensorrt", "cpu")


def test_tensorrt_engine_builds_and_matches_eager_on_a_gpu(tmp_path):
    why = unavailable("tensorrt", "cuda")
    if why:
        pytest.skip(f"TensorRT cannot run here: {why}")
    image = _frame()
    ref = Detector(DetectorConfig(precision="fp32", device="cuda")).probabilities(image)
    det = Detector(DetectorConfig(backend="tensorrt", precision="fp32", device="cuda", cache_dir=str(tmp_path)))
    assert np.abs(det.probabilities(image) - ref).max() < 1e-3


def _build_cli(*args):
    return subprocess.run([sys.executable, "-m", "irstd_ros.cli.build", *args], capture_output=True, text=True,
                          timeout=600)


@pytest.mark.skipif("onnxruntime" not in CPU_ENGINES, reason="onnxruntime is not installed")
def test_irstd_build_prebuilds_and_check_finds_a_modified_entry(two_lrrnets, tmp_path):
    a, _ = two_lrrnets
    out = tmp_path / "built.json"
    r = _build_cli("--model", "lrrnet", "--weights", str(a), "--backend", "onnxruntime", "--size", "130x100",
                   "--cache-dir", str(tmp_path / "c"), "--json", str(out))
    assert r.returncode == 0, r.stderr
    (entry,) = json.loads(out.read_text())
    assert entry["status"] == "built" and entry["padded"] == "144x112" and entry["precision"] == "fp32"  # stride 16
    det = _detector(a, tmp_path / "c")          # a start-up through the same cache: the warm-up loads the
    det.warmup()                                # pre-built size and compiles nothing (not even 256x256)
    det.probabilities(_frame())
    assert [(s[-2:], lk.status) for s, _, lk in det.compiled.lookups] == [((112, 144), "hit")]
    assert _build_cli("--check", "--cache-dir", str(tmp_path / "c")).returncode == 0
    (Path(entry["entry"]) / "model.onnx").write_bytes(b"not an onnx file")
    r = _build_cli("--check", "--cache-dir", str(tmp_path / "c"))
    assert r.returncode == 1 and "does not match its recorded hash" in r.stdout, r.stdout
    r = _build_cli("--size", "64", "--cache-dir", str(tmp_path / "c"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "WIDTHxHEIGHT" in r.stderr
