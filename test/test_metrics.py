"""Metrics against an independent brute-force implementation, and hand-made edge cases."""
from __future__ import annotations

import math

import numpy as np
import pytest

from irstd_ros.eval.metrics import MetricAccumulator, bootstrap_ci, match_targets, resampled_metrics


# ---- an independent, obviously-correct implementation: flood fill + loops -------------------------
def brute_components(mask):
    h, w = mask.shape
    seen = np.zeros_like(mask, dtype=bool)
    comps = []
    for y in range(h):
        for x in range(w):
            if mask[y, x] and not seen[y, x]:
                stack, pix = [(y, x)], []
                seen[y, x] = True
                while stack:
                    cy, cx = stack.pop()
                    pix.append((cy, cx))
                    for dy in (-1, 0, 1):
                        for dx in (-1, 0, 1):
                            ny, nx = cy + dy, cx + dx
                            if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not seen[ny, nx]:
                                seen[ny, nx] = True
                                stack.append((ny, nx))
                ys = [p[0] for p in pix]
                xs = [p[1] for p in pix]
                comps.append({"area": len(pix), "cx": sum(xs) / len(xs), "cy": sum(ys) / len(ys)})
    return comps  # raster order of first pixel


def brute_match(pred, gt):
    targets, preds = brute_components(gt), brute_components(pred)
    used = [False] * len(preds)
    detected = 0
    for t in targets:
        best, best_d = None, math.inf
        for j, p in enumerate(preds):
            d = math.hypot(p["cx"] - t["cx"], p["cy"] - t["cy"])
            if not used[j] and d < best_d:
                best, best_d = j, d
        if best is not None and best_d < 3:
            used[best] = True
            detected += 1
    fa = sum(p["area"] for j, p in enumerate(preds) if not used[j])
    return len(targets), detected, fa


def brute_summary(pairs):
    inter = union = pixels = targets = detected = fa = 0
    ious = []
    for pred, gt in pairs:
        i, u = int((pred & gt).sum()), int((pred | gt).sum())
        inter, union, pixels = inter + i, union + u, pixels + gt.size
        ious.append(1.0 if u == 0 else i / u)
        n, d, f = brute_match(pred, gt)
        targets, detected, fa = targets + n, detected + d, fa + f
    return {"iou": inter / union, "niou": sum(ious) / len(ious), "pd": detected / targets, "fa": fa / pixels}


def random_mask(rng, h, w, blobs):
    m = np.zeros((h, w), bool)
    for _ in range(blobs):
        y, x = rng.integers(h), rng.integers(w)
        r = rng.integers(0, 3)
        m[max(y - r, 0):y + r + 1, max(x - r, 0):x + r + 1] = True
    m |= rng.random((h, w)) < 0.003  # speckle: single-pixel components
    return m


@pytest.mark.parametrize("seed", range(8))
def test_matches_brute_force_on_random_masks(seed):
    rng = np.random.default_rng(seed)
    pairs = []
    acc = MetricAccumulator(threshold=0.5, curve_thresholds=())
    for _ in range(4):
        h, w = rng.integers(20, 70), rng.integers(20, 70)
        gt = random_mask(rng, h, w, rng.integers(1, 6))
        # predictions: gt jittered by a pixel, some blobs dropped, some spurious ones added
        pred = np.roll(gt, rng.integers(-1, 2), axis=int(rng.integers(2))) & (rng.random((h, w)) > 0.2)
        pred |= random_mask(rng, h, w, rng.integers(0, 4))
        pairs.append((pred, gt))
        acc.update(pred.astype(np.float32), gt)
    got, want = acc.summary(), brute_summary(pairs)
    for k in ("iou", "niou", "pd", "fa"):
        assert got[k] == pytest.approx(want[k], rel=1e-12, abs=1e-15), k


def test_empty_prediction():
    gt = np.zeros((10, 10), bool)
    gt[4:6, 4:6] = True
    acc = MetricAccumulator()
    acc.update(np.zeros((10, 10)), gt)
    s = acc.summary()
    assert (s["iou"], s["niou"], s["pd"], s["fa"], s["n_targets"]) == (0.0, 0.0, 0.0, 0.0, 1)


def test_empty_ground_truth_counts_all_predicted_pixels_as_false_alarms():
    pred = np.zeros((10, 10), np.float32)
    pred[1, 1] = pred[8, 8] = pred[8, 9] = 1.0
    acc = MetricAccumulator()
    acc.update(pred, np.zeros((10, 10), bool))
    s = acc.summary()
    assert s["n_targets"] == 0 and math.isnan(s["pd"])
    assert s["fa"] == pytest.approx(3 / 100)
    assert s["iou"] == 0.0 and s["niou"] == 0.0


def test_empty_everything_is_perfect_niou():
    acc = MetricAccumulator()
    acc.update(np.zeros((8, 8)), np.zeros((8, 8), bool))
    assert acc.summary()["niou"] == 1.0 and acc.summary()["fa"] == 0.0


def test_touching_targets_are_one_component_under_8_connectivity():
    gt = np.zeros((12, 12), bool)
    gt[2:4, 2:4] = True
    gt[4:6, 4:6] = True  # diagonal contact at (3,3)-(4,4): one 8-connected target
    n, det, fa = match_targets(gt, gt)
    assert (n, det, fa) == (1, 1, 0)


def test_one_prediction_cannot_detect_two_targets():
    gt = np.zeros((20, 20), bool)
    gt[5, 5] = gt[5, 8] = True  # two targets, centroids 3 px apart
    pred = np.zeros((20, 20), bool)
    pred[5, 6:8] = True  # one blob between them, centroid (6.5, 5): 1.5 px from both
    n, det, fa = match_targets(pred, gt)
    assert (n, det, fa) == (2, 1, 0)


def test_centroid_distance_is_strict_3px():
    gt = np.zeros((20, 20), bool)
    gt[10, 5] = True
    pred = np.zeros((20, 20), bool)
    pred[10, 8] = True  # exactly 3 px away: not detected, a false alarm
    assert match_targets(pred, gt) == (1, 0, 1)
    pred[10, 8] = False
    pred[10, 7] = True  # 2 px: detected
    assert match_targets(pred, gt) == (1, 1, 0)


def test_target_at_the_border():
    gt = np.zeros((16, 16), bool)
    gt[0:2, 14:16] = True  # top-right corner
    pred = np.zeros((16, 16), np.float32)
    pred[0:2, 15] = 0.9
    acc = MetricAccumulator()
    acc.update(pred, gt)
    s = acc.summary()
    assert s["pd"] == 1.0 and s["fa"] == 0.0 and s["iou"] == pytest.approx(2 / 4)


def test_no_area_value_matching():
    """DNANet's bug matched components by area value; two equal-area blobs far apart must not match."""
    gt = np.zeros((30, 30), bool)
    gt[2:4, 2:4] = True
    pred = np.zeros((30, 30), bool)
    pred[25:27, 25:27] = True  # same area, far away
    assert match_targets(pred, gt) == (1, 0, 4)


def test_auc_perfect_and_random():
    rng = np.random.default_rng(0)
    gt = rng.random((64, 64)) < 0.05
    acc = MetricAccumulator(curve_thresholds=())
    acc.update(gt.astype(np.float32) * 0.8 + 0.1, gt)
    assert acc.auc() == pytest.approx(1.0)
    acc = MetricAccumulator(curve_thresholds=())
    for _ in range(20):
        acc.update(rng.random((64, 64)).astype(np.float32), rng.random((64, 64)) < 0.05)
    assert acc.auc() == pytest.approx(0.5, abs=0.02)


def test_pd_fa_curve_agrees_with_the_summary_at_its_threshold():
    rng = np.random.default_rng(1)
    acc = MetricAccumulator(threshold=0.5)
    for _ in range(3):
        gt = random_mask(rng, 40, 40, 4)
        acc.update(np.clip(gt * 0.7 + rng.random((40, 40)) * 0.5, 0, 1).astype(np.float32), gt)
    at_half = [c for c in acc.pd_fa_curve() if c["threshold"] == 0.5][0]
    s = acc.summary()
    assert (at_half["pd"], at_half["fa"]) == (s["pd"], s["fa"])


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="differ in shape"):
        MetricAccumulator().update(np.zeros((4, 4)), np.zeros((4, 5), bool))


def random_pairs(rng, n):
    pairs = []
    for _ in range(n):
        h, w = rng.integers(20, 60), rng.integers(20, 60)
        gt = random_mask(rng, h, w, rng.integers(1, 5))
        pred = np.roll(gt, rng.integers(-1, 2), axis=int(rng.integers(2))) & (rng.random((h, w)) > 0.3)
        pred |= random_mask(rng, h, w, rng.integers(0, 3))
        pairs.append((pred, gt))
    return pairs


def accumulate(pairs):
    acc = MetricAccumulator(threshold=0.5, curve_thresholds=())
    for pred, gt in pairs:
        acc.update(pred.astype(np.float32), gt)
    return acc


def test_each_bootstrap_resample_equals_scoring_those_images_afresh():
    """The vectorised resample must give what brute force gives on the resampled list."""
    rng = np.random.default_rng(11)
    pairs = random_pairs(rng, 9)
    acc = accumulate(pairs)
    indices = rng.integers(0, len(pairs), size=(5, len(pairs)))
    got = resampled_metrics(acc, indices)
    for b, row in enumerate(indices):
        want = brute_summary([pairs[i] for i in row])
        for k in ("iou", "niou", "pd", "fa"):
            assert got[k][b] == pytest.approx(want[k], rel=1e-12, abs=1e-15), (k, b)


def test_bootstrap_ci_brackets_the_estimate_and_narrows_with_more_images():
    rng = np.random.default_rng(5)
    pairs = random_pairs(rng, 12)
    small = accumulate(pairs)
    big = accumulate(pairs * 16)  # same distribution, 16x the images: about 4x narrower
    point, ci_small, ci_big = small.summary(), bootstrap_ci(small, 2000), bootstrap_ci(big, 2000)
    for k in ("iou", "niou", "pd", "fa"):
        lo, hi = ci_small[k]
        assert lo <= point[k] <= hi and lo < hi, (k, ci_small[k], point[k])
        ratio = (ci_small[k][1] - ci_small[k][0]) / (ci_big[k][1] - ci_big[k][0])
        assert 2.5 < ratio < 6.5, (k, ratio)
    assert bootstrap_ci(small, 500, seed=3) == bootstrap_ci(small, 500, seed=3)  # reproducible


def test_bootstrap_ci_of_identical_images_has_no_width_and_rejects_nothing_scored():
    gt = np.zeros((16, 16), bool)
    gt[4:7, 4:7] = True
    pred = np.zeros_like(gt)
    pred[4:7, 4:6] = True
    ci = bootstrap_ci(accumulate([(pred, gt)] * 5), 200)
    assert ci["iou"] == [pytest.approx(6 / 9)] * 2 and ci["pd"] == [1.0, 1.0]
    with pytest.raises(ValueError, match="no images"):
        bootstrap_ci(MetricAccumulator())
