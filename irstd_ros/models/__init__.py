"""IRSTD networks. Importing this package registers every model module."""
from .registry import ModelCfg, create_model, list_models, model_cfg, register_model
from . import irmamba, irsam, lrrnet  # noqa: F401  (each registers itself)

__all__ = ["ModelCfg", "create_model", "list_models", "model_cfg", "register_model"]
