"""Blocks that more than one network uses (as ``timm.layers``): attention maps, conv blocks, 2-D Mamba, an exact
channels-last GroupNorm."""
from .attention import ChannelAttention, SpatialAttention
from .conv import BasicResBlock, ConvBNAct
from .norm import GroupNorm
from .mamba2d import LayerNorm2d, PatchExpand2d, PatchMerging2d, SS2D, VSSBlock, scan_orders

__all__ = ["ChannelAttention", "SpatialAttention", "BasicResBlock", "ConvBNAct", "GroupNorm", "LayerNorm2d", "PatchExpand2d",
           "PatchMerging2d", "SS2D", "VSSBlock", "scan_orders"]
