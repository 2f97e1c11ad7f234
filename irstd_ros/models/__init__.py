"""IRSTD networks. Importing this package registers every model module."""
from .registry import create_model, list_models, register_model
from . import lrrnet  # noqa: F401  (registers "lrrnet")

__all__ = ["create_model", "list_models", "register_model"]
