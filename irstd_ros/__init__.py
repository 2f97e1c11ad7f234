"""irstd_ros: real-time infrared small-target detection for ROS 2.

The pure core (no ROS): :mod:`irstd_ros.datasets`, :mod:`irstd_ros.pipeline`,
:mod:`irstd_ros.models`, :mod:`irstd_ros.metrics`, :mod:`irstd_ros.detector`.
"""
__version__ = "0.1.0"
