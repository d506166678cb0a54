"""Stage signatures: what a bundle records and every backend checks.

A *stage* is a pure tensor function with fixed input/output names, shapes and
dtypes.  Model families declare their stages with :class:`StageSpec`; export
writes them into the bundle manifest; backends validate feeds against them.
This module is torch-free.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Tuple

import numpy as np

from edgevos.errors import InputError


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: Tuple[int, ...]
    dtype: str = "float32"

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_dict(cls, d: dict) -> "TensorSpec":
        return cls(d["name"], tuple(int(s) for s in d["shape"]), d.get("dtype", "float32"))

    def zeros(self) -> np.ndarray:
        return np.zeros(self.shape, dtype=self.dtype)


@dataclass(frozen=True)
class StageSpec:
    name: str
    inputs: Tuple[TensorSpec, ...]
    outputs: Tuple[TensorSpec, ...]
    doc: str = ""

    @property
    def input_names(self) -> List[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> List[str]:
        return [t.name for t in self.outputs]

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "doc": self.doc,
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
        }

    @classmethod
    def from_dict(cls, d: dict) -> "StageSpec":
        return cls(
            d["name"],
            tuple(TensorSpec.from_dict(t) for t in d["inputs"]),
            tuple(TensorSpec.from_dict(t) for t in d["outputs"]),
            d.get("doc", ""),
        )

    def dummy_feeds(self, seed: int = 0) -> Dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        return {t.name: rng.standard_normal(t.shape).astype(t.dtype) for t in self.inputs}

    def check_feeds(self, feeds: Dict[str, np.ndarray]) -> None:
        """Raise InputError if feeds do not match this stage's signature."""
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise InputError(
                f"stage '{self.name}' is missing inputs {missing}; it takes {self.input_names}"
            )
        for t in self.inputs:
            a = feeds[t.name]
            if tuple(a.shape) != tuple(t.shape):
                raise InputError(
                    f"stage '{self.name}' input '{t.name}' has shape {tuple(a.shape)} "
                    f"but the stage was built for {tuple(t.shape)}: resize the frame to the "
                    f"bundle's input size or export a bundle for this size"
                )
