"""Custom torch ops for the IRSTD models: ``torch.ops.irstd.selective_scan`` and the Haar DWT/IDWT.

Importing this package registers the ops (``torch.library``) with their fake
kernels and autograd formulas. See ``docs/ops.md`` for the contracts.
"""
from .haar import haar_dwt2d, haar_idwt2d, haar_wavedec2d, haar_waverec2d, haar_dwt2d_reference
from .selective_scan import (ScanShapeError, selective_scan, selective_scan_blocked,
                             selective_scan_reference)

__all__ = ["selective_scan", "selective_scan_reference", "selective_scan_blocked", "ScanShapeError",
           "haar_dwt2d", "haar_idwt2d", "haar_wavedec2d", "haar_waverec2d", "haar_dwt2d_reference"]
