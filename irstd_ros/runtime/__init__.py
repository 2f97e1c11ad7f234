"""Inference without ROS: pre/post-processing, the :class:`~irstd_ros.runtime.detector.Detector`, checkpoints and
their cards, precision choice, and the deployment backends (torch, OpenVINO, ONNX Runtime, Torch-TensorRT)
behind one interface. The node, ``irstd-eval`` and the bag tools all run frames through this tier."""
