"""IRSTD networks. Importing this package registers every model module."""
from .registry import Knob, ModelCfg, create_model, list_models, model_cfg, register_model
from . import irmamba, irsam, irstd_diff, lrrnet  # noqa: F401  (each registers itself)

__all__ = ["Knob", "ModelCfg", "create_model", "list_models", "model_cfg", "register_model"]
