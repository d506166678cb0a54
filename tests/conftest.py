import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EDGEVOS_SHARED", ROOT.parent / "shared"))
DAVIS = SHARED / "data" / "davis2016-train"
VIDEOS = SHARED / "data" / "videos"
WEIGHTS = SHARED / "weights"


#: device nodes of an NVIDIA GPU: discrete (/dev/nvidia0), Jetson JetPack 5 (nvhost) and 6 (nvgpu, nvmap)
GPU_NODES = ("/dev/nvidia0", "/dev/nvhost-ctrl", "/dev/nvhost-ctrl-gpu", "/dev/nvgpu/igpu0/ctrl", "/dev/nvmap")


def has_gpu_nodes(nodes=GPU_NODES) -> bool:
    return any(os.path.exists(n) for n in nodes)


def _has_gpu() -> bool:
    try:
        import tensorrt  # noqa: F401
    except Exception:
        return False
    return has_gpu_nodes()


def pytest_collection_modifyitems(config, items):
    gpu = _has_gpu()
    jetson = Path("/etc/nv_tegra_release").exists()
    for item in items:
        if "gpu" in item.keywords and not gpu:
            item.add_marker(pytest.mark.skip(reason="needs an NVIDIA GPU with TensorRT; none on this machine"))
        if "jetson" in item.keywords and not jetson:
            item.add_marker(pytest.mark.skip(reason="needs a Jetson board (/etc/nv_tegra_release absent)"))


@pytest.fixture(scope="session")
def davis_root():
    if not (DAVIS / "JPEGImages" / "480p").is_dir():
        pytest.skip(f"DAVIS data not found at {DAVIS} (set EDGEVOS_SHARED)")
    return DAVIS


@pytest.fixture(scope="session")
def videos_dir():
    if not VIDEOS.is_dir():
        pytest.skip(f"videos not found at {VIDEOS} (set EDGEVOS_SHARED)")
    return VIDEOS


@pytest.fixture(scope="session")
def mobilenet_weights():
    p = WEIGHTS / "mobilenet_v2-b0353104.pth"
    if not p.is_file():
        pytest.skip(f"MobileNetV2 ImageNet weights not found at {p}")
    return p
