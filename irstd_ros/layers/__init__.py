"""Blocks that more than one network uses (as ``timm.layers``): attention maps, conv blocks, 2-D Mamba."""
from .attention import ChannelAttention, SpatialAttention
from .conv import BasicResBlock, ConvBNAct
from .mamba2d import LayerNorm2d, PatchExpand2d, PatchMerging2d, SS2D, VSSBlock, scan_orders

__all__ = ["ChannelAttention", "SpatialAttention", "BasicResBlock", "ConvBNAct", "LayerNorm2d", "PatchExpand2d",
           "PatchMerging2d", "SS2D", "VSSBlock", "scan_orders"]
