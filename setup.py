"""edgevos: semi-supervised video object segmentation on NVIDIA Jetson.

One distribution, import name ``edgevos``; the three source folders map onto one
namespace so nothing generic (``runtime``, ``export``) lands in site-packages.
"""
import platform
import re
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).parent
VERSION = re.search(r'__version__ = "([^"]+)"', (ROOT / "sdk" / "__init__.py").read_text()).group(1)

# torch is for training, export and the reference backend only; a deployment
# (ONNX Runtime / TensorRT) imports and runs without it.  On x86-64 CPU machines
# a bare ``torch`` pulls a multi-GB CUDA build, so the CPU build is pinned.
if platform.machine() in ("x86_64", "AMD64"):
    TORCH = "torch==2.13.0"
else:
    TORCH = "torch>=2.3"

DEPLOY = [
    "numpy>=1.24",
    "onnxruntime>=1.17",
    "pillow>=9",
    "opencv-python-headless>=4.8",
    "tqdm>=4.60",
    "threadpoolctl>=3",
]
EXTRAS = {
    "torch": [TORCH],
    "export": [TORCH, "onnx>=1.15", "onnxscript>=0.1", "onnxslim>=0.1.40"],
    "train": [TORCH, "scipy>=1.10"],
    "gst": ["PyGObject<3.51"],
    # TensorRT's Python bindings and the CUDA 12 runtime come with JetPack (edgevos calls
    # libcudart.so.12 through ctypes):
    # nothing from pip, whose cuda-python 13 needs a CUDA 13 driver JetPack 6 does not have
    "trt": [],
    "plot": ["matplotlib>=3.6"],
    "dev": ["pytest>=7", "hypothesis>=6", "scipy>=1.10", "matplotlib>=3.6", "import-linter>=2"],
}
EXTRAS["all"] = sorted({r for k in ("torch", "export", "train", "gst", "plot", "dev") for r in EXTRAS[k]})

setup(
    name="edgevos",
    version=VERSION,
    description="Semi-supervised video object segmentation for NVIDIA Jetson: models, INT8 export, GStreamer runtime",
    long_description=(ROOT / "README.md").read_text(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    package_dir={
        "edgevos": "sdk",
        "edgevos.export": "export",
        "edgevos.runtime": "runtime",
        "edgevos.jetson": "jetson",
    },
    packages=[
        "edgevos",
        "edgevos.data",
        "edgevos.models",
        "edgevos.programs",
        "edgevos.train",
        "edgevos.export",
        "edgevos.runtime",
        "edgevos.jetson",
    ],
    # the shell functions a generated build script embeds (export.tensorrt.TRTEXEC_COMMON)
    package_data={"edgevos": ["weights/*", "weights/**/*"], "edgevos.jetson": ["trtexec_common.sh"]},
    include_package_data=True,
    install_requires=DEPLOY,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["edgevos=edgevos.cli:main"]},
)
