"""Round checkpoints: save, load, and the backbone fingerprint behind the embedding cache."""

from __future__ import annotations

import hashlib
import io

import torch

from alray.config import ModelConfig
from alray.models.mc_dropout import MCDropoutClassifier, build_model
from alray.storage.uri import join, read_bytes, resolve

__all__ = ["CHECKPOINT_FILE", "backbone_fingerprint", "load_checkpoint", "model_for",
           "save_checkpoint"]

CHECKPOINT_FILE = "model.pt"


def save_checkpoint(state: dict, num_classes: int, folder: str) -> None:
    """Write ``state`` (a ``state_dict``) and the class count to ``folder/model.pt``."""
    fs, path = resolve(folder)
    fs.create_dir(path, recursive=True)
    buf = io.BytesIO()
    torch.save({"state_dict": state, "num_classes": num_classes}, buf)
    with fs.open_output_stream(f"{path}/{CHECKPOINT_FILE}") as f:
        f.write(buf.getvalue())


def load_checkpoint(uri: str, model_cfg: ModelConfig) -> MCDropoutClassifier:
    """Rebuild the classifier saved at a round's checkpoint URI (a folder)."""
    blob = torch.load(io.BytesIO(read_bytes(join(uri, CHECKPOINT_FILE))), map_location="cpu")
    model = build_model(model_cfg, blob["num_classes"])
    model.load_state_dict(blob["state_dict"])
    return model


def model_for(model_cfg: ModelConfig, checkpoint_uri: str | None, num_classes: int,
              seed: int) -> MCDropoutClassifier:
    """A round's model from its checkpoint, or the config's model seeded with ``seed`` when
    None (eval mode)."""
    if checkpoint_uri:
        return load_checkpoint(checkpoint_uri, model_cfg).eval()
    with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's RNG
        torch.manual_seed(seed)
        return build_model(model_cfg, num_classes).eval()


def backbone_fingerprint(model: MCDropoutClassifier) -> str:
    """SHA-1 over the backbone's parameters and buffers (names, shapes and bytes)."""
    h = hashlib.sha1()
    for name, t in sorted(model.backbone.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()
