"""Online target model of FRTM-fast, fitted on the host with numpy.

Per object, on stride-16 features ``x`` of shape (C, h, w)::

    z = project * x          # 1x1 conv C -> K, no bias          (K, h, w)
    s = filter (*) z         # 3x3 conv K -> 1, no bias, pad 1   (h, w)   coarse score

fitted by minimising, over a memory of samples n with sample weights a_n,

    L = sum_n a_n * || sqrt(W_n) * (s_n - y_n) ||^2 + reg_p * ||project||^2 + reg_f * ||filter||^2

where y_n is the soft object mask at feature resolution and W_n the "hinge" pixel
weights (:func:`hinge_weights`).  FRTM computes the residual on the score
upsampled to the label size; here the residual lives at the feature resolution
(h, w) and the label is downsampled instead (:func:`resize_label`).  That keeps
every operation at 30x54 at 480p and makes the filter problem a small
least-squares problem whose normal matrix is only (9K, 9K).

First frame: the memory holds the frame and its augmentations; ``project``
starts from the principal directions of the features, ``filter`` from the
ridge solution of its centre tap; then Gauss-Newton steps with preconditioned
conjugate gradient (CG) fit both; ``project`` is then frozen.  Tracking: each
:meth:`TargetModel.update` adds (features, predicted soft mask) with exponential
forgetting; every ``update_every``-th call refits ``filter`` alone, which is
linear least squares, by warm-started CG.

Everything is plain numpy (float32 for the large products); Jacobian-vector
products are written out analytically, so no autograd is needed at run time.
Importing this module never imports torch.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from edgevos.errors import InputError
from edgevos.target_augment import augment_first_frame
from edgevos.target_filter import (
    filter_score,
    fit_filter_lstsq,
    hinge_weights,
    im2col,
    pcg,
    resize_label,
    shift_adjoint,
    shift_sum,
)

__all__ = [
    "TargetModelConfig",
    "TargetModel",
    "augment_first_frame",
    "fit_filter_lstsq",
    "hinge_weights",
    "resize_label",
    "init_objective",
]


@dataclass(frozen=True)
class TargetModelConfig:
    """FRTM-fast target-model settings (defaults are the paper's "fast" schedule).

    ``precond_project`` / ``precond_filter`` are added to the estimated diagonal of
    the Gauss-Newton matrix to form the diagonal CG preconditioner (with a zero
    diagonal estimate they reduce to upstream's constant preconditioner).
    ``refit_solver``: ``"normal"`` keeps the (9K, 9K) normal equations of the
    filter problem up to date as samples enter the memory, so a refit costs a
    few milliseconds whatever the memory size, at the price of one Gram product
    per added sample; ``"matrix_free"`` applies the normal operator through the
    stored samples at refit time (cheap updates, refit cost grows with memory).
    Both give the same iterates.  Rough costs at K=96, 30x54 features, one x86
    core: "normal" refit ~1 ms, update ~15 ms (~30 ms once the memory is full,
    as the replaced sample's Gram product is subtracted); "matrix_free" update
    ~1 ms, refit ~100 ms with 80 samples.
    """

    proj_dim: int = 96
    reg_project: float = 1e-4
    reg_filter: float = 1e-2
    tf: float = 0.1
    init_gn_steps: int = 4
    init_cg_iters: tuple = (5, 10, 10, 10)
    update_every: int = 8
    update_cg_iters: int = 5
    memory_size: int = 80
    learning_rate: float = 0.1
    num_augmentations: int = 5
    precond_project: float = 1e-4
    precond_filter: float = 1e-2
    min_fg_pixels: int = 10  # counted at image resolution: one label cell covers label_stride**2 pixels
    label_stride: int = 16  # image pixels per label cell along each axis (the features' stride)
    first_sample_weight: float = 2.0
    # several objects: the other objects' pixels weigh this many times more as this object's negatives
    # (first frame and online updates), so two similar objects' target models learn to tell them apart.
    # FRTM tracks one object (1.0). 20: identity swaps on the held-out multi-object composites 5.07% -> 2.01%
    # and 3.14% -> 1.09% (two networks), J&F +2.6 / +2.2 (benchmarks/results/2026-12-03-x86-cpu/multiobject_negatives_*)
    other_objects_weight: float = 20.0
    refit_solver: str = "normal"

    def __post_init__(self):
        if self.proj_dim < 1:
            raise InputError(f"proj_dim={self.proj_dim}: use a positive number of projected channels")
        if len(tuple(self.init_cg_iters)) != self.init_gn_steps:
            raise InputError(
                f"init_cg_iters={tuple(self.init_cg_iters)} has {len(tuple(self.init_cg_iters))} entries but "
                f"init_gn_steps={self.init_gn_steps}: give one CG iteration count per Gauss-Newton step"
            )
        if not 0.0 < self.learning_rate <= 1.0:
            raise InputError(f"learning_rate={self.learning_rate}: use a value in (0, 1]")
        if self.memory_size < 1 + self.num_augmentations:
            raise InputError(
                f"memory_size={self.memory_size} cannot hold the first frame and its "
                f"{self.num_augmentations} augmentations: use memory_size >= {1 + self.num_augmentations}"
            )
        if self.update_every < 1:
            raise InputError(f"update_every={self.update_every}: use 1 or more")
        if not 0.0 < self.tf < 1.0:
            raise InputError(f"tf={self.tf}: the target foreground influence must be in (0, 1)")
        if not self.other_objects_weight >= 1.0:
            raise InputError(f"other_objects_weight={self.other_objects_weight}: use 1 (plain FRTM weights) or more")
        if self.refit_solver not in ("normal", "matrix_free"):
            raise InputError(f"refit_solver={self.refit_solver!r}: use 'normal' or 'matrix_free'")


# --------------------------------------------------------------------------- helpers

def _check_feats(feats, what: str, channels: Optional[int] = None, hw=None) -> np.ndarray:
    a = np.asarray(feats)
    if a.ndim != 3:
        raise InputError(f"{what} has shape {a.shape}: pass stride-16 features of shape (C, h, w)")
    if channels is not None and a.shape[0] != channels:
        raise InputError(
            f"{what} has {a.shape[0]} channels (shape {a.shape}) but the target model was built for "
            f"in_channels={channels}: pass features from the same backbone level"
        )
    if hw is not None and tuple(a.shape[1:]) != tuple(hw):
        raise InputError(
            f"{what} has spatial size {a.shape[1]}x{a.shape[2]} (shape {a.shape}) but the model works at "
            f"{hw[0]}x{hw[1]}: keep the input size fixed for a session"
        )
    if not np.all(np.isfinite(a)):
        raise InputError(f"{what} (shape {a.shape}) contains NaN or inf")
    return np.ascontiguousarray(a, np.float32)


def _check_label(label, what: str, hw) -> np.ndarray:
    y = np.asarray(label)
    if y.ndim == 3 and y.shape[0] == 1:
        y = y[0]
    if y.shape != tuple(hw):
        raise InputError(
            f"{what} has shape {y.shape} but the features are {hw[0]}x{hw[1]}: resize the mask to the "
            f"feature size, e.g. edgevos.target_model.resize_label(mask, {tuple(hw)})"
        )
    y = y.astype(np.float32)
    if not np.all(np.isfinite(y)) or y.min(initial=0.0) < 0.0 or y.max(initial=0.0) > 1.0:
        raise InputError(f"{what} (shape {y.shape}) must hold values in [0, 1]")
    return np.ascontiguousarray(y)


# --------------------------------------------------------------------------- objective


def init_objective(project: np.ndarray, filter: np.ndarray, feats: Sequence[np.ndarray],
                   labels: Sequence[np.ndarray], sample_weights: Sequence[float],
                   cfg: TargetModelConfig = TargetModelConfig()) -> float:
    """The loss L of the module docstring for explicit parameters and samples (float64 sum).

    ``project`` (K, C), ``filter`` (1, K, 3, 3), ``feats`` list of (C, h, w),
    ``labels`` list of (h, w) soft masks, one sample weight per sample.
    """
    p = np.asarray(project, np.float32)
    f = np.asarray(filter, np.float32).reshape(p.shape[0], 9)
    x = np.stack([np.asarray(a, np.float32) for a in feats])
    y = np.stack([np.asarray(a, np.float32) for a in labels])
    n, c, h, w = x.shape
    z = np.matmul(p, x.reshape(n, c, h * w)).reshape(n, -1, h, w)
    s = filter_score(f, z)
    pw = np.stack([hinge_weights(a, cfg.tf, cfg.min_fg_pixels, cfg.label_stride ** 2) for a in y])
    a = np.asarray(sample_weights, np.float64).reshape(n, 1, 1)
    data = float(np.sum(a * pw * (s.astype(np.float64) - y) ** 2))
    return data + cfg.reg_project * float(np.sum(p.astype(np.float64) ** 2)) + \
        cfg.reg_filter * float(np.sum(f.astype(np.float64) ** 2))


# --------------------------------------------------------------------------- the model


class TargetModel:
    """One object's online target model (see the module docstring).

    Attributes ``project`` (K, C) and ``filter`` (1, K, 3, 3) are float32 arrays.
    State is explicit and copyable through :meth:`state_dict` / :meth:`load_state_dict`.
    """

    def __init__(self, cfg: TargetModelConfig, in_channels: int, seed: int = 0):
        if int(in_channels) < 1:
            raise InputError(f"in_channels={in_channels}: use the channel count of the stride-16 features")
        self.cfg = cfg
        self.in_channels = int(in_channels)
        self.seed = int(seed)
        k = cfg.proj_dim
        rng = np.random.default_rng(seed)
        self.project = (rng.standard_normal((k, self.in_channels)) / math.sqrt(self.in_channels)).astype(np.float32)
        self.filter = np.zeros((1, k, 3, 3), np.float32)
        self.initialized = False
        self.hw: Optional[Tuple[int, int]] = None
        self.num_calls = 0          # frames counted by update() since initialize()
        self.num_refits = 0
        self.init_loss_history: List[float] = []
        self._dirty = False         # memory changed since the last refit
        self._cls = None            # (9, C) = filter^T project, cached for classify()

    # ------------------------------------------------------------ properties
    @property
    def _f(self) -> np.ndarray:
        return self.filter.reshape(self.cfg.proj_dim, 9)

    @property
    def num_samples(self) -> int:
        return int(self._n) if self.initialized else 0

    @property
    def sample_weights(self) -> np.ndarray:
        """Current (normalised) weights of the stored samples, oldest slot first."""
        return self._a[:self.num_samples].copy() if self.initialized else np.zeros(0)

    # ------------------------------------------------------------ first frame
    def _weights(self, label: np.ndarray, others: Optional[np.ndarray], what: str) -> np.ndarray:
        """FRTM's hinge weights for one label, with the other objects' cells (``others``, soft, same
        shape) weighed ``other_objects_weight`` times as negatives."""
        cfg = self.cfg
        pw = hinge_weights(label, cfg.tf, cfg.min_fg_pixels, cfg.label_stride ** 2)
        if others is None or cfg.other_objects_weight == 1.0:
            return pw
        o = np.asarray(others, np.float32)
        if o.shape != label.shape or not np.isfinite(o).all():
            raise InputError(f"{what} has shape {o.shape} (or non-finite values): pass one finite share per "
                             f"label cell, shape {label.shape}")
        o = np.clip(o, 0.0, 1.0)  # shares summed in float may stray just outside [0, 1]
        return (pw * (1.0 + (cfg.other_objects_weight - 1.0) * o)).astype(np.float32)

    def initialize(self, feats: np.ndarray, label: np.ndarray, aug_feats: Optional[list] = None,
                   aug_labels: Optional[list] = None, others: Optional[np.ndarray] = None,
                   aug_others: Optional[list] = None) -> None:
        """Fit ``project`` and ``filter`` on the first frame and its augmentations; freeze ``project``.
        ``others`` / ``aug_others``: the other objects' share of each cell of the first frame / of each
        augmented sample (several objects), weighed as negatives ``other_objects_weight`` times."""
        cfg = self.cfg
        x0 = _check_feats(feats, "first-frame features", self.in_channels)
        hw = tuple(x0.shape[1:])
        y0 = _check_label(label, "first-frame label", hw)
        aug_feats = list(aug_feats or [])
        aug_labels = list(aug_labels or [])
        if len(aug_feats) != len(aug_labels):
            raise InputError(
                f"got {len(aug_feats)} augmented feature maps but {len(aug_labels)} augmented labels: "
                "pass one label per augmented sample"
            )
        if 1 + len(aug_feats) > cfg.memory_size:
            raise InputError(
                f"{1 + len(aug_feats)} first-frame samples do not fit memory_size={cfg.memory_size}: "
                "pass fewer augmentations or raise memory_size"
            )
        if float(y0.sum()) * cfg.label_stride ** 2 < cfg.min_fg_pixels:
            raise InputError(
                f"first-frame label (shape {y0.shape}) covers under {cfg.min_fg_pixels} image pixels: the object "
                "vanished at the feature resolution; draw it larger or skip this object"
            )
        if not (y0 > 0.5).any():  # an object smaller than a feature cell: its most covered cells are it
            y0 = y0 / y0.max()
        xs = [x0] + [_check_feats(a, f"augmented features[{i}]", self.in_channels, hw) for i, a in enumerate(aug_feats)]
        ys = [y0] + [_check_label(a, f"augmented label[{i}]", hw) for i, a in enumerate(aug_labels)]
        n = len(xs)
        h, w = hw
        c, k = self.in_channels, cfg.proj_dim
        x = np.stack(xs).reshape(n, c, h * w)
        y = np.stack(ys).reshape(n, h * w)
        aug_others = list(aug_others) if aug_others is not None else [None] * (n - 1)
        if len(aug_others) != n - 1:
            raise InputError(f"got {len(aug_others)} augmented 'others' maps for {n - 1} augmented samples: pass "
                             "one per sample (or none)")
        pw = np.stack([self._weights(y0, others, "others (first frame)")]
                      + [self._weights(a, o, f"others (augmented sample {i})")
                         for i, (a, o) in enumerate(zip(ys[1:], aug_others))]).reshape(n, h * w)
        a = np.ones(n, np.float64)
        a[0] = cfg.first_sample_weight
        a /= a.sum()
        wa = (pw * a[:, None]).astype(np.float32)  # per-pixel weights including the sample weight

        proj = self._pca_project(x0.reshape(c, h * w))
        z = np.matmul(proj, x)  # (n, K, hw)
        filt = self._centre_tap_filter(z, y, wa)
        proj, filt = self._balance(proj, filt)

        self.init_loss_history = []
        proj, filt = self._gauss_newton(proj, filt, x, y, wa, hw)

        self.project = np.ascontiguousarray(proj, np.float32)
        self.filter = np.ascontiguousarray(filt.reshape(1, k, 3, 3), np.float32)
        self.hw = hw
        self._alloc_memory(hw)
        z = np.matmul(self.project, x).reshape(n, k, h, w)
        for i in range(n):
            self._store(i, z[i], ys[i], pw[i].reshape(h, w), compute_gram=False)
        self._a[:n] = a
        self._n = n
        self._pending = list(range(n)) if cfg.refit_solver == "normal" else []
        self._dirty = False
        self.num_calls = 0
        self.num_refits = 0
        self.initialized = True
        self._cls = None

    def _pca_project(self, x0: np.ndarray) -> np.ndarray:
        """Rows = leading eigenvectors of the (uncentred) feature second moment of the first frame."""
        c, k = x0.shape[0], self.cfg.proj_dim
        cov = (x0 @ x0.T).astype(np.float64) / x0.shape[1]
        evals, evecs = np.linalg.eigh(cov)
        order = np.argsort(evals)[::-1]
        rows = evecs[:, order[:min(k, c)]].T
        if k > c:  # more projected channels than inputs: fill with small random directions
            rng = np.random.default_rng(self.seed)
            extra = rng.standard_normal((k - c, c)) * (1e-2 / math.sqrt(c))
            rows = np.concatenate([rows, extra], 0)
        return rows.astype(np.float32)

    def _centre_tap_filter(self, z: np.ndarray, y: np.ndarray, wa: np.ndarray) -> np.ndarray:
        """Ridge solution for the centre tap alone (a 1x1 filter): a K x K system."""
        k = z.shape[1]
        zt = np.ascontiguousarray(z.transpose(1, 0, 2)).reshape(k, -1)  # (K, n*hw)
        zw = zt * np.sqrt(wa).reshape(1, -1)
        g = (zw @ zw.T).astype(np.float64) + self.cfg.reg_filter * np.eye(k)
        rhs = (zt @ (wa * y).reshape(-1)).astype(np.float64)
        centre = np.linalg.solve(g, rhs)
        filt = np.zeros((k, 9), np.float32)
        filt[:, 4] = centre
        return filt

    def _balance(self, proj: np.ndarray, filt: np.ndarray):
        """Rescale (alpha*project, filter/alpha) so both regularisers are equal (the score is unchanged)."""
        rp = self.cfg.reg_project * float(np.sum(proj.astype(np.float64) ** 2))
        rf = self.cfg.reg_filter * float(np.sum(filt.astype(np.float64) ** 2))
        if rp > 0 and rf > 0:
            alpha = (rf / rp) ** 0.25
            proj, filt = proj * np.float32(alpha), filt / np.float32(alpha)
        return proj, filt

    def _gauss_newton(self, proj, filt, x, y, wa, size):
        """Gauss-Newton on (project, filter) with ``init_cg_iters`` PCG iterations per step."""
        cfg = self.cfg
        n, c, hw = x.shape
        h, w = size
        k = cfg.proj_dim
        # flat layouts: (C+K, n*hw) stacks features and projected features for one matmul each way
        x_flat = np.ascontiguousarray(x.transpose(1, 0, 2)).reshape(c, n * hw)
        y_flat = y.reshape(n, h, w)
        wa_img = wa.reshape(n, h, w)
        n_p = k * c
        xw2 = (x_flat ** 2 @ wa.reshape(-1)).astype(np.float64)  # (C,) sum_n,p a W x_c^2

        def unpack(v):
            return v[:n_p].reshape(k, c), v[n_p:].reshape(k, 9)

        for step in range(cfg.init_gn_steps):
            z_flat = proj @ x_flat  # (K, n*hw)
            s = shift_sum((filt.T @ z_flat).reshape(9, n, h, w))
            e = s - y_flat
            self.init_loss_history.append(self._objective_value(e, wa_img, proj, filt))
            tx = shift_adjoint(wa_img * e).reshape(9, n * hw) @ x_flat.T  # (9, C)
            grad = np.concatenate([(filt @ tx + cfg.reg_project * proj).ravel(),
                                   ((tx @ proj.T).T + cfg.reg_filter * filt).ravel()])

            # J (dP, dF) = shift_sum((F^T dP + dF^T P) X): z = P X is never materialised in the loop,
            # so each CG product streams X once each way.
            def apply_a(v, filt_now=filt, proj_now=proj):
                dp, df = unpack(v)
                ds = shift_sum(((filt_now.T @ dp + df.T @ proj_now) @ x_flat).reshape(9, n, h, w))
                tt = shift_adjoint(wa_img * ds).reshape(9, n * hw) @ x_flat.T  # (9, C)
                return np.concatenate([(filt_now @ tt + cfg.reg_project * dp).ravel(),
                                       ((tt @ proj_now.T).T + cfg.reg_filter * df).ravel()])

            # diagonal preconditioner: separable estimate for project, exact diagonal for filter
            diag_p = np.outer((filt.astype(np.float64) ** 2).sum(1), xw2) + cfg.reg_project + cfg.precond_project
            tw = shift_adjoint(wa_img).reshape(9, n * hw)
            diag_f = (tw @ (z_flat ** 2).T).T.astype(np.float64) + cfg.reg_filter + cfg.precond_filter
            minv = (1.0 / np.concatenate([diag_p.ravel(), diag_f.ravel()])).astype(np.float32)
            delta = pcg(apply_a, -grad, np.zeros_like(grad), minv, cfg.init_cg_iters[step])
            dp, df = unpack(delta)
            proj = proj + dp
            filt = filt + df
        z_flat = proj @ x_flat
        e = shift_sum((filt.T @ z_flat).reshape(9, n, h, w)) - y_flat
        self.init_loss_history.append(self._objective_value(e, wa_img, proj, filt))
        return proj, filt

    def _objective_value(self, e, wa_img, proj, filt) -> float:
        cfg = self.cfg
        return float(np.sum(wa_img.astype(np.float64) * e.astype(np.float64) ** 2)) + \
            cfg.reg_project * float(np.sum(proj.astype(np.float64) ** 2)) + \
            cfg.reg_filter * float(np.sum(filt.astype(np.float64) ** 2))

    # ------------------------------------------------------------ memory
    def _alloc_memory(self, hw) -> None:
        cap, k = self.cfg.memory_size, self.cfg.proj_dim
        h, w = hw
        self._z = np.zeros((cap, k, h, w), np.float32)      # projected features (project is frozen)
        self._y = np.zeros((cap, h, w), np.float32)         # soft labels
        self._pw = np.zeros((cap, h, w), np.float32)        # hinge pixel weights
        self._b = np.zeros((cap, 9 * k), np.float64)        # per-sample J^T W y
        self._d = np.zeros((cap, 9 * k), np.float64)        # per-sample diag(J^T W J)
        self._c = np.zeros(cap, np.float64)                 # per-sample sum W y^2
        self._a = np.zeros(cap, np.float64)                 # sample weights (sum 1)
        self._n = 0
        self._s = np.zeros((9 * k, 9 * k), np.float64) if self.cfg.refit_solver == "normal" else None
        self._pending: List[int] = []                       # slots whose Gram is not yet in _s

    def _store(self, slot: int, z: np.ndarray, y: np.ndarray, pw: np.ndarray, compute_gram: bool):
        k = self.cfg.proj_dim
        h, w = y.shape
        self._z[slot], self._y[slot], self._pw[slot] = z, y, pw
        zf = z.reshape(k, h * w)
        self._b[slot] = (shift_adjoint(pw * y).reshape(9, h * w) @ zf.T).T.ravel()
        self._d[slot] = (shift_adjoint(pw).reshape(9, h * w) @ (zf * zf).T).T.ravel()
        self._c[slot] = float(np.sum(pw.astype(np.float64) * y.astype(np.float64) ** 2))
        return self._gram(slot) if compute_gram else None

    def _gram(self, slot: int) -> np.ndarray:
        """(9K, 9K) normal matrix of one sample: im2col(z) W im2col(z)^T."""
        col = im2col(self._z[slot]) * np.sqrt(self._pw[slot]).reshape(1, -1)
        return (col @ col.T).astype(np.float64)

    def _add_sample(self, z: np.ndarray, y: np.ndarray, pw: np.ndarray) -> None:
        lr = self.cfg.learning_rate
        normal = self._s is not None
        if self._n < self.cfg.memory_size:
            slot, replaced = self._n, False
        else:
            slot, replaced = int(np.argmin(self._a[:self._n])), True
        if replaced and normal:
            if slot in self._pending:
                self._pending.remove(slot)
            else:
                self._s -= self._a[slot] * self._gram(slot)
        gram = self._store(slot, z, y, pw, compute_gram=normal)
        a = self._a
        a *= 1.0 - lr
        a[slot] = lr
        total = float(a.sum())
        a /= total
        if normal:
            self._s *= (1.0 - lr) / total
            self._s += (lr / total) * gram
        self._n = max(self._n, slot + 1)
        self._dirty = True

    def _flush_pending(self, limit: Optional[int] = None) -> None:
        while self._pending and (limit is None or limit > 0):
            slot = self._pending.pop(0)
            self._s += self._a[slot] * self._gram(slot)
            if limit is not None:
                limit -= 1

    def memory(self) -> Dict[str, np.ndarray]:
        """Copies of the stored samples: projected features, labels, pixel and sample weights."""
        n = self.num_samples
        if not self.initialized:
            raise InputError("the target model has no memory yet: call initialize() first")
        return {"z": self._z[:n].copy(), "labels": self._y[:n].copy(),
                "pixel_weights": self._pw[:n].copy(), "sample_weights": self._a[:n].copy()}

    # ------------------------------------------------------------ tracking
    def classify(self, feats: np.ndarray) -> np.ndarray:
        """Coarse target score (h, w) float32 for stride-16 features (C, h, w)."""
        if not self.initialized:
            raise InputError("classify() called before initialize(): fit the model on the first frame first")
        x = _check_feats(feats, "features", self.in_channels, self.hw)
        if self._cls is None:
            self._cls = (self._f.T @ self.project).astype(np.float32)  # (9, C)
        h, w = self.hw
        u = self._cls @ x.reshape(self.in_channels, h * w)
        return shift_sum(u.reshape(9, h, w))

    def update(self, feats: np.ndarray, soft_label: np.ndarray, frames: int = 1,
               others: Optional[np.ndarray] = None) -> bool:
        """Add (features, soft mask) to the memory and refit the filter every ``update_every`` frames.

        The sample is added only if its label cells > 0.5 cover at least ``min_fg_pixels`` image pixels.
        ``frames`` is the number of frames since the previous update (1 when every frame updates; more
        when a program reused the frames in between and had no features for them): the refit happens
        when the frame count crosses ``update_every``, ``2 * update_every``, ... if a sample was added
        since the previous refit, so reused frames do not stretch the refit interval.  Returns whether
        the filter was refit.  ``others``: the other objects' share of each cell (several objects),
        weighed as negatives ``other_objects_weight`` times.
        """
        if not self.initialized:
            raise InputError("update() called before initialize(): fit the model on the first frame first")
        if isinstance(frames, bool) or not isinstance(frames, (int, np.integer)) or frames < 1:
            raise InputError(f"frames={frames!r}: pass the number of frames since the previous update (1 or more)")
        x = _check_feats(feats, "features", self.in_channels, self.hw)
        y = _check_label(soft_label, "soft label", self.hw)
        before = self.num_calls // self.cfg.update_every
        self.num_calls += int(frames)
        if int((y > 0.5).sum()) * self.cfg.label_stride ** 2 >= self.cfg.min_fg_pixels:
            h, w = self.hw
            z = (self.project @ x.reshape(self.in_channels, h * w)).reshape(-1, h, w)
            self._add_sample(z, y, self._weights(y, others, "others"))
            if self._s is not None:
                self._flush_pending(limit=1)  # spread the first-frame Gram products over early frames
        if self.num_calls // self.cfg.update_every > before and self._dirty:
            self.refit()
            return True
        return False

    def refit(self, cg_iters: Optional[int] = None) -> None:
        """Re-optimise ``filter`` on the memory (linear least squares) by warm-started PCG."""
        if not self.initialized:
            raise InputError("refit() called before initialize()")
        cfg = self.cfg
        n = self._n
        a = self._a[:n]
        rhs = a @ self._b[:n]
        minv = 1.0 / (a @ self._d[:n] + cfg.reg_filter + cfg.precond_filter)
        if self._s is not None:
            self._flush_pending()
            s_mat = self._s

            def apply_a(v):
                return s_mat @ v + cfg.reg_filter * v

            x0 = self._f.astype(np.float64).ravel()
        else:
            apply_a = self._apply_normal_matrix_free
            rhs, minv = rhs.astype(np.float32), minv.astype(np.float32)
            x0 = self._f.ravel().copy()
        iters = cfg.update_cg_iters if cg_iters is None else cg_iters
        f = pcg(apply_a, rhs, x0, minv, iters)
        self.filter = f.astype(np.float32).reshape(1, cfg.proj_dim, 3, 3)
        self._cls = None
        self._dirty = False
        self.num_refits += 1

    def _apply_normal_matrix_free(self, v: np.ndarray) -> np.ndarray:
        k = self.cfg.proj_dim
        n = self._n
        h, w = self.hw
        z = self._z[:n]
        s = filter_score(v.reshape(k, 9).astype(np.float32), z)  # (n, h, w)
        g = s * self._pw[:n] * self._a[:n].astype(np.float32).reshape(n, 1, 1)
        t = shift_adjoint(g).reshape(9, n, h * w).transpose(1, 0, 2)  # (n, 9, hw)
        m = np.matmul(t, z.reshape(n, k, h * w).transpose(0, 2, 1)).sum(0)  # (9, K)
        return m.T.ravel() + self.cfg.reg_filter * v

    def loss(self, filter: Optional[np.ndarray] = None) -> float:
        """The objective on the current memory (project frozen), for ``filter`` or the current one."""
        if not self.initialized:
            raise InputError("loss() needs a memory: call initialize() first")
        k, n = self.cfg.proj_dim, self._n
        f = self._f if filter is None else np.asarray(filter, np.float32).reshape(k, 9)
        s = filter_score(f, self._z[:n])
        a = self._a[:n].reshape(n, 1, 1)
        data = float(np.sum(a * self._pw[:n] * (s.astype(np.float64) - self._y[:n]) ** 2))
        return data + self.cfg.reg_project * float(np.sum(self.project.astype(np.float64) ** 2)) + \
            self.cfg.reg_filter * float(np.sum(f.astype(np.float64) ** 2))

    # ------------------------------------------------------------ state
    def state_dict(self) -> dict:
        """Everything needed to continue the session, as numpy arrays and plain values (copies)."""
        d = {"config": dataclasses.asdict(self.cfg), "in_channels": self.in_channels, "seed": self.seed,
             "project": self.project.copy(), "filter": self.filter.copy(), "initialized": self.initialized,
             "num_calls": self.num_calls, "num_refits": self.num_refits,
             "init_loss_history": list(self.init_loss_history)}
        if self.initialized:
            n = self._n
            d.update(hw=tuple(self.hw), z=self._z[:n].copy(), labels=self._y[:n].copy(),
                     pixel_weights=self._pw[:n].copy(), b=self._b[:n].copy(), diag=self._d[:n].copy(),
                     c=self._c[:n].copy(), sample_weights=self._a[:n].copy(), dirty=self._dirty,
                     pending=list(self._pending),
                     normal_matrix=None if self._s is None else self._s.copy())
        return d

    def load_state_dict(self, d: dict) -> None:
        cfg = self.cfg
        if int(d.get("in_channels", -1)) != self.in_channels:
            raise InputError(f"state has in_channels={d.get('in_channels')} but this model has {self.in_channels}")
        proj = np.asarray(d["project"], np.float32)
        filt = np.asarray(d["filter"], np.float32)
        if proj.shape != (cfg.proj_dim, self.in_channels) or filt.shape != (1, cfg.proj_dim, 3, 3):
            raise InputError(
                f"state has project {proj.shape} / filter {filt.shape} but this model expects "
                f"{(cfg.proj_dim, self.in_channels)} / {(1, cfg.proj_dim, 3, 3)}: use the same proj_dim"
            )
        self.project, self.filter = proj.copy(), filt.copy()
        self.num_calls, self.num_refits = int(d["num_calls"]), int(d["num_refits"])
        self.init_loss_history = list(d.get("init_loss_history", []))
        self.initialized = bool(d["initialized"])
        self._cls = None
        if not self.initialized:
            return
        self.hw = tuple(int(v) for v in d["hw"])
        n = len(d["sample_weights"])
        if n > cfg.memory_size:
            raise InputError(f"state holds {n} samples but memory_size={cfg.memory_size}")
        self._alloc_memory(self.hw)
        self._z[:n], self._y[:n], self._pw[:n] = d["z"], d["labels"], d["pixel_weights"]
        self._b[:n], self._d[:n], self._c[:n], self._a[:n] = d["b"], d["diag"], d["c"], d["sample_weights"]
        self._n = n
        self._dirty = bool(d["dirty"])
        if self._s is not None:
            if d.get("normal_matrix") is not None:
                self._s[:] = d["normal_matrix"]
                self._pending = [int(i) for i in d.get("pending", [])]
            else:  # saved by a matrix-free model: rebuild lazily
                self._pending = list(range(n))
