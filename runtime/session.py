"""Sessions: one tracked video, SAM 2's video-predictor shape.

``Session.from_bundle(dir, backend=...)`` loads a verified bundle and runs its
family's step program on ONNX Runtime, TensorRT or (reference) PyTorch;
``start(frame, mask)`` then ``step(frame)`` per frame.  The inference state is
explicit: ``session.program`` holds the per-object target models, templates,
previous scores and refiner states, and the reuse-gate run length.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from edgevos.errors import InputError
from edgevos.programs.base import StepResult

Result = StepResult


def check_tau(value) -> float:
    """``tau`` as a float in [0, 1]; InputError naming the value otherwise."""
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= float(value) <= 1.0:
        raise InputError(f"tau={value!r} must be a number from 0 to 1 (1 = never reuse), e.g. 0.7")
    return float(value)


def check_max_reuse(value) -> Optional[int]:
    """``max_reuse`` as None or an int >= 0; InputError naming the value otherwise."""
    import numbers

    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise InputError(f"max_reuse={value!r} must be a whole number >= 0 (or None: no limit)")
    return int(value)


class Session:
    """One tracked video: ``start(frame, mask)``, then ``step(frame)`` per frame.

    Args:
        make_program: ``(tau=..., max_reuse=...) -> program``: a fresh step program on the
            session's backend (``reset()`` calls it again).
        tau: reuse-gate threshold (1 = never reuse).
        max_reuse: force a computed frame after this many reuses (None: the weights' own cap, the longest
            gap their gate was trained on, when they record one).
        bundle: the bundle the backend runs, when there is one.
        backend: the backend the program runs its stages on.
    """

    def __init__(self, make_program, tau: float = 1.0, max_reuse: Optional[int] = None, bundle=None, backend=None):
        self._make_program = make_program
        self.program = make_program(tau=check_tau(tau), max_reuse=check_max_reuse(max_reuse))
        self.bundle = bundle
        self.backend = backend if backend is not None else self.program.backend
        self._started = False
        self.governor = None  # edgevos.runtime.budget.FpsGovernor while a target FPS is set

    @property
    def target_fps(self) -> Optional[float]:
        """FPS budget mode: when set, tau is steered live to hold this frame rate with the least reuse
        (``governor.summary()`` tells the achieved FPS, reuse rate and tau over time)."""
        return None if self.governor is None else self.governor.target_fps

    @target_fps.setter
    def target_fps(self, value: Optional[float]):
        from edgevos.runtime.budget import FpsGovernor

        self.governor = None if value is None else FpsGovernor(float(value), tau_max=1.0)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_bundle(cls, bundle_dir, backend: str = "onnxruntime", precision: Optional[str] = None,
                    tau: float = 1.0, threads: Optional[int] = None, max_reuse: Optional[int] = None,
                    **program_kwargs) -> "Session":
        """A verified bundle on a registered backend (:data:`edgevos.backend.BACKENDS`).

        Args:
            bundle_dir: bundle directory (from :func:`edgevos.export_bundle`).
            backend: ``onnxruntime``, ``tensorrt`` or ``torch`` (or another registered name).
            precision: the bundle precision to run (default: the backend's first it can load).
            tau: reuse-gate threshold (1 = never reuse).
            threads: CPU threads for the backend.
            max_reuse: force a computed frame after this many reuses (None: the weights' own cap, the longest
            gap their gate was trained on, when they record one).

        Returns:
            A session running the bundle family's step program on the backend.
        """
        from edgevos.backend import get_backend
        from edgevos.bundle import load_bundle
        from edgevos.models.registry import get_family

        entry = get_backend(backend)  # an unknown name fails before the bundle is read
        bundle = load_bundle(bundle_dir)
        be = entry.open(bundle, precision, threads)
        fam = get_family(bundle.family)
        make = lambda **kw: fam.make_program(be, bundle.config, **kw, **program_kwargs)  # noqa: E731
        return cls(make, tau, max_reuse, bundle, be)

    @classmethod
    def from_model(cls, model, tau: float = 1.0, threads: Optional[int] = None, max_reuse: Optional[int] = None,
                   family: Optional[str] = None, **program_kwargs) -> "Session":
        """The PyTorch reference on a model built by ``get_family(f).build(...)``.

        Args:
            model: the PyTorch model; it carries its family (``model.family``).
            tau: reuse-gate threshold (1 = never reuse).
            threads: torch intra-op threads.
            max_reuse: force a computed frame after this many reuses (None: the weights' own cap, the longest
            gap their gate was trained on, when they record one).
            family: the model's family, for a model that does not carry one.

        Returns:
            A session running the family's step program on PyTorch.
        """
        import dataclasses

        from edgevos.backend import TorchBackend
        from edgevos.models.registry import family_of, get_family

        fam = get_family(family) if family else family_of(model)
        be = TorchBackend(model.stage_modules(), model.stage_specs(), threads=threads)
        cfg = dataclasses.asdict(model.config)
        make = lambda **kw: fam.make_program(be, cfg, **kw, **program_kwargs)  # noqa: E731
        return cls(make, tau, max_reuse, None, be)

    @classmethod
    def from_weights(cls, family: str = "gfrtm", weights: Optional[str] = "default", input_size=(256, 448),
                     tau: float = 1.0, threads: Optional[int] = None, max_reuse: Optional[int] = None,
                     **program_kwargs) -> "Session":
        """The PyTorch reference on a family's checkpoint (needs torch).

        Args:
            family: model family name (``gfrtm``, ``slowfast``).
            weights: ``"default"`` (the shipped checkpoint) or a checkpoint path.
            input_size: model input (H, W) or ``"HxW"``.
            tau, threads, max_reuse: as for :meth:`from_model`.

        Returns:
            A session running the family's step program on PyTorch.
        """
        from edgevos.models.registry import get_family
        from edgevos.parsing import parse_hw

        size = parse_hw(input_size, "input_size") if isinstance(input_size, str) else tuple(input_size)
        model = get_family(family).build(weights=weights, input_size=size)
        return cls.from_model(model, tau=tau, threads=threads, max_reuse=max_reuse, **program_kwargs)

    # ------------------------------------------------------------------ API
    @property
    def tau(self) -> float:
        """The reuse-gate threshold: an object reuses features on a frame when the gate's
        probability is at or above it (1 = never reuse)."""
        return self.program.tau

    @tau.setter
    def tau(self, value: float):
        self.program.tau = check_tau(value)

    @property
    def max_reuse(self):
        """A computed frame is forced after this many reuses (None: no limit)."""
        return self.program.max_reuse

    @max_reuse.setter
    def max_reuse(self, value):
        self.program.max_reuse = check_max_reuse(value)

    @property
    def object_ids(self):
        """The ids of the tracked objects, in the order of ``StepResult.model_probs``."""
        return self.program.object_ids

    @property
    def supervised(self) -> bool:
        """False for an unsupervised model: ``start(frame)`` takes no mask, the model finds the object."""
        return bool(getattr(self.program, "semi", True))

    def start(self, frame: np.ndarray, mask: Optional[np.ndarray] = None) -> StepResult:
        """Begin a video on its first frame and that frame's object mask.

        Args:
            frame: (H, W, 3) uint8 RGB.
            mask: (H, W) integer object ids (0 background, 255 void), at the frame's size; None for
                an unsupervised model (:attr:`supervised` False), which finds the primary object itself.

        Returns:
            The first frame's :class:`~edgevos.programs.base.StepResult` (its mask is ``mask``).
        """
        res = self.program.start(frame, mask)
        self._started = True
        return res

    def step(self, frame: np.ndarray) -> StepResult:
        """Segment the next frame of the video.

        Args:
            frame: (H, W, 3) uint8 RGB, the size of the first frame.

        Returns:
            A :class:`~edgevos.programs.base.StepResult`: the id mask, per-object
            probabilities, whether features were reused, per-stage times.
        """
        if not self._started:
            raise InputError("step() called before start(): give the first frame and its mask to start()")
        if self.governor is None:
            return self.program.step(frame)
        self.program.tau = self.governor.tau
        res = self.program.step(frame)
        self.governor.observe(res.reused)
        return res

    def add_object(self, frame: np.ndarray, mask: np.ndarray) -> StepResult:
        """Add the objects of ``mask`` (ids not yet tracked) on ``frame``, which becomes a computed frame.

        Args:
            frame: (H, W, 3) uint8 RGB, the next frame of the video.
            mask: (H, W) object ids; the ids already tracked are ignored.

        Returns:
            The frame's :class:`~edgevos.programs.base.StepResult`, with every object.
        """
        if not self._started:
            return self.start(frame, mask)
        return self.program.add_objects(frame, mask)

    def remove_object(self, obj_id: int) -> None:
        """Stop tracking one object; InputError when it is not tracked.

        Args:
            obj_id: the object's id in the masks.
        """
        self.program.remove_object(obj_id)

    def reset(self) -> None:
        """Forget the video: a fresh step program (no objects, rings, cached features or
        reuse run) on the same backend, keeping ``tau`` and ``max_reuse``."""
        self.program = self._make_program(tau=self.program.tau, max_reuse=self.program.max_reuse)
        self._started = False
