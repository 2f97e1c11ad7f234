"""Everything that speaks ROS: the lifecycle node and its parameters, ``sensor_msgs/Image`` decoding,
bags, the stream client and the launch helpers. The only tier that imports rclpy (this ``__init__``
imports nothing, so the launch helpers stay free of rclpy and torch)."""
