"""Offline training for irstd_ros models: ``python -m training.train --config training/configs/X.yaml``."""
