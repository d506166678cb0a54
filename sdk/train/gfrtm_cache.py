"""G-FRTM-fast training's feature cache (see :mod:`edgevos.train.gfrtm`): every frame encoded once by
the frozen backbone, fp16 on disk, one file per sequence; flipped real frames encoded flipped;
half-resolution features for the half-resolution reuse path; augmented first frames per object."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgevos.errors import InputError

if TYPE_CHECKING:
    from edgevos.train.gfrtm import TrainConfig


def _resize_frame(img, hw):
    import cv2

    return cv2.resize(img, (hw[1], hw[0]), interpolation=cv2.INTER_AREA)


def _resize_mask(m, hw):
    import cv2

    return cv2.resize(m, (hw[1], hw[0]), interpolation=cv2.INTER_NEAREST)


def _encode(model, img):
    import torch

    x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))[None].astype(np.float32))
    f4, f8 = model.encode_low(x)
    f16, f32 = model.encode_high(f8)
    return [v[0].numpy().astype(np.float16) for v in (f4, f8, f16, f32)]


FEATS = ("f4", "f8", "f16", "f32")


def backbone_fingerprint(model) -> str:
    """A short hash of the frozen backbone's weights: which features a cache holds."""
    h = hashlib.sha256()
    for k, v in sorted(model.backbone.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().float().numpy().tobytes())
    return h.hexdigest()[:16]


def check_backbone(model, cache_dir: Path) -> None:
    """A feature cache is only valid for the backbone that made it: ``cache_dir/backbone.txt`` records
    it (written with the first entry); a model with another backbone is refused, since it would
    train on features it never computes at run time."""
    path = cache_dir / "backbone.txt"
    have = backbone_fingerprint(model)
    if path.is_file():
        want = path.read_text().strip()
        if want != have:
            raise InputError(f"feature cache {cache_dir} was made with another backbone (fingerprint {want}, this "
                             f"model's {have}): pass the --backbone-weights (or an --init checkpoint) it was made "
                             f"with, or a new --out")
    else:
        path.write_text(have + "\n")


def build_cache(model, sequences, cfg: TrainConfig, cache_dir: Path, real=None):
    """Encode every frame once with the frozen backbone; fp16 on disk, one file per sequence.

    Real sequences (``real[i]`` true) also get the features of their horizontally
    flipped frames (``f4_flip`` ...) when ``cfg.flip``: augmentations are encoded,
    never applied to feature maps.  Each orientation gets its own augmented first
    frames per object (``aug_f16_{obj}[_flip]``, ``aug_f8_{obj}[_flip]``) for the target model's initialisation.
    """
    import torch
    from tqdm import tqdm

    from edgevos.target_model import augment_first_frame

    cache_dir.mkdir(parents=True, exist_ok=True)
    check_backbone(model, cache_dir)
    real = [True] * len(sequences) if real is None else list(real)
    entries = []
    for seq, is_real in tqdm(list(zip(sequences, real)), desc="feature cache", unit="seq"):
        path = cache_dir / f"{seq.name}.npz"
        if path.is_file():
            flips = (False, True) if (cfg.flip and is_real) else (False,)
            if cfg.reuse_scale == 2 and not (cache_dir / f"{seq.name}.half.npz").is_file():
                _cache_half(model, seq, cfg, cache_dir, flips=flips)
            if cfg.reuse_refine and not (cache_dir / f"{seq.name}.imgh.npz").is_file():
                _cache_image_half(seq, cfg, cache_dir, flips)
            entries.append(path)
            continue
        n = len(seq) if not cfg.max_frames_per_sequence else min(len(seq), cfg.max_frames_per_sequence)
        flips = (False, True) if (cfg.flip and is_real) else (False,)
        arrays = {}
        masks = []
        frames = []
        for i in range(n):
            frames.append(_resize_frame(seq.frame(i), cfg.input_size))
            m = seq.mask(i)
            masks.append(_resize_mask(m, cfg.input_size) if m is not None else np.zeros(cfg.input_size, np.uint8))
        with torch.inference_mode():
            for flip in flips:
                sfx = "_flip" if flip else ""
                feats = {k: [] for k in FEATS}
                for img in frames:
                    for k, v in zip(FEATS, _encode(model, img[:, ::-1] if flip else img)):
                        feats[k].append(v)
                arrays.update({k + sfx: np.stack(v) for k, v in feats.items()})
                # augmented first frames, per object, for the target model's initialisation
                img0 = frames[0][:, ::-1] if flip else frames[0]
                m0 = masks[0][:, ::-1] if flip else masks[0]
                for obj in [int(i) for i in np.unique(m0) if i not in (0, 255)]:
                    a_f8, a_f16, a_lab = [], [], []
                    for img_a, m_a in augment_first_frame(np.ascontiguousarray(img0), (m0 == obj).astype(np.uint8),
                                                          cfg.num_augmentations, cfg.seed):
                        _, f8, f16, _ = _encode(model, img_a)
                        a_f8.append(f8)
                        a_f16.append(f16)
                        a_lab.append(m_a.astype(np.uint8))
                    arrays[f"aug_f16_{obj}{sfx}"] = np.stack(a_f16) if a_f16 else np.zeros((0,))
                    arrays[f"aug_f8_{obj}{sfx}"] = np.stack(a_f8) if a_f8 else np.zeros((0,))
                    arrays[f"aug_mask_{obj}{sfx}"] = np.stack(a_lab) if a_lab else np.zeros((0,))
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.npz")
        np.savez(tmp, masks=np.stack(masks), real=np.array(bool(is_real)), **arrays)
        os.replace(tmp, path)
        if cfg.reuse_scale == 2:
            _cache_half(model, seq, cfg, cache_dir, flips, frames)
        if cfg.reuse_refine:
            _cache_image_half(seq, cfg, cache_dir, flips, frames)
        entries.append(path)
    return entries


def _cache_half(model, seq, cfg: TrainConfig, cache_dir: Path, flips, frames=None):
    """Half-resolution features (h4 at stride 8, h8 at stride 16 of the model input) for the
    half-resolution gate and reuse path, in ``<name>.half.npz`` beside the sequence's cache."""
    import torch

    from edgevos.programs.base import resize_image

    n = len(seq) if not cfg.max_frames_per_sequence else min(len(seq), cfg.max_frames_per_sequence)
    if frames is None:
        frames = [_resize_frame(seq.frame(i), cfg.input_size) for i in range(n)]
    h, w = cfg.input_size
    arrays = {}
    with torch.inference_mode():
        for flip in flips:
            h4, h8 = [], []
            for img in frames:
                half = resize_image(np.ascontiguousarray(img[:, ::-1] if flip else img), (h // 2, w // 2))
                x = torch.from_numpy(np.ascontiguousarray(half.transpose(2, 0, 1))[None].astype(np.float32))
                a, b = model.encode_low(x)
                h4.append(a[0].numpy().astype(np.float16))
                h8.append(b[0].numpy().astype(np.float16))
            sfx = "_flip" if flip else ""
            arrays["h4" + sfx], arrays["h8" + sfx] = np.stack(h4), np.stack(h8)
    path = cache_dir / f"{seq.name}.half.npz"
    tmp = path.with_name(f".{seq.name}.half.{os.getpid()}.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def _cache_image_half(seq, cfg: TrainConfig, cache_dir: Path, flips, frames=None):
    """The half-resolution frames themselves (uint8, as the program feeds ``image_half``) for an
    image-guided reuse path, in ``<name>.imgh.npz`` beside the sequence's cache."""
    from edgevos.programs.base import resize_image

    n = len(seq) if not cfg.max_frames_per_sequence else min(len(seq), cfg.max_frames_per_sequence)
    if frames is None:
        frames = [_resize_frame(seq.frame(i), cfg.input_size) for i in range(n)]
    h, w = cfg.input_size
    arrays = {}
    for flip in flips:
        arrays["imgh" + ("_flip" if flip else "")] = np.stack(
            [resize_image(np.ascontiguousarray(img[:, ::-1] if flip else img), (h // 2, w // 2)) for img in frames])
    path = cache_dir / f"{seq.name}.imgh.npz"
    tmp = path.with_name(f".{seq.name}.imgh.{os.getpid()}.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def load_cache(entries):
    out = []
    for p in entries:
        c = dict(np.load(p)) | {"name": p.stem}
        for extra in (p.with_name(f"{p.stem}.half.npz"), p.with_name(f"{p.stem}.imgh.npz")):
            if extra.is_file():
                c.update(np.load(extra))
        out.append(c)
    return out


def _oriented(c, key, flip):
    """Array ``key`` of cache entry ``c`` for the given orientation (masks are flipped on the fly)."""
    if key == "masks":
        return c["masks"][..., ::-1] if flip else c["masks"]
    return c[key + ("_flip" if flip else "")]


def _orientations(c):
    return (False, True) if "f4_flip" in c else (False,)
