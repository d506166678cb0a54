"""Backends run a model's stages by name.

Every backend implements :class:`Backend`: ``run(stage, feeds) -> outputs`` on
numpy arrays, validated against the stage's :class:`~edgevos.stages.StageSpec`.
The same step program runs on any backend, so parity between backends is a
test of stages alone.
"""
from __future__ import annotations

import time
from typing import Dict, Iterable, Mapping, Optional

import numpy as np

from edgevos.errors import InputError
from edgevos.stages import StageSpec


class Backend:
    """Interface: run stages by name on numpy arrays."""

    name = "base"

    def __init__(self, specs: Iterable[StageSpec]):
        self.specs: Dict[str, StageSpec] = {s.name: s for s in specs}
        self.last_ms: Dict[str, float] = {}

    def has(self, stage: str) -> bool:
        return stage in self.specs

    def spec(self, stage: str) -> StageSpec:
        try:
            return self.specs[stage]
        except KeyError:
            raise InputError(
                f"backend '{self.name}' has no stage '{stage}'; it has {sorted(self.specs)}"
            ) from None

    def run(self, stage: str, feeds: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        spec = self.spec(stage)
        spec.check_feeds(feeds)
        t0 = time.perf_counter()
        out = self._run(spec, feeds)
        self.last_ms[stage] = (time.perf_counter() - t0) * 1e3
        return out

    def _run(self, spec: StageSpec, feeds: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        raise NotImplementedError


class TorchBackend(Backend):
    """The reference: runs the PyTorch stage modules in FP32 on the CPU."""

    name = "torch"

    def __init__(self, modules: Mapping[str, "object"], specs: Iterable[StageSpec], threads: Optional[int] = None):
        super().__init__(specs)
        import torch

        self._torch = torch
        if threads:
            torch.set_num_threads(int(threads))
        self.modules = {k: m.eval() for k, m in modules.items()}
        missing = set(self.specs) - set(self.modules)
        if missing:
            raise InputError(f"no module for stages {sorted(missing)}")

    def _run(self, spec, feeds):
        torch = self._torch
        args = [torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in spec.input_names]
        with torch.inference_mode():
            outs = self.modules[spec.name](*args)
        if not isinstance(outs, (tuple, list)):
            outs = (outs,)
        return {n: o.detach().numpy() for n, o in zip(spec.output_names, outs)}
