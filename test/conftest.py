"""Shared fixtures: the real datasets in ../shared, and small temporary datasets built from them."""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

# Triton kernels run on CPU tensors only under the interpreter, and triton reads this when a
# kernel is decorated: set it before anything imports irstd_ros.ops.triton_kernels.
os.environ.setdefault("TRITON_INTERPRET", "1")

# `make test` runs the suite in parallel processes (pytest-xdist): most tests wait on ROS graphs, child
# processes and compilers, so two workers finish in well under the time of one. Each worker gets its share of
# the cores for torch (set before anything imports torch; the nodes the tests start inherit it) and a ROS
# domain of its own, the workers of one run on neighbouring domains so none meets another's graph.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if "PYTEST_XDIST_WORKER" in os.environ:
    _index = int(os.environ["PYTEST_XDIST_WORKER"].removeprefix("gw"))
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // _WORKERS)))
    _run = int.from_bytes(os.environ.get("PYTEST_XDIST_TESTRUNUID", "0").encode()[-8:], "little")
    os.environ.setdefault("ROS_DOMAIN_ID", str(1 + (_run % max(1, 100 // _WORKERS)) * _WORKERS + _index))

# compiled engines of the test run go to a directory of its own, never the user's cache, removed at exit
if "IRSTD_CACHE_DIR" not in os.environ:
    import atexit
    import tempfile
    os.environ["IRSTD_CACHE_DIR"] = tempfile.mkdtemp(prefix="irstd-test-engines-")
    atexit.register(shutil.rmtree, os.environ["IRSTD_CACHE_DIR"], ignore_errors=True)

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `training/` is run from the repo, not installed
    sys.path.insert(0, str(REPO))

DATASETS = Path(os.environ.get("IRSTD_DATASETS", REPO.parent / "shared" / "datasets"))


def _require(path: Path) -> Path:
    if not path.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"CI must have the shared datasets at {path}")
        pytest.skip(f"shared datasets not found at {path}")
    return path


@pytest.fixture(scope="session")
def sirst_root() -> Path:
    return _require(DATASETS / "sirst-v1")


@pytest.fixture(scope="session")
def datasets_dir() -> Path:
    return _require(DATASETS)


def make_subset(src: Path, dst: Path, splits: dict) -> Path:
    """A small dataset in the standard layout, copying the named frames from ``src``."""
    for sub in ("images", "masks", "splits"):
        (dst / sub).mkdir(parents=True, exist_ok=True)
    for split, names in splits.items():
        for n in names:
            for sub in ("images", "masks"):
                shutil.copyfile(src / sub / f"{n}.png", dst / sub / f"{n}.png")
        (dst / "splits" / f"{split}.txt").write_text("\n".join(names) + "\n")
    return dst


@pytest.fixture(scope="session")
def tiny_sirst(sirst_root, tmp_path_factory) -> Path:
    """12 train and 4 val frames of SIRST-v1 trainval (never test frames)."""
    names = (sirst_root / "splits" / "trainval.txt").read_text().split()
    return make_subset(sirst_root, tmp_path_factory.mktemp("tiny") / "sirst-v1",
                       {"train": names[:12], "val": names[12:16]})


def architectures() -> list:
    """One registered model per architecture (variants that only re-configure another model left out): what the
    tests of the machinery around a network (training resume, eval, engines, hot swap) run over, to keep CI short.
    Every registered model, variants too, still gets the model tests (test_models.py) and, once it ships weights,
    the shipped-weights tests."""
    from irstd_ros.models import list_models, model_cfg
    return [n for n in list_models() if model_cfg(n).variant_of is None]


def tiny_checkpoint(path: Path, name: str, prepare=None, **args) -> Path:
    """An untrained test-sized ``name`` (its registered tiny_args, updated by ``args``) saved as a checkpoint;
    ``prepare(model)`` may change it first."""
    import torch

    from irstd_ros.models import create_model, model_cfg
    full = {**model_cfg(name).tiny_args, **args}
    model = create_model(name, **full)
    if prepare is not None:
        prepare(model)
    torch.save({"model": name, "model_args": full, "state_dict": model.state_dict()}, path)
    return path


def clean_sample_frame(model: str = "lrrnet", threshold: float = 0.5):
    """``(img8, gt mask, detections)`` of the first bundled sample frame (SIRST-v1 test frames shipped in the
    package, ``irstd_ros/sample``) with one target that ``model``'s shipped weights find alone (one detection,
    its box on the target's centroid) offline through the pure pipeline."""
    import numpy as np

    from irstd_ros.cli.demo import SAMPLE
    from irstd_ros.eval.datasets import read_image, read_mask
    from irstd_ros.runtime.detector import Detector, DetectorConfig
    from irstd_ros.eval.metrics import components
    from irstd_ros.runtime.pipeline import postprocess
    det = Detector(DetectorConfig(model=model))
    for name in (SAMPLE / "splits" / "demo.txt").read_text().split():
        img8 = (read_image(SAMPLE / "images" / f"{name}.png") * 255).round().astype(np.uint8)
        gt = read_mask(SAMPLE / "masks" / f"{name}.png")
        _, dets = postprocess(det.probabilities(img8.astype(np.float32) / np.float32(255)), threshold)
        _, _, cents = components(gt)
        if len(dets) == len(cents) == 1:
            (cx, cy), d = cents[0], dets[0]
            if d.x <= cx <= d.x + d.width and d.y <= cy <= d.y + d.height:
                return img8, gt, dets
    pytest.fail(f"the shipped {model} finds none of the bundled sample frames cleanly at threshold {threshold}")


def visible_noise(net) -> None:
    """IRSTD-Diff's ε output conv starts at zero, so an untrained one predicts ε = 0 and the sampled mask would
    not depend on the noise: give it small random weights."""
    import torch
    torch.nn.init.normal_(net.unet.out[-1].weight, std=0.1)
