"""irstd_ros: real-time infrared small-target detection for ROS 2.

The pure core (no ROS): :mod:`irstd_ros.eval.datasets`, :mod:`irstd_ros.runtime.pipeline`,
:mod:`irstd_ros.models`, :mod:`irstd_ros.eval.metrics`, :mod:`irstd_ros.runtime.detector`.
"""
__version__ = "0.1.0"
