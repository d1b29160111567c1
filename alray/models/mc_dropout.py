"""MC-dropout classifiers with a separate feature extractor and dropout head.

``features(x)`` runs the backbone once; ``head(features, T)`` draws T dropout masks in one
batched pass and returns probabilities ``[N, T, C]``. The backbone never runs T times.

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

__all__ = ["MCDropoutClassifier", "available", "build_model", "register"]

_BACKBONES: dict[str, Callable[[ModelConfig], tuple[nn.Module, int]]] = {}


def register(name: str):
    """Register a backbone builder ``f(cfg) -> (module, feature_dim)`` under ``name``."""

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
    """conv32-5x5 → pool → conv64-5x5 → pool → fc(embedding_dim), ReLU (BatchBALD's CNN)."""

    def __init__(self, in_channels: int, input_size: int, dim: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 32, kernel_size=5)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=5)
        self.conv2_drop = nn.Dropout2d(0.0)
        side = ((input_size - 4) // 2 - 4) // 2
        if side < 1:
            raise ValueError(f"model.input_size={input_size}: too small for mnist_cnn (>= 16)")
        self.fc1 = nn.Linear(64 * side * side, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, C, H, W] -> [N, dim]
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2(x), 2))
        return F.relu(self.fc1(x.flatten(1)))


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
    """Backbone + dropout head; ``forward`` is the usual single-sample training pass."""

    def __init__(self, backbone: nn.Module, feature_dim: int, num_classes: int, p: float):
        super().__init__()
        self.backbone = backbone
        self.feature_dim = feature_dim
        self.num_classes = num_classes
        self.p = p
        self.fc = nn.Linear(feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone features ``[N, D]`` (eval-mode backbone is the caller's choice)."""
        return self.backbone(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[N, C]`` with one dropout mask (training)."""
        return self.fc(F.dropout(self.features(x), self.p, self.training))

    def head(self, feats: torch.Tensor, samples: int) -> torch.Tensor:
        """Probabilities ``[N, T, C]`` from ``T=samples`` dropout masks in one batched pass."""
        n, d = feats.shape
        rep = feats.unsqueeze(1).expand(n, samples, d)
        mask = torch.empty_like(rep).bernoulli_(1.0 - self.p) / (1.0 - self.p) if self.p else 1.0
        return torch.softmax(self.fc(rep * mask), dim=-1)


def build_model(cfg: ModelConfig, num_classes: int) -> MCDropoutClassifier:
    """Build the classifier named by ``cfg.architecture`` (random init, or ``weights_uri``).

    Raises:
        ValueError: unknown architecture (names the valid ones).
    """
    builder = _BACKBONES.get(cfg.architecture, _torchvision_backbone)
    backbone, dim = builder(cfg)
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
    return MCDropoutClassifier(backbone, dim, num_classes, cfg.dropout_p)
