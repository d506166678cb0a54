"""G-FRTM-fast's configuration (see :mod:`edgevos.models.gfrtm`): widths, decoder structure,
reuse path and gate-training constants, checked when made."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

from edgevos.errors import InputError

DECODERS = ("light", "frtm")

#: GfrtmConfig fields of the upstream structure at the published ResNet18 widths
#: (FRTM: 64 refiner channels, 96-channel target-model projection; Reuse_VOS: 64 key/value/output channels)
FRTM_PRESET = dict(backbone="resnet18", decoder="frtm", decoder_dim=64, embed_dim=64, dissim_dim=64, proj_dim=96)


REUSE_HEADS = ("stride8", "residual", "blend", "warp")


@dataclass(frozen=True)
class GfrtmConfig:
    backbone: str = "mobilenetv2"
    input_size: Tuple[int, int] = (480, 864)  # (H, W), multiples of 32
    decoder_dim: int = 32  # channels of the refinement network (levels 32, 16, 8)
    shallow_dim: int = 16  # channels of the light stride-4 level
    embed_dim: int = 32  # template-matching embedding channels
    dissim_dim: int = 64  # c_f: channels of the dissimilarity features D_t
    proj_dim: int = 32  # target model projection K (FRTM: 96 for ResNet18; MobileNetV2 f16 has only 96 channels)
    # encoder outputs the online target model reads, at stride 16: "f16" (FRTM: one backbone level),
    # optionally with "f32" (upsampled x2) and "f8" (area-pooled x2) stacked onto it
    target_inputs: Tuple[str, ...] = ("f16",)
    # "light": edgevos' light decoder; "frtm": the upstream structure (FRTM segmentation network,
    # Reuse_VOS template matching / gate / translator), so upstream checkpoints load (edgevos.models.upstream)
    decoder: str = "light"
    # light decoder: stride of the refiner state stored on computed frames and translated on
    # reused ones.  8 = after the stride-16 level's x2 upsampling; 16 = before it, as Reuse_VOS
    # stores and translates it (the refine-translator then costs a quarter).  Same decode_full
    # either way: only the place of one x2 upsampling moves.  ("frtm" is always 16.)
    refiner_stride: int = 8
    # 1: the gate and the reuse path run on encoder_low's f4/f8 (the paper's reuse path);
    # 2: on a half-resolution encoding of the frame (stage encoder_reuse), with a thin stride-8
    #    head, so a reused frame never runs the full-resolution encoder (light decoder,
    #    refiner_stride 16 only)
    reuse_scale: int = 1
    # reuse_scale 2 only, the thin stride-8 head of a reused frame:
    #   "stride8": stride-8 logits from the half-resolution features;
    #   "residual": a stride-8 correction added to the last computed frame's stride-4 logits (stage
    #     input ``prev_logits``), so a reused frame keeps the computed frame's stride-4 detail;
    #   "blend": stride-8 logits and a per-pixel weight w; logits = w * prev_logits + (1 - w) * up(stride-8),
    #     so the head copies the computed frame where nothing moved and re-derives the mask where it did
    #   "warp": "blend" whose copy of the computed frame's logits is first moved by a stride-8 motion
    #     field the head predicts (from a local correlation of the gate's embeddings of this frame and
    #     the computed one, its features and the computed logits), so an object that shifted or turned
    #     is copied where it now is instead of re-derived at stride 8 (stage inputs embed, prev_embed)
    reuse_head: str = "stride8"
    # reuse_head residual or blend only: channels of an image-guided refinement of a reused frame's
    # stride-4 logits (0: none). It reads the half-resolution image the reuse path already has
    # (pooled to stride 4), so a reused frame's mask follows the image's edges instead of the
    # stride-8 features' blur; a few 3x3 convs at stride 4, starting at a zero correction
    reuse_refine: int = 0
    # reuse_scale 2 only: where a computed frame's gate embedding (what the next frame's gate compares
    # with) comes from. "h8": the gate's own, so a computed frame also runs encoder_reuse + gate;
    # "f8": a stage ``gate_embed`` pools the computed frame's own f8 to stride 16 and embeds it, so a
    # frame that must compute anyway (max reuse reached, forced) skips encoder_reuse and the gate
    computed_embed: str = "h8"
    # reuse_head warp only: how far (stride-16 cells each way) the motion field's local correlation of the
    # gate's embeddings looks: (2r + 1)^2 displacements, each a slice, product and sum in the graph
    warp_radius: int = 3
    # the longest gap (frames since the last computed frame) the gate was trained to judge: phase 2's
    # --max-gap; the step program's default max_reuse (0: not recorded, no default cap)
    gate_max_gap: int = 0
    # the step program's default for its size rule: an object whose last computed mask covers more than this
    # share of the model input is always computed (1.0: no rule).  Near objects move and change outline the
    # most in pixels: the IoU a reused frame loses grows with the object's area (see the model card)
    reuse_max_area: float = 1.0
    # reuse-gate training (paper defaults)
    tau: float = 1.0
    m1: float = 1.0
    m2: float = 0.0
    ep_T: int = 120

    def __post_init__(self):
        h, w = self.input_size
        if h % 32 or w % 32 or h <= 0 or w <= 0:
            raise InputError(
                f"input_size {h}x{w} is not a positive multiple of 32: use e.g. 480x864 or 256x448"
            )

        if self.decoder not in DECODERS:
            raise InputError(f"decoder '{self.decoder}' is unknown: choose one of {sorted(DECODERS)}")
        if self.refiner_stride not in (8, 16):
            raise InputError(f"refiner_stride {self.refiner_stride} is not supported: use 8 or 16")
        if self.reuse_scale not in (1, 2):
            raise InputError(f"reuse_scale {self.reuse_scale} is not supported: use 1 (paper) or 2 (half-resolution reuse path)")
        if self.reuse_scale == 2 and (self.decoder != "light" or self.refiner_stride != 16):
            raise InputError(
                f"reuse_scale 2 needs the light decoder and refiner_stride 16 "
                f"(got decoder={self.decoder}, refiner_stride={self.refiner_stride})"
            )
        object.__setattr__(self, "target_inputs", tuple(self.target_inputs))
        if "f16" not in self.target_inputs or not set(self.target_inputs) <= {"f8", "f16", "f32"} \
                or len(set(self.target_inputs)) != len(self.target_inputs):
            raise InputError(f"target_inputs {list(self.target_inputs)}: use f16, optionally with f8 and f32 "
                             "(e.g. ['f16', 'f32'])")
        if self.reuse_head not in REUSE_HEADS:
            raise InputError(f"reuse_head '{self.reuse_head}' is unknown: choose one of {list(REUSE_HEADS)}")
        if self.reuse_head != "stride8" and self.reuse_scale != 2:
            raise InputError(f"reuse_head '{self.reuse_head}' needs reuse_scale 2 (the half-resolution reuse path)")
        if self.reuse_refine and self.reuse_head == "warp":
            raise InputError(f"reuse_refine {self.reuse_refine} does not combine with reuse_head 'warp': use 0 or "
                             f"reuse_head blend")
        if self.reuse_refine < 0 or (self.reuse_refine and self.reuse_head == "stride8"):
            raise InputError(f"reuse_refine {self.reuse_refine}: use 0 (none) or a channel count (e.g. 16) with "
                             f"reuse_head residual or blend (got {self.reuse_head})")

        if not 1 <= self.warp_radius <= 6:
            raise InputError(f"warp_radius {self.warp_radius} is out of range: use 1-6 (default 3: 49 displacements)")
        if self.computed_embed not in ("h8", "f8") or (self.computed_embed == "f8" and self.reuse_scale != 2):
            raise InputError(f"computed_embed '{self.computed_embed}': use 'h8', or 'f8' with reuse_scale 2 "
                             f"(got reuse_scale {self.reuse_scale})")

        if not 0.0 < self.reuse_max_area <= 1.0:
            raise InputError(f"reuse_max_area {self.reuse_max_area}: use a share of the frame in (0, 1] (1: no rule)")
        if self.gate_max_gap < 0:
            raise InputError(f"gate_max_gap {self.gate_max_gap}: use 0 (not recorded) or the phase-2 max gap")

    def sizes(self) -> Dict[str, Tuple[int, int]]:
        h, w = self.input_size
        return {s: (h // s, w // s) for s in (4, 8, 16, 32)} | {1: (h, w)}
