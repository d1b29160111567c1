"""MC-dropout classifiers with a separate feature extractor and dropout head.

``features(x)`` runs the backbone once (no dropout). Scoring draws ``T`` dropout masks once
per scoring pass (:func:`alray.models.masks.draw_masks`) and every frame of the pass uses the
same ``T`` masks ("consistent MC dropout", which BatchBALD's joint entropy needs):

- ``mc_layers: head``: dropout on the features only; the backbone runs once per frame and the
  T samples are T linear maps over the features (:func:`head_probs`).
- ``mc_layers: all``: BatchBALD's reference CNN: channel dropout after both conv blocks and
  dropout at fc1; the backbone runs T times per frame (:func:`mc_probs`).

References:
    Gal, Islam & Ghahramani, "Deep Bayesian Active Learning with Image Data", ICML 2017.
    Kirsch, van Amersfoort & Gal, "BatchBALD", NeurIPS 2019 (the MNIST CNN).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from alray.config import ModelConfig
from alray.models.masks import MCMasks

__all__ = [
    "MCDropoutClassifier", "available", "build_model", "head_probs", "mc_probs", "predict",
    "register",
]

_BACKBONES: dict[str, Callable[[ModelConfig], tuple[nn.Module, int]]] = {}

#: ``drop(site, h) -> h``: applies the dropout of backbone site ``site`` to activations ``h``.
Drop = Callable[[int, torch.Tensor], torch.Tensor]


def register(name: str):
    """Register a backbone builder ``f(cfg) -> (module, feature_dim)`` under ``name``.

    A backbone with MC-dropout sites inside it (``mc_layers: all``) has a tuple attribute
    ``dropout_channels`` (channels per site) and a ``forward(x, drop=None)``.
    """

    def deco(fn):
        if name in _BACKBONES:
            raise ValueError(f"backbone {name!r} is already registered")
        _BACKBONES[name] = fn
        return fn

    return deco


def available() -> list[str]:
    """Registered backbone names (torchvision models are also accepted by name)."""
    return sorted(_BACKBONES)


class _MnistConvNet(nn.Module):
    """conv32-5x5 → pool → conv64-5x5 → pool → fc(embedding_dim), ReLU (BatchBALD's CNN).

    ``drop`` (``mc_layers: all``) is applied after each conv, before pooling, as in the
    reference implementation; the fc1 dropout is the classifier's feature dropout.
    """

    dropout_channels = (32, 64)

    def __init__(self, in_channels: int, input_size: int, dim: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 32, kernel_size=5)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=5)
        side = ((input_size - 4) // 2 - 4) // 2
        if side < 1:
            raise ValueError(f"model.input_size={input_size}: too small for mnist_cnn (>= 16)")
        self.fc1 = nn.Linear(64 * side * side, dim)

    def forward(self, x: torch.Tensor, drop: Drop | None = None) -> torch.Tensor:
        # [N, C, H, W] -> [N, dim]
        h = self.conv1(x)
        h = F.relu(F.max_pool2d(drop(0, h) if drop else h, 2))
        h = self.conv2(h)
        h = F.relu(F.max_pool2d(drop(1, h) if drop else h, 2))
        return F.relu(self.fc1(h.flatten(1)))


@register("mnist_cnn")
def _mnist_cnn(cfg: ModelConfig) -> tuple[nn.Module, int]:
    return _MnistConvNet(cfg.in_channels, cfg.input_size, cfg.embedding_dim), cfg.embedding_dim


def _torchvision_backbone(cfg: ModelConfig) -> tuple[nn.Module, int]:
    import torchvision

    names = torchvision.models.list_models(module=torchvision.models)
    if cfg.architecture not in names:
        raise ValueError(
            f"model.architecture={cfg.architecture!r}: not a registered backbone "
            f"({', '.join(available())}) nor a torchvision classification model"
        )
    net = torchvision.models.get_model(cfg.architecture, weights=None)
    if cfg.in_channels != 3:
        raise ValueError(f"model.in_channels={cfg.in_channels}: torchvision backbones take 3")
    # Replace the classifier with identity; the feature size is read from a dry run.
    for attr in ("fc", "classifier", "head", "heads"):
        if hasattr(net, attr):
            setattr(net, attr, nn.Identity())
            break
    net.eval()
    with torch.no_grad():
        dim = net(torch.zeros(1, 3, cfg.input_size, cfg.input_size)).flatten(1).shape[1]
    return net, int(dim)


class MCDropoutClassifier(nn.Module):
    """Backbone + dropout head; ``forward`` is the usual single-sample training pass.

    Args:
        backbone: the feature extractor (``[N, C, H, W] -> [N, D]``).
        feature_dim: ``D``.
        num_classes: ``C``.
        p: dropout probability of every MC-dropout site.
        mc_layers: ``'head'`` (dropout on the features) or ``'all'`` (also inside the
            backbone, at its ``dropout_channels`` sites).
        frozen_backbone: the backbone stays in eval mode even in ``train()`` (batch-norm
            running statistics never move), so its features are fixed.
    """

    def __init__(self, backbone: nn.Module, feature_dim: int, num_classes: int, p: float,
                 mc_layers: str = "head", frozen_backbone: bool = False):
        super().__init__()
        self.backbone = backbone
        self.feature_dim = feature_dim
        self.num_classes = num_classes
        self.p = p
        self.mc_layers = mc_layers
        self.frozen_backbone = frozen_backbone
        self.fc = nn.Linear(feature_dim, num_classes)

    @property
    def dropout_channels(self) -> tuple[int, ...]:
        """Channels of the backbone's MC-dropout sites (empty with ``mc_layers: head``)."""
        return tuple(self.backbone.dropout_channels) if self.mc_layers == "all" else ()

    def train(self, mode: bool = True) -> MCDropoutClassifier:
        """Set train/eval mode; a frozen backbone always stays in eval mode."""
        super().train(mode)
        if self.frozen_backbone:
            self.backbone.eval()
        return self

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Deterministic backbone features ``[N, D]`` (no dropout anywhere)."""
        return self.backbone(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[N, C]`` with one fresh dropout mask per frame (training)."""
        if self.dropout_channels and self.training:
            f = self.backbone(x, drop=lambda _, h: F.dropout2d(h, self.p, True)).flatten(1)
        else:
            f = self.features(x)
        return self.fc(F.dropout(f, self.p, self.training))


def head_probs(model: MCDropoutClassifier, feats: torch.Tensor, masks: MCMasks) -> torch.Tensor:
    """Probabilities ``[N, T, C]`` of features ``[N, D]`` under the pass's ``T`` head masks.

    Mask ``t`` is folded into the weights (``x @ (m_t * W)^T``): one batched product, no
    per-frame random numbers, and a frame's probabilities do not depend on the other frames
    of its batch. The embedding cache and the actors both score through this function.
    """
    w, b = model.fc.weight, model.fc.bias  # [C, D], [C]
    heads = masks.head.to(w)[:, None, :] * w[None]  # [T, C, D]
    return torch.softmax(torch.einsum("nd,tcd->ntc", feats, heads) + b, dim=-1)


def mc_probs(model: MCDropoutClassifier, x: torch.Tensor, masks: MCMasks) -> torch.Tensor:
    """Probabilities ``[N, T, C]`` of images ``x`` ``[N, C, H, W]``: the whole model runs T
    times, mask ``t`` of every site shared by all frames (``mc_layers: all``)."""
    w, b = model.fc.weight, model.fc.bias
    out = []
    for t in range(masks.samples):  # loop over MC samples, not frames
        sites = [m[t].to(x)[None, :, None, None] for m in masks.sites]
        f = model.backbone(x, drop=lambda i, h, s=sites: h * s[i]).flatten(1)  # [N, D]
        out.append(torch.softmax((f * masks.head[t].to(f)) @ w.T + b, dim=-1))
    return torch.stack(out, dim=1)


def predict(model: MCDropoutClassifier, x: torch.Tensor, masks: MCMasks | None
            ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Features ``[N, D]`` and, with ``masks``, MC probabilities ``[N, T, C]`` of ``x``."""
    feats = model.features(x)
    if masks is None:
        return feats, None
    if masks.sites:
        return feats, mc_probs(model, x, masks)
    return feats, head_probs(model, feats, masks)


def build_model(cfg: ModelConfig, num_classes: int) -> MCDropoutClassifier:
    """Build the classifier named by ``cfg.architecture`` (random init, or ``weights_uri``).

    Raises:
        ValueError: unknown architecture (names the valid ones), or ``mc_layers: all`` on a
            backbone without MC-dropout sites.
    """
    builder = _BACKBONES.get(cfg.architecture, _torchvision_backbone)
    backbone, dim = builder(cfg)
    if cfg.mc_layers == "all" and not hasattr(backbone, "dropout_channels"):
        raise ValueError(f"model.mc_layers='all': backbone {cfg.architecture!r} has no "
                         "MC-dropout sites (mnist_cnn has them); use mc_layers: head")
    if cfg.weights_uri:
        import io

        from alray.storage.uri import read_bytes

        state = torch.load(io.BytesIO(read_bytes(cfg.weights_uri)), map_location="cpu")
        missing, _ = backbone.load_state_dict(state, strict=False)
        if len(missing) == len(backbone.state_dict()):
            raise ValueError(f"model.weights_uri={cfg.weights_uri!r}: no matching weights")
    if cfg.freeze_backbone:
        for p in backbone.parameters():
            p.requires_grad_(False)
    return MCDropoutClassifier(backbone, dim, num_classes, cfg.dropout_p,
                               mc_layers=cfg.mc_layers, frozen_backbone=cfg.freeze_backbone)
