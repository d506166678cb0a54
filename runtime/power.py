"""Board power on a Jetson: tegrastats (or jtop) sampling and energy per frame.

:func:`parse_tegrastats` reads one tegrastats line of any Jetson generation:

* Orin NX / Orin Nano, JetPack 5/6: ``VDD_IN 5139mW/5139mW VDD_CPU_GPU_CV 723mW/723mW ...``
* Xavier NX: ``VDD_IN 3937/3937 VDD_CPU_GPU_CV 516/516 VDD_SOC 1157/1157``
* AGX Xavier: ``GPU 0/0 CPU 620/620 SOC 2168/2168 CV 0/0 VDDRQ 310/310 SYS5V 1904/1904``,
  AGX Orin: ``VDD_GPU_SOC 2390mW/2390mW VDD_CPU_CV 398mW/398mW VIN_SYS_5V0 3418mW/3418mW ...``
  (no input rail: the total is the sum of the rails)
* Nano / TX1: ``POM_5V_IN 2420/2420 POM_5V_GPU 0/0 POM_5V_CPU 442/442``

plus RAM, CPU loads and clocks, GR3D_FREQ (GPU load) and temperatures.

:class:`PowerMonitor` runs ``tegrastats --interval N`` in a thread (or polls
jtop when installed) and integrates power over a run.  Where neither exists
it is "not available": :meth:`PowerMonitor.summary` returns None, never a
made-up number.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from typing import List, Optional, Tuple

# Module input rails (total power). Boards without one (AGX Xavier, AGX Orin) report
# per-rail power only; the total is then the sum of the rails, labelled as such.
INPUT_RAILS = ("VDD_IN", "POM_5V_IN")

_RAIL_RE = re.compile(r"\b([A-Z][A-Z0-9_]*)\s+(\d+)(?:mW)?/(\d+)(?:mW)?(?=\s|$)")
_RAM_RE = re.compile(r"\bRAM (\d+)/(\d+)MB")
_SWAP_RE = re.compile(r"\bSWAP (\d+)/(\d+)MB")
_CPU_RE = re.compile(r"\bCPU \[([^\]]*)\]")
_GR3D_RE = re.compile(r"\bGR3D_FREQ (\d+)%(?:@\[?(\d+)(?:,\d+)*\]?)?")
_EMC_RE = re.compile(r"\bEMC_FREQ (\d+)%(?:@(\d+))?")
_TEMP_RE = re.compile(r"\b([A-Za-z][A-Za-z0-9_]*)@(-?\d+(?:\.\d+)?)C\b")
_NOT_RAILS = {"RAM", "SWAP", "IRAM", "EMC_FREQ", "GR3D_FREQ", "APE", "VIC_FREQ", "MTS", "NVENC", "NVDEC"}


def parse_tegrastats(line: str) -> Optional[dict]:
    """Parse one tegrastats line; None when it carries no recognisable field.

    Returns ``{"rails": {name: (current_mW, average_mW)}, "power_mw": total input
    power or None, "power_source": rail name or "sum of rails", "ram_used_mb",
    "ram_total_mb", "swap_used_mb", "cpu": [{"load": %, "mhz": int} or None (off)],
    "gpu_load": %, "gpu_mhz", "emc_load": %, "temps": {sensor: C}}``.
    """
    out: dict = {"rails": {}, "temps": {}, "cpu": []}
    m = _RAM_RE.search(line)
    if m:
        out["ram_used_mb"], out["ram_total_mb"] = int(m.group(1)), int(m.group(2))
    m = _SWAP_RE.search(line)
    if m:
        out["swap_used_mb"], out["swap_total_mb"] = int(m.group(1)), int(m.group(2))
    m = _CPU_RE.search(line)
    if m:
        for core in m.group(1).split(","):
            core = core.strip()
            cm = re.fullmatch(r"(\d+)%(?:@(\d+))?", core)
            out["cpu"].append({"load": int(cm.group(1)), "mhz": int(cm.group(2)) if cm.group(2) else None}
                              if cm else None)
    m = _GR3D_RE.search(line)
    if m:
        out["gpu_load"] = int(m.group(1))
        out["gpu_mhz"] = int(m.group(2)) if m.group(2) else None
    m = _EMC_RE.search(line)
    if m:
        out["emc_load"] = int(m.group(1))
    for name, value in _TEMP_RE.findall(line):
        v = float(value)
        if v > -200:  # -256C marks a sensor that is off
            out["temps"][name] = v
    for name, cur, avg in _RAIL_RE.findall(line):
        if name in _NOT_RAILS:
            continue
        out["rails"][name] = (int(cur), int(avg))
    power, source = None, None
    for rail in INPUT_RAILS:
        if rail in out["rails"]:
            power, source = out["rails"][rail][0], rail
            break
    if power is None and out["rails"]:
        power, source = sum(c for c, _ in out["rails"].values()), "sum of rails"
    out["power_mw"], out["power_source"] = power, source
    if not out["rails"] and not out["cpu"] and "ram_used_mb" not in out:
        return None
    return out


def integrate(samples: List[Tuple[float, float]], t0: float, t1: float) -> Optional[Tuple[float, float]]:
    """Energy (J) and mean power (W) over [t0, t1] from (time_s, watts) samples,
    holding each sample until the next one (tegrastats reports the average
    over the interval that just ended, so each value is held backwards)."""
    pts = sorted(s for s in samples if s[1] is not None)
    if not pts or t1 <= t0:
        return None
    energy = 0.0
    for i, (t, w) in enumerate(pts):
        start = pts[i - 1][0] if i else -float("inf")
        a, b = max(start, t0), min(t, t1)
        if b > a:
            energy += w * (b - a)
    last_t, last_w = pts[-1]
    if t1 > max(last_t, t0):
        energy += last_w * (t1 - max(last_t, t0))
    return energy, energy / (t1 - t0)


class PowerMonitor:
    """Sample board power during a run.

    ``start()`` launches ``tegrastats --interval <ms>`` (or jtop) in a thread;
    ``stop(frames)`` ends sampling and returns :meth:`summary`.  ``available``
    is False where neither tool exists; then ``summary()`` is None.
    """

    def __init__(self, interval_ms: int = 100, command: Optional[List[str]] = None, log=None):
        self.interval_ms = int(interval_ms)
        self.log = log  # a path: every tegrastats line is also written there, as tegrastats printed it
        self.samples: List[Tuple[float, float]] = []  # (perf_counter s, watts)
        self.source: Optional[str] = None
        self._command = command
        self._proc = None
        self._thread: Optional[threading.Thread] = None
        self._stop = threading.Event()
        self._t0 = self._t1 = None
        self._lock = threading.Lock()
        self.backend = self._detect()

    def _detect(self) -> Optional[str]:
        if self._command is not None:
            return "tegrastats"
        exe = shutil.which("tegrastats")
        if exe:
            self._command = [exe, "--interval", str(self.interval_ms)]
            return "tegrastats"
        try:
            import importlib.util
            from pathlib import Path

            if importlib.util.find_spec("jtop") is None:
                return None

            if Path("/run/jtop.sock").exists():
                return "jtop"
        except ImportError:
            pass
        return None

    @property
    def available(self) -> bool:
        return self.backend is not None

    def start(self) -> "PowerMonitor":
        """Start sampling; on a monitor already sampling, only restart the measured interval."""
        self._t0 = time.perf_counter()
        if not self.available or (self._thread is not None and self._thread.is_alive()):
            return self
        target = self._run_tegrastats if self.backend == "tegrastats" else self._run_jtop
        self._thread = threading.Thread(target=target, name="edgevos-power", daemon=True)
        self._thread.start()
        return self

    def wait_for_sample(self, timeout: float = 5.0) -> bool:
        """After ``start()``: wait until the first power sample arrived (tegrastats prints its
        first line one interval after it starts); False when none came within ``timeout``."""
        deadline = time.perf_counter() + timeout
        while self.available and time.perf_counter() < deadline:
            with self._lock:
                if self.samples:
                    return True
            time.sleep(0.01)
        with self._lock:
            return bool(self.samples)

    def _add(self, watts: Optional[float], source: Optional[str]) -> None:
        if watts is None:
            return
        with self._lock:
            self.samples.append((time.perf_counter(), float(watts)))
            self.source = source

    def _run_tegrastats(self) -> None:
        try:
            self._proc = subprocess.Popen(self._command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                          text=True, bufsize=1)
        except OSError:
            self.backend = None
            return
        log = open(self.log, "w") if self.log else None
        try:
            for line in self._proc.stdout:
                if self._stop.is_set():
                    break
                if log is not None:
                    log.write(line)
                    log.flush()
                self._tegrastats_line(line)
        finally:
            if log is not None:
                log.close()

    def _tegrastats_line(self, line: str) -> None:
        parsed = parse_tegrastats(line)
        if parsed is None:
            return
        mw = parsed.get("power_mw")
        self._add(None if mw is None else mw / 1000.0, parsed.get("power_source"))

    def _run_jtop(self) -> None:
        try:
            from jtop import jtop

            with jtop(interval=self.interval_ms / 1000.0) as jet:
                while jet.ok() and not self._stop.is_set():
                    tot = (jet.power or {}).get("tot") or {}
                    mw = tot.get("power")
                    self._add(None if mw is None else mw / 1000.0, "jtop " + str(tot.get("name", "total")))
        except Exception:
            self.backend = None if not self.samples else self.backend

    def stop(self, frames: Optional[int] = None) -> Optional[dict]:
        self._t1 = time.perf_counter()
        self._stop.set()
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        if self._thread is not None:
            self._thread.join(timeout=3)
        return self.summary(frames)

    def summary(self, frames: Optional[int] = None, t0: Optional[float] = None,
                t1: Optional[float] = None) -> Optional[dict]:
        """``{"avg_watts", "energy_j", "energy_per_frame_j", "samples", "source"}`` or None."""
        t0 = self._t0 if t0 is None else t0
        t1 = (self._t1 or time.perf_counter()) if t1 is None else t1
        with self._lock:
            samples = list(self.samples)
        if not self.available or not samples or t0 is None:
            return None
        res = integrate(samples, t0, t1)
        if res is None:
            return None
        energy, watts = res
        return {
            "avg_watts": round(watts, 3),
            "energy_j": round(energy, 3),
            "energy_per_frame_j": round(energy / frames, 5) if frames else None,
            "samples": len(samples),
            "seconds": round(t1 - t0, 3),
            "source": f"{self.backend}: {self.source}",
        }

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        if not self._stop.is_set():
            self.stop()
        return False
