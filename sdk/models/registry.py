"""Model families by name: builder, step program, presets, training.  Importing this module does not import torch."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Tuple

from edgevos.errors import InputError


@dataclass(frozen=True)
class Family:
    name: str
    title: str
    _build: str  # "module:function" (torch)
    _program: str  # "module:Class" (torch-free)
    #: "module:function" (torch-free) that checks a preset name (the builder's ``preset=``) and raises
    #: InputError naming the valid ones; "" for a family without presets
    _presets: str = ""
    #: "module:object" (torch-free) of the family's training, an
    #: :class:`edgevos.train.family.FamilyTraining` (its ``edgevos train`` options, TrainConfig and
    #: trainer); "" for a family without one
    _training: str = ""
    #: stages an INT8 export leaves in float unless told otherwise (``edgevos export --keep-float``
    #: adds to these), each for a measured reason given where the family is registered
    keep_float: Tuple[str, ...] = ()

    def check_preset(self, preset: str) -> None:
        """InputError unless ``preset`` is one of this family's presets (``build(preset=...)``)."""
        if not self._presets:
            with_presets = sorted(f.name for f in FAMILIES.values() if f._presets)
            raise InputError(f"{self.name} has no presets ('{self.name}:{preset}'): families with presets: "
                             f"{with_presets}")
        _load(self._presets)(preset)

    @property
    def trains(self) -> bool:
        """``edgevos train`` can train this family (it has a :meth:`training`)."""
        return bool(self._training)

    def training(self):
        """The family's :class:`edgevos.train.family.FamilyTraining` (torch-free import): what
        ``edgevos train FAMILY`` adds to its options, and the TrainConfig and trainer it runs."""
        if not self._training:
            raise InputError(f"{self.name} has no training: families with one: "
                             f"{sorted(f.name for f in FAMILIES.values() if f.trains)}")
        return _load(self._training)

    def build(self, weights=None, input_size=None, **overrides):
        """The PyTorch model (needs torch): stage_modules(), stage_specs(), config, normalization,
        and ``family`` (this family's name).

        ``input_size`` None: the size the weights were trained at (the family's default without weights).
        """
        model = _load(self._build)(weights=weights, input_size=input_size, **overrides)
        model.family = self.name
        return model

    def make_program(self, backend, config: dict, tau: float = 1.0, **kwargs):
        """The torch-free step program running this family's stages on ``backend``."""
        return _load(self._program)(backend, config, tau=tau, **kwargs)


def _load(ref: str) -> Callable:
    import importlib

    module, attr = ref.split(":")
    return getattr(importlib.import_module(module), attr)


FAMILIES: Dict[str, Family] = {
    "gfrtm": Family("gfrtm", "G-FRTM-fast (FRTM-fast + learned reuse gate)",
                    "edgevos.models.gfrtm:build_gfrtm", "edgevos.programs.gfrtm:GfrtmProgram",
                    _training="edgevos.train.gfrtm:TRAINING"),
    "slowfast": Family("slowfast", "SlowFast-VOS (two-pathway streaming encoder, gated slow pathway)",
                       "edgevos.models.slowfast:build_slowfast", "edgevos.programs.slowfast:SlowFastProgram",
                       "edgevos.programs.slowfast:check_preset", _training="edgevos.train.slowfast:TRAINING",
                       # the gate's output is a decision against tau: in INT8 it flipped enough of them to cost
                       # 0.13 J&F at tau 0.8 (held-out six, int8-cpu) for a stage of ~0.1 ms
                       keep_float=("gate",)),
}


def get_family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise InputError(f"unknown model family '{name}': choose one of {sorted(FAMILIES)}") from None


def family_of(model) -> Family:
    """The family a PyTorch model belongs to: its ``family`` attribute (set by
    :meth:`Family.build`), else the family whose builder module defines its class."""
    name = getattr(model, "family", None)
    if name is not None:
        return get_family(name)
    module = type(model).__module__
    for fam in FAMILIES.values():
        if fam._build.split(":")[0] == module:
            return fam
    raise InputError(f"{type(model).__name__} ({module}) is no registered family's model: build it with "
                     f"get_family(name).build(...) or pass family= (one of {sorted(FAMILIES)})")
