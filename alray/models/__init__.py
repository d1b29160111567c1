"""Backbones, MC-dropout heads with consistent masks, and round checkpoints."""

from alray.models.checkpoint import (
    backbone_fingerprint,
    load_checkpoint,
    model_for,
    save_checkpoint,
)
from alray.models.masks import MCMasks, draw_masks
from alray.models.mc_dropout import (
    MCDropoutClassifier,
    available,
    build_model,
    head_probs,
    mc_probs,
    predict,
    register,
)

__all__ = [
    "MCDropoutClassifier", "MCMasks", "available", "backbone_fingerprint", "build_model",
    "draw_masks", "head_probs", "load_checkpoint", "mc_probs", "model_for", "predict",
    "register", "save_checkpoint",
]
