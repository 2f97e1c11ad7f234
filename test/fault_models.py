"""Test-only models that fail on command, for fault injection into the detector node's own process.

The node imports this module when ``IRSTD_TEST_MODEL_MODULES=fault_models``
(see :func:`irstd_ros.ros.detector_node.import_test_models`); the test process never
does, so ``fault_probe`` stays out of its registry (tests run over every
registered model). A checkpoint written by ``ros_harness.fault_checkpoint``
picks the failure through its ``model_args``:

* ``build_raises``: the factory raises this builtin exception type (a reload or configure that fails);
* ``build_sleeps_s``: the factory sleeps that long first (a reload or configure still in progress);
* ``corner_raises``: ``forward`` raises it on a frame whose top-left pixel is bright
  (``SystemExit`` ends the worker thread, ``RuntimeError`` fails the frame);
* ``corner_sleeps_s``: ``forward`` sleeps that long on such a frame (a stalled worker).

Frames without a bright corner are answered: logits are ``gain * (x - 0.5)``, so
pixels brighter than 0.5 are targets (``gain`` comes from the checkpoint).
"""
from __future__ import annotations

import builtins
import time

import torch
import torch.nn as nn

from irstd_ros.models import ModelCfg, register_model


def _raise(type_name: str):
    raise getattr(builtins, type_name)(f"injected {type_name} (test fault model)")


class FaultProbe(nn.Module):
    stride = 16

    def __init__(self, corner_raises: str = "", corner_sleeps_s: float = 0.0):
        super().__init__()
        self.gain = nn.Parameter(torch.zeros(()))
        self.corner_raises, self.corner_sleeps_s = corner_raises, corner_sleeps_s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool(x[:, :, 0, 0].max() > 0.99):
            if self.corner_sleeps_s:
                time.sleep(self.corner_sleeps_s)
            if self.corner_raises:
                _raise(self.corner_raises)
        return (x - 0.5) * self.gain


@register_model(ModelCfg(stride=16, description="test-only: fails on command"))
def fault_probe(build_raises: str = "", build_sleeps_s: float = 0.0, **kwargs) -> nn.Module:
    time.sleep(build_sleeps_s)
    if build_raises:
        _raise(build_raises)
    return FaultProbe(**kwargs)

