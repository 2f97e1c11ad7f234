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
