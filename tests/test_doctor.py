"""edgevos doctor: runs anywhere, reports what is there, parses Jetson facts."""
import json
import subprocess
import sys
from pathlib import Path

from edgevos import doctor


def test_collect_is_json_serialisable_and_complete():
    info = doctor.collect()
    json.dumps(info)
    for key in ("python", "packages", "onnxruntime_providers", "gstreamer", "cpu", "memory", "gpu", "jetson"):
        assert key in info
    assert info["packages"]["numpy"] not in ("", doctor.NOT_INSTALLED)
    assert set(doctor.CPU_FLAGS) <= set(info["cpu"]["flags"])
    assert info["cpu"]["logical_cores"] >= 1
    assert isinstance(info["gpu"]["present"], bool)


def test_missing_tools_read_not_installed(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setitem(sys.modules, "gi", None)  # PyGObject unavailable
    g = doctor.gstreamer()
    assert g["version"] == doctor.NOT_INSTALLED and g["python_bindings"] is False
    assert doctor.gpu()["nvidia_smi"] == doctor.NA
    assert doctor._dist_version(["surely-not-a-package-xyz"]) is None
    doctor.format_report(doctor.collect())  # still renders


def test_jetson_parsers(tmp_path, monkeypatch):
    assert doctor.parse_tegra_release("# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic") == "36.4.3"
    assert doctor.parse_tegra_release("# R35 (release), REVISION: 4.1, GCID: 33958178") == "35.4.1"
    assert doctor.jetpack_for_l4t("36.4.3") == "6.2"
    assert doctor.jetpack_for_l4t("36.4.0") == "6.1"
    assert doctor.jetpack_for_l4t("35.4.1") == "5.1.2"
    assert doctor.jetpack_for_l4t(None) == doctor.NA
    assert doctor.parse_nvpmodel("NV Power Mode: MAXN\n0") == "MAXN (0)"
    assert doctor.parse_nvpmodel(None) == doctor.NA
    # a fake Jetson root: release file, model and pinned clocks
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "nv_tegra_release").write_text("# R36 (release), REVISION: 4.0, GCID: 1, BOARD: generic\n")
    (tmp_path / "proc" / "device-tree").mkdir(parents=True)
    (tmp_path / "proc" / "device-tree" / "model").write_text("NVIDIA Jetson Orin Nano Developer Kit\x00")
    for c, (lo, hi) in enumerate([("1510400", "1510400"), ("1510400", "1510400")]):
        d = tmp_path / "sys" / "devices" / "system" / "cpu" / f"cpu{c}" / "cpufreq"
        d.mkdir(parents=True)
        (d / "scaling_min_freq").write_text(lo)
        (d / "scaling_max_freq").write_text(hi)
    monkeypatch.setattr(doctor, "_run", lambda *a, **k: None)  # no dpkg / nvpmodel answers here
    j = doctor.jetson(str(tmp_path))
    assert j["is_jetson"] and j["model"] == "NVIDIA Jetson Orin Nano Developer Kit"
    assert j["l4t"] == "36.4.0" and j["jetson_clocks"] == "on"
    assert j["jetpack"] == "6.1" and j["nvpmodel"] == doctor.NA
    (tmp_path / "sys/devices/system/cpu/cpu1/cpufreq/scaling_min_freq").write_text("729600")
    assert doctor.jetson_clocks_state(str(tmp_path / "sys")) == "off"
    assert doctor.jetson(str(tmp_path / "nothing")) == {"is_jetson": False}


def test_cpuinfo_parsing():
    x86 = "processor\t: 0\nmodel name\t: AMD EPYC 9R14\nflags\t\t: fpu avx2 avx512f avx512_vnni\n"
    p = doctor.parse_cpuinfo(x86)
    assert p["model"] == "AMD EPYC 9R14" and {"avx2", "avx512_vnni"} <= p["flags"]
    arm = "processor\t: 0\nBogoMIPS\t: 62.50\nFeatures\t: fp asimd asimddp\nCPU part\t: 0xd42\n"
    assert "asimddp" in doctor.parse_cpuinfo(arm)["flags"]
    assert doctor.parse_meminfo("MemTotal:       16384000 kB\nMemAvailable:    8192000 kB\n")["total_gib"] == 15.62


def test_doctor_cli_subprocess_json():
    exe = Path(sys.executable).with_name("edgevos")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "edgevos"]
    p = subprocess.run(cmd + ["doctor", "--json"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    info = json.loads(p.stdout)
    assert info["python"].count(".") == 2 and "cpu" in info


def test_jetpack_6_2_1_and_orin_gpu_devfreq_and_board_model_in_a_container(tmp_path):
    from edgevos.doctor import board_model, jetpack_for_l4t, jetson_clocks_state

    assert jetpack_for_l4t("36.4.7") == "6.2.1" and jetpack_for_l4t("36.4.4") == "6.2.1"
    sys_root = tmp_path / "sys"
    gpu = sys_root / "class" / "devfreq" / "17000000.gpu"  # Orin's GPU devfreq node
    gpu.mkdir(parents=True)
    (gpu / "min_freq").write_text("306000000\n")
    (gpu / "max_freq").write_text("1300500000\n")
    assert jetson_clocks_state(str(sys_root)) == "off"
    (gpu / "min_freq").write_text("1300500000\n")
    assert jetson_clocks_state(str(sys_root)) == "on"
    fw = tmp_path / "sys" / "firmware" / "devicetree" / "base"
    fw.mkdir(parents=True)
    assert "container" in board_model(str(tmp_path))
    (fw / "model").write_bytes(b"NVIDIA Jetson AGX Orin Developer Kit\x00")
    assert board_model(str(tmp_path)) == "NVIDIA Jetson AGX Orin Developer Kit"
