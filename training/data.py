"""In-memory training data: several datasets, resized to their paper size, with seeded augmentation.

All randomness derives from ``(seed, epoch, position)``, never from global state,
so an epoch replays identically after a resume and on any number of DDP ranks.
"""
from __future__ import annotations

from typing import Dict, Iterator, List, Sequence, Tuple

import cv2
import numpy as np
import torch

from irstd_ros.eval.datasets import IRSTDDataset, paper_size


class TrainData:
    def __init__(self, entries: Sequence[Dict], split_key: str = "train_split", crop_size: int = 256,
                 scale_range: Sequence[float] = (0.8, 1.2), target_crop_prob: float = 0.5):
        self.images: List[np.ndarray] = []
        self.masks: List[np.ndarray] = []
        self.index: List[int] = []  # one epoch's sample list, with dataset repeats
        for entry in entries:
            split = entry.get(split_key, "trainval" if split_key == "train_split" else None)
            if split is None:
                continue
            ds = IRSTDDataset(entry["root"], split, protocol="paper",
                              size=entry.get("size") or paper_size(entry["root"]))
            first = len(self.images)
            for s in ds:
                self.images.append(s.image)
                self.masks.append(s.mask)
            self.index += list(range(first, len(self.images))) * int(entry.get("repeat", 1))
        self.crop = crop_size
        self.scale_range = tuple(scale_range)
        self.target_crop_prob = target_crop_prob

    def __len__(self) -> int:
        return len(self.index)

    def epoch_batches(self, epoch: int, seed: int, batch_size: int, rank: int = 0,
                      world: int = 1) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        """This rank's batches for ``epoch``; every rank gets the same number of batches."""
        perm = np.random.default_rng([seed, epoch]).permutation(len(self.index))
        per_step = batch_size * world
        steps = len(perm) // per_step
        for step in range(steps):
            pos = [step * per_step + rank * batch_size + i for i in range(batch_size)]
            pairs = [self.augment(self.index[perm[p]], np.random.default_rng([seed, epoch, p, 1])) for p in pos]
            yield (torch.from_numpy(np.stack([a for a, _ in pairs]))[:, None],
                   torch.from_numpy(np.stack([b for _, b in pairs]))[:, None])

    def steps_per_epoch(self, batch_size: int, world: int = 1) -> int:
        return len(self.index) // (batch_size * world)

    def augment(self, i: int, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
        img, mask = self.images[i], self.masks[i].astype(np.float32)
        s = rng.uniform(*self.scale_range)
        h, w = img.shape
        nh, nw = max(int(round(h * s)), 1), max(int(round(w * s)), 1)
        img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
        mask = (cv2.resize(mask, (nw, nh), interpolation=cv2.INTER_LINEAR) > 0.5).astype(np.float32)
        c = self.crop
        if nh < c or nw < c:  # pad with replicated edges up to the crop size
            ph, pw = max(c - nh, 0), max(c - nw, 0)
            img = cv2.copyMakeBorder(img, 0, ph, 0, pw, cv2.BORDER_REFLECT_101 if min(nh, nw) > 1 else cv2.BORDER_REPLICATE)
            mask = cv2.copyMakeBorder(mask, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=0)
            nh, nw = img.shape
        ys, xs = np.nonzero(mask)
        if len(ys) and rng.random() < self.target_crop_prob:
            k = rng.integers(len(ys))
            y0 = int(np.clip(ys[k] - rng.integers(c), 0, nh - c))
            x0 = int(np.clip(xs[k] - rng.integers(c), 0, nw - c))
        else:
            y0, x0 = int(rng.integers(nh - c + 1)), int(rng.integers(nw - c + 1))
        img, mask = img[y0:y0 + c, x0:x0 + c], mask[y0:y0 + c, x0:x0 + c]
        if rng.random() < 0.5:
            img, mask = img[:, ::-1], mask[:, ::-1]
        if rng.random() < 0.5:
            img, mask = img[::-1], mask[::-1]
        if rng.random() < 0.5:
            img, mask = img.T, mask.T
        return np.ascontiguousarray(img, np.float32), np.ascontiguousarray(mask, np.float32)
