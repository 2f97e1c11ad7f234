"""Inference backend names, kept free of torch so the parameter table and the launch helper stay light."""

BACKENDS = ("torch",)
