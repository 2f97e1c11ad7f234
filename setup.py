"""irstd_ros: an ament_python package that also installs with plain pip (``pip install -e .``)."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "irstd_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    description="Real-time infrared small-target detection for ROS 2 thermal cameras",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    package_data={PACKAGE: ["ops/csrc/*.cpp", "weights/*.pt", "weights/*.json", "sample/*/*.png", "sample/*/*.txt",
                            "sample/*/*/*.png", "sample/*/*/*.txt"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.py")),
        (f"share/{PACKAGE}/config", glob("config/*")),
        (f"lib/{PACKAGE}", ["scripts/ros2/detector"]),  # where `ros2 run` looks
    ],
    install_requires=[
        "numpy>=1.24",
        "opencv-python-headless>=4.8",
        "pillow>=10",
        "pyyaml>=6",
        "tqdm>=4.60",
        "torch>=2.4",
        "matplotlib>=3.7",
    ],
    extras_require={
        "test": ["pytest>=8", "scikit-image>=0.22", "PyWavelets>=1.5"],
        "gpu": ["triton>=3.0"],
        "deploy": ["onnx>=1.16", "onnxscript>=0.2", "onnxruntime>=1.18", "openvino>=2024.0"],
        # NVIDIA GPUs: needs the CUDA build of torch 2.13 first (see requirements-tensorrt.txt)
        "tensorrt": ["torch-tensorrt==2.13.0", "triton>=3.0"],  # torch-tensorrt pulls its TensorRT wheels
    },
    zip_safe=False,  # the C++ kernel sources are compiled from the installed files
    entry_points={
        "console_scripts": [
            "irstd-eval = irstd_ros.cli.eval:main",
            "irstd-demo = irstd_ros.cli.demo:main",
            "irstd-detector = irstd_ros.ros.detector_node:main",
            "irstd-bag = irstd_ros.cli.bag:main",
            "irstd-build = irstd_ros.cli.build:main",
        ],
    },
)
