"""G-FRTM-fast: FRTM-fast with the learned reuse gate (Park et al.; Robinson et al.).

The network is a set of *stages* (pure tensor functions with fixed shapes) that
the host-side step program (:mod:`edgevos.programs.gfrtm`) calls per frame:

=================  =================================================  ========================
stage              inputs -> outputs                                  runs on
=================  =================================================  ========================
``encoder_low``    image -> f4, f8                                    every frame
``encoder_high``   f8 -> f16, f32                                     computed frames
``gate_template``  f8, mask8 -> template, embed                       first frame, per object
``gate``           f8, prev_score, template, prev_embed               every frame, per object
                   -> p_gate, delta, embed                            (skipped when tau = 1)
``decoder_full``   f4, f8, f16, f32, score -> logits, r8              computed frames
``decoder_reuse``  f4, f8, r8_prev, prev_score, delta -> logits       reused frames
=================  =================================================  ========================

With ``reuse_scale=2`` (the v2 reuse path) the gate and the reuse path never touch
the full-resolution encoder: ``encoder_reuse`` encodes a half-resolution copy of the
frame (image/2 -> h4 at stride 8, h8 at stride 16, same backbone weights), the gate
matches ``h8`` against a template made the same way, and ``decoder_reuse`` turns the
translated stride-16 refiner state and ``h4`` into stride-8 logits:

=================  =================================================  ========================
``encoder_reuse``  image_half -> h4, h8                               every frame (tau < 1)
``gate_template``  h8, mask16 -> template, embed                      first frame, per object
``gate``           h8, prev_score, template, prev_embed               every frame, per object
                   -> p_gate, delta, embed
``decoder_reuse``  h4, r8_prev, prev_score, delta -> logits           reused objects
``gate_embed``     f8 -> embed                                        computed frames (tau < 1,
                                                                      ``computed_embed='f8'``)
=================  =================================================  ========================

A reused frame then costs the half-resolution encoder (a quarter of ``encoder_low``),
the gate and a thin stride-8 head.

The online target model (1x1 projection + 3x3 filter on f16) is fitted on the
host by :mod:`edgevos.target_model` and produces ``score``.  ``decoder_full``
and ``decoder_reuse`` share the shallow refinement levels (stride 8 and 4), as
in the paper's Figure 2: the reuse path replaces levels 32/16 by the
refine-translator applied to the stored stride-8 refiner state ``r8``.

Here: the model, its stages and the builder; the configuration is
:mod:`edgevos.models.gfrtm_config`, the segmentation network's blocks
:mod:`edgevos.models.gfrtm_layers`, the reuse path's :mod:`edgevos.models.gfrtm_heads`
(their names stay importable from here).
"""
from __future__ import annotations

from typing import Dict, List

import torch
import torch.nn.functional as F
from torch import nn

from edgevos.errors import InputError
from edgevos.models.backbones import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    imagenet_normalization,
    backbone_channels,
    build_backbone,
    freeze,
    load_torchvision_weights,
)
from edgevos.models.gfrtm_config import DECODERS, FRTM_PRESET, REUSE_HEADS, GfrtmConfig
from edgevos.models.gfrtm_heads import (
    AdaptivePoolGate,
    DeltaGenerator,
    FrtmTranslator,
    ImageGuidedRefine,
    ReuseWarp,
    KeyValueTemplateMatcher,
    RefineTranslator,
    ReuseGate,
    TemplateMatcher,
    adaptive_max_pool_static,
)
from edgevos.models.gfrtm_layers import (
    CAB,
    RRB,
    TSE,
    Bicubic2x,
    FrtmCAB,
    FrtmLevel,
    FrtmPredict,
    FrtmRRB,
    FrtmTSE,
    LightLevel,
    RefineLevel,
    conv,
    resize_to,
)
from edgevos.stages import StageSpec, TensorSpec

# the configuration, layers and heads keep their import path here
__all__ = [
    "GFRTM", "build_gfrtm", "GfrtmConfig", "DECODERS", "FRTM_PRESET", "REUSE_HEADS",
    "conv", "TSE", "CAB", "RRB", "RefineLevel", "LightLevel", "resize_to", "FrtmTSE", "FrtmRRB", "FrtmCAB",
    "FrtmLevel", "Bicubic2x", "FrtmPredict",
    "RefineTranslator", "TemplateMatcher", "ReuseGate", "DeltaGenerator", "FrtmTranslator", "KeyValueTemplateMatcher",
    "adaptive_max_pool_static", "AdaptivePoolGate",
    "IMAGENET_MEAN", "IMAGENET_STD", "imagenet_normalization", "backbone_channels", "build_backbone", "freeze",
    "load_torchvision_weights",
]


# ----------------------------------------------------------------------------- the model
class GFRTM(nn.Module):
    def __init__(self, cfg: GfrtmConfig):
        super().__init__()
        self.config = cfg
        ch = backbone_channels(cfg.backbone)
        d = cfg.decoder_dim
        self.backbone = freeze(build_backbone(cfg.backbone))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255.0, persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255.0, persistent=False)
        if cfg.decoder == "frtm":
            self._build_frtm(cfg, ch)
            return
        # segmentation network, deep (32, 16) and shallow (8, 4) levels
        self.level32 = RefineLevel(ch["f32"], d, has_deeper=False)
        self.level16 = RefineLevel(ch["f16"], d)
        self.level8 = RefineLevel(ch["f8"], d)
        self.level4 = LightLevel(ch["f4"], d, cfg.shallow_dim)
        self.predict = nn.Conv2d(cfg.shallow_dim, 1, 3, 1, 1)
        # reuse path
        self.matcher = TemplateMatcher(ch["f8"], cfg.embed_dim, cfg.dissim_dim)
        self.gate = ReuseGate(cfg.dissim_dim)
        self.delta = DeltaGenerator(cfg.dissim_dim, stride=2 if cfg.reuse_scale == 1 else 1)
        self.translator = RefineTranslator(d)
        if cfg.reuse_scale == 2:  # the thin stride-8 head of the half-resolution reuse path
            self.reuse_level = LightLevel(ch["f4"], d, cfg.shallow_dim)
            self.reuse_predict = nn.Conv2d(cfg.shallow_dim, 2 if cfg.reuse_head in ("blend", "warp") else 1, 3, 1, 1)
            if cfg.reuse_head == "warp":
                self.reuse_warp = ReuseWarp(cfg.shallow_dim, radius=cfg.warp_radius)  # reads the gate's embeddings too
            if cfg.reuse_refine:
                self.reuse_refine = ImageGuidedRefine(cfg.reuse_refine)
            if cfg.computed_embed == "f8":  # a computed frame's gate embedding from its own f8
                self.embed_full = nn.Sequential(conv(ch["f8"], cfg.embed_dim, 1),
                                                nn.Conv2d(cfg.embed_dim, cfg.embed_dim, 1))
                self.embed_full.load_state_dict(self.matcher.embed.state_dict())

    def _build_frtm(self, cfg: GfrtmConfig, ch: Dict[str, int]):
        """The upstream structure: four full FRTM levels (32 -> 4), FRTM's bicubic prediction head,
        Reuse_VOS' matcher / gate / delta / translator.  The refiner state handed from the deep to
        the shallow levels (``r8``) is the stride-16 level's output, at stride 16 as upstream."""
        d = cfg.decoder_dim
        self.level32 = FrtmLevel(ch["f32"], d)
        self.level16 = FrtmLevel(ch["f16"], d)
        self.level8 = FrtmLevel(ch["f8"], d)
        self.level4 = FrtmLevel(ch["f4"], d)
        self.predict = FrtmPredict(d)
        self.matcher = KeyValueTemplateMatcher(ch["f8"], cfg.embed_dim, cfg.embed_dim, cfg.dissim_dim)
        self.gate = AdaptivePoolGate(cfg.dissim_dim)
        self.delta = DeltaGenerator(cfg.dissim_dim)
        self.translator = FrtmTranslator(d)

    @property
    def frtm(self) -> bool:
        return self.config.decoder == "frtm"

    @property
    def normalization(self) -> dict:
        return imagenet_normalization()

    # -- pieces -------------------------------------------------------------------------
    def encode_low(self, image):
        return self.backbone.forward_low((image - self.mean) / self.std)

    def encode_high(self, f8):
        return self.backbone.forward_high(f8)

    @staticmethod
    def _resize(x, ref):
        return F.interpolate(x, size=ref.shape[-2:], mode="bilinear", align_corners=False)

    def deep_levels(self, f16, f32, score):
        if self.frtm:
            return self.level16(f16, score, self.level32(f32, score, None))  # (B, D, H/16, W/16)
        x = self.level32(f32, self._resize(score, f32), None)
        # the refiner state: (B, D, H/8, W/8), or (B, D, H/16, W/16) before the x2 upsampling
        return self.level16(f16, score, x, upsample=self.config.refiner_stride == 8)

    def shallow_levels(self, f4, f8, score, r8):
        if self.frtm:
            return self.predict(self.level4(f4, score, self.level8(f8, score, r8)))  # logits (B, 1, H, W)
        if self.config.refiner_stride == 16:
            r8 = F.interpolate(r8, scale_factor=2.0, mode="bilinear", align_corners=False)
        x = self.level8(f8, self._resize(score, f8), r8)
        x = self.level4(f4, self._resize(score, f4), x)  # (B, D4, H/4, W/4)
        # logits stay at stride 4: the host resizes them once, straight to the frame's size
        return self.predict(x)

    def decode_full(self, f4, f8, f16, f32, score):
        r8 = self.deep_levels(f16, f32, score)
        return self.shallow_levels(f4, f8, score, r8), r8

    @property
    def reads_prev_logits(self) -> bool:
        """The reuse path reads the last computed frame's logits (``reuse_head`` residual, blend or warp)."""
        return self.config.reuse_head in ("residual", "blend", "warp")

    def decode_reuse_half(self, h4, r_prev, prev_score, delta, prev_logits=None, image_half=None, parts=None,
                          embed=None, prev_embed=None):
        """The half-resolution reuse path: translated stride-16 state + h4 (stride 8) -> stride-8 logits,
        or, with a ``reuse_head`` that reads ``prev_logits`` (the last computed frame's stride-4 logits),
        stride-4 logits made from them (see :class:`GfrtmConfig`), corrected from ``image_half`` (RGB
        0..255, the reuse path's input) when ``reuse_refine``; the ``warp`` head also reads the gate's
        embeddings of this frame and of the last computed one (``embed``, ``prev_embed``).  ``parts`` (a
        dict, training): receives the ``warp`` head's moved logits under "warped"."""
        score = prev_score + delta
        r = self.translator(r_prev, delta)  # (B, D, H/16, W/16)
        r = F.interpolate(r, scale_factor=2.0, mode="bilinear", align_corners=False)
        x = self.reuse_level(h4, self._resize(score, h4), r)
        out = self.reuse_predict(x)  # (B, 1 or 2, H/8, W/8)
        head = self.config.reuse_head
        if head == "stride8":
            return out
        up = F.interpolate(out, size=prev_logits.shape[-2:], mode="bilinear", align_corners=False)
        if head == "warp":  # the computed frame's logits, moved to where the object now is
            prev_logits = self.reuse_warp(x, prev_logits, embed, prev_embed)
            if parts is not None:
                parts["warped"] = prev_logits
        if head == "residual":
            out = prev_logits + up
        else:
            w = torch.sigmoid(up[:, 1:2])
            out = w * prev_logits + (1 - w) * up[:, :1]
        if self.config.reuse_refine:
            out = self.reuse_refine(out, (image_half - self.mean) / self.std)
        return out

    def decode_reuse(self, f4, f8, r8_prev, prev_score, delta):
        score = prev_score + delta
        if self.frtm:
            return self.shallow_levels(f4, f8, score, self.translator(r8_prev, resize_to(delta, r8_prev)))
        r8 = self.translator(r8_prev, self._resize(delta, r8_prev))
        return self.shallow_levels(f4, f8, score, r8)

    def embed_computed(self, f8):
        """``computed_embed='f8'``: a computed frame's gate embedding, from its f8 averaged over 2x2
        cells (the half-resolution encoding's stride-16 grid) through ``embed_full``."""
        return self.embed_full(F.avg_pool2d(f8, 2, ceil_mode=True))

    def gate_forward(self, f8, prev_score, template, prev_embed):
        d, e = self.matcher(f8, resize_to(prev_score, f8), template, prev_embed)
        return self.gate(d), self.delta(d), e

    # -- stages ----------------------------------------------------------------------------
    def stage_modules(self) -> Dict[str, nn.Module]:
        funcs = _STAGE_FUNCS
        if self.config.reuse_scale == 2:
            funcs = _STAGE_FUNCS_PREV_LOGITS if self.reads_prev_logits else _STAGE_FUNCS_HALF
            if self.config.reuse_refine:
                funcs = _STAGE_FUNCS_GUIDED
            if self.config.reuse_head == "warp":
                funcs = _STAGE_FUNCS_WARP
        if self.config.computed_embed == "f8":
            funcs = dict(funcs, gate_embed=lambda m, f8: m.embed_computed(f8))
        return {name: _Stage(self, fn) for name, fn in funcs.items()}

    def stage_specs(self) -> List[StageSpec]:
        cfg = self.config
        ch = backbone_channels(cfg.backbone)
        sz = cfg.sizes()
        d, e = cfg.decoder_dim, cfg.embed_dim

        def t(name, c, s):
            return TensorSpec(name, (1, c) + tuple(sz[s]))

        f4, f8, f16, f32 = t("f4", ch["f4"], 4), t("f8", ch["f8"], 8), t("f16", ch["f16"], 16), t("f32", ch["f32"], 32)
        score = t("score", 1, 16)
        if cfg.reuse_scale == 2:
            h4, h8 = t("h4", ch["f4"], 8), t("h8", ch["f8"], 16)
            template, embed, prev_embed = TensorSpec("template", (1, 2 * e)), t("embed", e, 16), t("prev_embed", e, 16)
            half = TensorSpec("image_half", (1, 3, sz[1][0] // 2, sz[1][1] // 2))
            return [
                StageSpec("encoder_low", (t("image", 3, 1),), (f4, f8), "image (RGB 0..255) -> stride 4/8 features"),
                StageSpec("encoder_high", (f8,), (f16, f32), "stride 8 -> stride 16/32 features"),
                StageSpec("encoder_reuse", (half,), (h4, h8),
                          "half-resolution image -> stride 8/16 features for the gate and the reuse path"),
                StageSpec("gate_template", (h8, t("mask16", 1, 16)), (template, embed),
                          "first-frame template (fg/bg prototypes) and embedding, half resolution"),
                StageSpec("gate", (h8, t("prev_score", 1, 16), template, prev_embed),
                          (TensorSpec("p_gate", (1, 1)), t("delta", 1, 16), embed),
                          "template matching -> reuse probability, delta score, embedding"),
                StageSpec("decoder_full", (f4, f8, f16, f32, score), (t("logits", 1, 4), t("r8", d, 16)),
                          "full segmentation network -> logits (stride 4) and stride-16 refiner state"),
                StageSpec("decoder_reuse", (h4, t("r8_prev", d, 16), t("prev_score", 1, 16), t("delta", 1, 16),
                                            t("prev_logits", 1, 4)) + ((half,) if cfg.reuse_refine else ())
                          + ((embed, prev_embed) if cfg.reuse_head == "warp" else ()),
                          (t("logits", 1, 4),),
                          f"refine-translator + thin stride-8 head ({cfg.reuse_head}) with the last computed "
                          "frame's logits" + (", image-guided" if cfg.reuse_refine else "") + " -> logits (stride 4)")
                if self.reads_prev_logits else
                StageSpec("decoder_reuse", (h4, t("r8_prev", d, 16), t("prev_score", 1, 16), t("delta", 1, 16)),
                          (t("logits", 1, 8),),
                          "refine-translator + thin stride-8 head -> logits (stride 8)"),
            ] + ([StageSpec("gate_embed", (f8,), (embed,),
                            "a computed frame's gate embedding from its own f8 (computed_embed f8)")]
                 if cfg.computed_embed == "f8" else [])
        if self.frtm:  # same stages and names; upstream shapes (see _build_frtm)
            template, embed, prev_embed = (TensorSpec("template", (1, e, e)), TensorSpec("embed", (1, 1)),
                                           TensorSpec("prev_embed", (1, 1)))
            r_stride, logit_stride = 16, 1
        else:
            template, embed, prev_embed = TensorSpec("template", (1, 2 * e)), t("embed", e, 8), t("prev_embed", e, 8)
            r_stride, logit_stride = cfg.refiner_stride, 4
        return [
            StageSpec("encoder_low", (t("image", 3, 1),), (f4, f8), "image (RGB 0..255) -> stride 4/8 features"),
            StageSpec("encoder_high", (f8,), (f16, f32), "stride 8 -> stride 16/32 features"),
            StageSpec("gate_template", (f8, t("mask8", 1, 8)), (template, embed),
                      "first-frame template (fg/bg prototypes) and embedding"),
            StageSpec("gate", (f8, t("prev_score", 1, 16), template, prev_embed),
                      (TensorSpec("p_gate", (1, 1)), t("delta", 1, 16), embed),
                      "template matching -> reuse probability, delta score, embedding"),
            StageSpec("decoder_full", (f4, f8, f16, f32, score), (t("logits", 1, logit_stride), t("r8", d, r_stride)),
                      f"full segmentation network -> logits (stride {logit_stride}) and stride-{r_stride} refiner state"),
            StageSpec("decoder_reuse", (f4, f8, t("r8_prev", d, r_stride), t("prev_score", 1, 16), t("delta", 1, 16)),
                      (t("logits", 1, logit_stride),),
                      f"refine-translator + shallow levels -> logits (stride {logit_stride})"),
        ]

    def trainable_state_dict(self) -> Dict[str, torch.Tensor]:
        """Everything but the frozen ImageNet backbone."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("backbone.")}


_STAGE_FUNCS = {
    "encoder_low": lambda m, image: m.encode_low(image),
    "encoder_high": lambda m, f8: m.encode_high(f8),
    "gate_template": lambda m, f8, mask8: m.matcher.template(f8, mask8),
    "gate": lambda m, f8, prev_score, template, prev_embed: m.gate_forward(f8, prev_score, template, prev_embed),
    "decoder_full": lambda m, f4, f8, f16, f32, score: m.decode_full(f4, f8, f16, f32, score),
    "decoder_reuse": lambda m, f4, f8, r8_prev, prev_score, delta: m.decode_reuse(f4, f8, r8_prev, prev_score, delta),
}

_STAGE_FUNCS_HALF = dict(
    _STAGE_FUNCS,
    encoder_reuse=lambda m, image_half: m.encode_low(image_half),
    gate_template=lambda m, h8, mask16: m.matcher.template(h8, mask16),
    gate=lambda m, h8, prev_score, template, prev_embed: m.gate_forward(h8, prev_score, template, prev_embed),
    decoder_reuse=lambda m, h4, r8_prev, prev_score, delta: m.decode_reuse_half(h4, r8_prev, prev_score, delta),
)

_STAGE_FUNCS_PREV_LOGITS = dict(
    _STAGE_FUNCS_HALF,
    decoder_reuse=lambda m, h4, r8_prev, prev_score, delta, prev_logits: m.decode_reuse_half(
        h4, r8_prev, prev_score, delta, prev_logits),
)

_STAGE_FUNCS_WARP = dict(
    _STAGE_FUNCS_HALF,
    decoder_reuse=lambda m, h4, r8_prev, prev_score, delta, prev_logits, embed, prev_embed: m.decode_reuse_half(
        h4, r8_prev, prev_score, delta, prev_logits, embed=embed, prev_embed=prev_embed),
)

_STAGE_FUNCS_GUIDED = dict(
    _STAGE_FUNCS_HALF,
    decoder_reuse=lambda m, h4, r8_prev, prev_score, delta, prev_logits, image_half: m.decode_reuse_half(
        h4, r8_prev, prev_score, delta, prev_logits, image_half),
)


class _Stage(nn.Module):
    """A stage as its own module (what gets exported); shares parameters with the model."""

    def __init__(self, model: GFRTM, fn):
        super().__init__()
        self.model = model
        self.fn = fn

    def forward(self, *inputs):
        out = self.fn(self.model, *inputs)
        return tuple(out) if isinstance(out, (tuple, list)) else (out,)


# ----------------------------------------------------------------------------- builders
def build_gfrtm(weights=None, input_size=None, backbone_weights=None, **overrides) -> GFRTM:
    """Build G-FRTM-fast.

    input_size: (H, W); None = the size the checkpoint was trained at (480x864 without weights).
    weights: None (random decoder), "default" (shipped checkpoint) or a path to an
        edgevos checkpoint (a state dict saved with ``torch.save``; loaded with
        ``weights_only=True``).
    backbone_weights: a torchvision ImageNet state dict for the backbone (a
        checkpoint, when given, carries its own backbone and overrides it).
    """
    from edgevos.models import weights as shipped

    # default size: the one the weights were trained at
    ckpt, input_size, overrides = shipped.checkpoint_config("gfrtm", weights, input_size, overrides)
    if "reuse_residual" in overrides:  # the boolean that preceded reuse_head
        overrides["reuse_head"] = "residual" if overrides.pop("reuse_residual") else overrides.get("reuse_head", "stride8")
    if input_size is None:
        input_size = GfrtmConfig.input_size
    cfg = GfrtmConfig(input_size=tuple(int(v) for v in input_size), **overrides)
    model = GFRTM(cfg)
    if backbone_weights is not None:
        load_torchvision_weights(model.backbone, backbone_weights)
    if ckpt is not None:
        state = {k: v.float() for k, v in ckpt["state_dict"].items()}
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected or missing:
            raise InputError(
                f"checkpoint '{weights}' does not fit G-FRTM-fast ({cfg.backbone}): "
                f"missing {missing[:5]}, unexpected {unexpected[:5]}"
            )
    freeze(model.backbone)
    return model.eval()
