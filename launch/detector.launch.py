"""ros2 launch irstd_ros detector.launch.py model:=lrrnet [namespace:=irstd] [image_topic:=/thermal/image_raw]
[params_file:=...] [use_sim_time:=false] [log_level:=info]

A thin layer over irstd_ros.ros.launch_config.detector_node_config, which is unit-tested.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode

from irstd_ros.ros.launch_config import detector_node_config

ARGS = {
    "model": ("lrrnet", "network: a registered model with a config/<model>.yaml (lrrnet, lrrnet_small, irmamba, irsam, irstd_diff)"),
    "namespace": ("irstd", "node namespace; topics are relative to it"),
    "image_topic": ("", "remap the input; empty keeps <namespace>/image"),
    "params_file": ("", "parameters YAML; empty uses config/<model>.yaml"),
    "use_sim_time": ("false", "use /clock (bag replay)"),
    "log_level": ("info", "debug, info, warn, error, fatal"),
}


def _node(context):
    values = {k: LaunchConfiguration(k).perform(context) for k in ARGS}
    cfg = detector_node_config(**values)
    return [LifecycleNode(package=cfg.package, executable=cfg.executable, name=cfg.name, namespace=cfg.namespace,
                          parameters=cfg.parameters, remappings=cfg.remappings, output="screen",
                          arguments=["--ros-args", "--log-level", cfg.log_level])]


def generate_launch_description():
    return LaunchDescription(
        [DeclareLaunchArgument(k, default_value=v, description=d) for k, (v, d) in ARGS.items()]
        + [OpaqueFunction(function=_node)])
