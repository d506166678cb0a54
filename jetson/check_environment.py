"""The environment checks of ``edgevos check`` (:mod:`edgevos.jetson.check`): the board and L4T /
JetPack, the power mode and jetson_clocks, TensorRT, the CUDA runtime and its driver, the GPU
identity, the GStreamer NVMM elements and ``edgevos doctor``'s facts.  :class:`Probe` reads the
facts where they live (tests give recorded answers); the ``*_row`` functions judge them."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence

from edgevos.jetson.check_report import Row

#: L4T release of JetPack 6.1 (the first with TensorRT 10)
MIN_L4T = (36, 4)
CUDA_MAJOR = 12
GST_NEEDED = ("nvvidconv", "nvv4l2decoder")
GST_OPTIONAL = {"nvv4l2h264enc": "no nvv4l2h264enc: video outputs encode with x264enc",
                "nvarguscamerasrc": "no nvarguscamerasrc: no CSI cameras (csi://)",
                "nv3dsink": "no nv3dsink: display:// uses another video sink"}


def l4t_tuple(version: Optional[str]):
    parts = re.findall(r"\d+", version or "")
    return tuple(int(p) for p in parts[:3]) if parts else None


def board_row(release_text: Optional[str], jetpack: Optional[str] = None) -> Row:
    """/etc/nv_tegra_release (None: absent) -> the board row: L4T r36.4+ (JetPack 6.1 / 6.2) passes."""
    from edgevos.doctor import jetpack_for_l4t, parse_tegra_release

    if release_text is None:
        return Row("board", "FAIL", "not a Jetson (/etc/nv_tegra_release missing): run this on the board, or in a "
                                    "container started with --runtime nvidia")
    l4t = parse_tegra_release(release_text)
    if not l4t:
        first = release_text.strip().splitlines()[0] if release_text.strip() else ""
        return Row("board", "FAIL", f"cannot read the L4T release from '{first}' (/etc/nv_tegra_release)")
    jp = jetpack if jetpack and jetpack != "n/a" else jetpack_for_l4t(l4t)
    jp_text = f", JetPack {jp}" if jp and jp != "n/a" else ""
    if l4t_tuple(l4t)[:2] >= MIN_L4T:
        return Row("board", "PASS", f"L4T {l4t}{jp_text}")
    return Row("board", "FAIL", f"L4T {l4t}{jp_text} is older than JetPack 6.1 (L4T 36.4; JetPack 6.0 ships "
                                f"TensorRT 8.6): flash JetPack 6.1 or 6.2")


def power_row(nvpmodel: Optional[str], clocks: Optional[str]) -> Row:
    """Power mode and jetson_clocks: pinned clocks pass, a governor-driven run warns."""
    mode = nvpmodel if nvpmodel and nvpmodel != "n/a" else "unknown (nvpmodel -q gave nothing)"
    if clocks == "on":
        return Row("power mode", "PASS", f"{mode}, jetson_clocks on")
    why = "off" if clocks == "off" else "unknown"
    return Row("power mode", "WARN", f"{mode}, jetson_clocks {why}: timings follow the governor; "
                                     f"'sudo jetson_clocks' pins the clocks of this mode")


def tensorrt_row(version: Optional[str]) -> Row:
    from edgevos.jetson.trtinfo import MIN_TRT_MAJOR, trt_major

    if not version or version == "unknown":
        return Row("TensorRT", "FAIL", "not found (no tensorrt module, no libnvinfer): 'sudo apt-get install "
                                       "nvidia-jetpack'; a venv needs --system-site-packages to see TensorRT's "
                                       "Python bindings (jetson/setup.sh makes one)")
    major = trt_major(version)
    if major is None or major < MIN_TRT_MAJOR:
        return Row("TensorRT", "FAIL", f"{version}: edgevos needs TensorRT {MIN_TRT_MAJOR}.x: flash JetPack 6.1 or "
                                       f"6.2 (TensorRT 10.3)")
    return Row("TensorRT", "PASS", version)


def cuda_row(text: Optional[str], error: Optional[str] = None) -> Row:
    """'runtime 12.6 driver 12.6' (trtinfo.cuda_versions_text) -> PASS for a CUDA 12 runtime the driver supports."""
    if text is None:
        return Row("CUDA", "FAIL", error or "the CUDA runtime did not load")
    m = re.fullmatch(r"runtime (\d+)\.(\d+) driver (\d+)\.(\d+)", text.strip())
    if m:
        rmaj, rmin, dmaj, dmin = (int(g) for g in m.groups())
        if rmaj == CUDA_MAJOR and (dmaj, dmin) >= (rmaj, rmin):
            return Row("CUDA", "PASS", text.strip())
    return Row("CUDA", "FAIL", f"{text.strip()}: edgevos needs the CUDA {CUDA_MAJOR} runtime of JetPack 6 and a "
                               f"driver at least as new (check LD_LIBRARY_PATH for another libcudart)")


def gpu_row(identity: Optional[str]) -> Row:
    if identity and re.fullmatch(r"sm\d+x\d+", identity):
        return Row("GPU", "PASS", f"{identity} (engines are keyed on it)")
    return Row("GPU", "FAIL", f"no CUDA device answered ('{identity or 'nothing'}'): check /dev/nvgpu, /dev/nvmap "
                              f"and that the user is in the 'video' group")


def gstreamer_row(present: Optional[Mapping[str, bool]]) -> Row:
    """``present``: element -> found (None: no gst-inspect-1.0)."""
    if present is None:
        return Row("GStreamer", "FAIL", "gst-inspect-1.0 not found: 'sudo apt-get install gstreamer1.0-tools' "
                                        "(jetson/setup.sh installs it)")
    missing = [e for e in GST_NEEDED if not present.get(e)]
    if missing:
        return Row("GStreamer", "FAIL", f"missing {' '.join(missing)}: 'sudo apt-get install nvidia-l4t-gstreamer' "
                                        f"(an L4T container needs --runtime nvidia)")
    notes = [why for e, why in GST_OPTIONAL.items() if not present.get(e)]
    if notes:
        return Row("GStreamer", "WARN", "NVMM decode and convert present; " + "; ".join(notes))
    return Row("GStreamer", "PASS", ", ".join(GST_NEEDED + tuple(GST_OPTIONAL)))


class Probe:
    """The board's facts, read where they live.  Tests give recorded answers instead."""

    def __init__(self, env: Optional[Mapping[str, str]] = None):
        self.env = dict(os.environ if env is None else env)

    def tegra_release(self) -> Optional[str]:
        path = Path(self.env.get("NV_TEGRA_RELEASE", "/etc/nv_tegra_release"))
        try:
            return path.read_text(errors="replace")
        except OSError:
            return None

    def _command(self, cmd: Sequence[str]) -> Optional[str]:
        if shutil.which(cmd[0]) is None:
            return None
        try:
            p = subprocess.run(list(cmd), capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return p.stdout.strip() if p.returncode == 0 else None

    def jetson(self) -> dict:
        """Board model, L4T / JetPack (the nvidia-jetpack package, else from the L4T release),
        power mode and jetson_clocks, as ``edgevos doctor`` reads them."""
        from edgevos import doctor

        l4t = doctor.parse_tegra_release(self.tegra_release() or "")
        jetpack = (self._command(["dpkg-query", "-W", "-f=${Version}", "nvidia-jetpack"]) or "").split("-")[0].split("+")[0]
        return {"model": doctor.board_model(), "l4t": l4t or "n/a", "jetpack": jetpack or doctor.jetpack_for_l4t(l4t),
                "nvpmodel": doctor.parse_nvpmodel(self._command(["nvpmodel", "-q"])),
                "jetson_clocks": doctor.jetson_clocks_state()}

    def trt_version(self) -> str:
        from edgevos.jetson.trtinfo import trt_version

        return trt_version()

    def cuda(self) -> str:
        from edgevos.jetson.trtinfo import cuda_versions_text

        return cuda_versions_text()

    def identity(self) -> str:
        from edgevos.jetson.trtinfo import device_identity

        return device_identity()

    def gst_elements(self, names: Sequence[str]) -> Optional[Dict[str, bool]]:
        tool = self.env.get("GST_INSPECT", "gst-inspect-1.0")
        if shutil.which(tool) is None:
            return None
        out = {}
        for name in names:
            try:
                out[name] = subprocess.run([tool, name], capture_output=True, timeout=30).returncode == 0
            except (OSError, subprocess.TimeoutExpired):
                out[name] = False
        return out

    def doctor(self) -> dict:
        from edgevos import doctor

        return doctor.collect()


def environment(probe: Probe) -> tuple:
    """(rows, facts) of the environment checks."""
    from edgevos.jetson.trtinfo import CudaError

    facts: dict = {}
    release = probe.tegra_release()
    jet = probe.jetson() if release is not None else {}
    facts["jetson"] = jet
    rows = [board_row(release, jet.get("jetpack"))]
    if release is not None:
        rows.append(power_row(jet.get("nvpmodel"), jet.get("jetson_clocks")))
    facts["tensorrt"] = probe.trt_version()
    rows.append(tensorrt_row(facts["tensorrt"]))
    try:
        facts["cuda"] = probe.cuda()
        rows.append(cuda_row(facts["cuda"]))
    except CudaError as exc:
        facts["cuda"] = None
        rows.append(cuda_row(None, str(exc)))
    facts["identity"] = probe.identity()
    rows.append(gpu_row(facts["identity"]))
    facts["gstreamer"] = probe.gst_elements(GST_NEEDED + tuple(GST_OPTIONAL))
    rows.append(gstreamer_row(facts["gstreamer"]))
    try:
        facts["doctor"] = probe.doctor()
        rows.append(Row("doctor", "PASS", "edgevos doctor's facts are in the report (doctor)"))
    except Exception as exc:  # noqa: BLE001 - a report row, not a crash
        facts["doctor"] = None
        rows.append(Row("doctor", "FAIL", f"edgevos doctor failed: {type(exc).__name__}: {exc}"))
    return rows, facts


def tensorrt_usable(rows: Sequence[Row]) -> Optional[str]:
    """Why engines cannot be built here (the failed TensorRT / CUDA / GPU row), or None."""
    for r in rows:
        if r.name in ("TensorRT", "CUDA", "GPU") and r.state == "FAIL":
            return f"needs {r.name} (see its row)"
    return None
