"""Checks a project config against this machine before any Ray start-up.

:func:`check_project` runs in ``alray run``, ``alray compare`` and ``alray ingest`` (and
:func:`alray.runner.run_project`) before Ray starts, so a misspelled strategy or a missing pool
folder fails in about a second, naming the dotted key and the reason, rather than after
half a minute of cluster start-up. It checks what needs no data read: the pool format and
location, the store location, strategies given on the command line (the config's own
strategy and score names are checked when it loads), the model's architecture and channel
settings, and GPU requests on a machine without one. Checks that need the data (labels
columns, image channels) stay with ingest.

Imports stay light until needed: the format registry first (no torch), then the acquisition
and model registries (torch), torchvision only for an architecture that is not registered.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from alray.config import ConfigError, ModelConfig, ProjectConfig

__all__ = ["check_project"]

#: Formats whose ``pool.uri`` is a folder, or a single file.
_FOLDER_FORMATS = {"idx", "image_folder", "image_prefix"}
_FILE_FORMATS = {"manifest"}
_CHANNELS = (1, 3)  # what the decoders produce: grayscale ('L') or RGB


def check_project(cfg: ProjectConfig, *, strategies: Sequence[str] = (),
                  strategy_flag: str = "--strategies", store_uri: str | None = None,
                  source: str = "config") -> None:
    """Refuse a config this machine cannot run, before Ray starts.

    Args:
        cfg: the project config (already schema-validated).
        strategies: strategies asked for besides ``acquisition.strategy`` (``--strategy``,
            ``alray compare --strategies``), named ``strategy_flag`` in messages.
        strategy_flag: the option ``strategies`` came from.
        store_uri: the store actually used, when it overrides ``storage.uri``.
        source: where ``cfg`` came from, for the message (e.g. the YAML path).

    Raises:
        ConfigError: one line per problem: ``<dotted key>: <reason>``.
    """
    # Paths, settings and names first: they need no torch import, so they fail quickest.
    cheap = [*_pool(cfg), *_storage(store_uri or cfg.storage.uri, store_uri is not None),
             *_settings(cfg.model), *_acquisition(cfg, strategies, strategy_flag)]
    _raise(cheap, source)
    _raise(_architecture(cfg.model), source)


def _raise(problems: list[str], source: str) -> None:
    if problems:
        raise ConfigError("\n".join([f"invalid config {source}:",
                                     *(f"  {p}" for p in problems)]))


def _local_path(uri: str) -> Path | None:
    """The local path of ``uri``, or None for an object-store (or other remote) URI."""
    if uri.startswith("file://"):
        return Path(uri[len("file://"):])
    return None if "://" in uri else Path(uri)


def _pool(cfg: ProjectConfig) -> list[str]:
    from alray.sources import available_sources

    pool, out = cfg.pool, []
    if pool.format not in available_sources():
        out.append(f"pool.format: {pool.format!r} is not a pool format; expected one of "
                   f"{available_sources()}")
    path = _local_path(pool.uri)
    if path is None:
        return out
    if not path.exists():
        out.append(f"pool.uri: {str(path)!r} does not exist")
    elif pool.format in _FOLDER_FORMATS and not path.is_dir():
        out.append(f"pool.uri: {str(path)!r} is a file; pool.format {pool.format!r} reads a "
                   "folder")
    elif pool.format in _FILE_FORMATS and not path.is_file():
        out.append(f"pool.uri: {str(path)!r} is a folder; pool.format {pool.format!r} reads "
                   "one table file (.parquet, .csv, .jsonl)")
    return out


def _storage(uri: str, overridden: bool) -> list[str]:
    key = "--out" if overridden else "storage.uri"
    path = _local_path(uri)
    if path is None:
        return []
    if path.exists() and not path.is_dir():
        return [f"{key}: {str(path)!r} is a file; the store is a folder"]
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        return [f"{key}: {str(parent)!r} is a file, so {str(path)!r} cannot be created"]
    return []


def _settings(m: ModelConfig) -> list[str]:
    out = []
    if m.in_channels not in _CHANNELS:
        out.append(f"model.in_channels: {m.in_channels} is not supported; frames are decoded "
                   "as grayscale (1) or RGB (3)")
    weights = _local_path(m.weights_uri) if m.weights_uri else None
    if weights is not None and not weights.is_file():
        out.append(f"model.weights_uri: {str(weights)!r} does not exist")
    return out


def _architecture(m: ModelConfig) -> list[str]:
    out: list[str] = []
    from alray.models.mc_dropout import available

    if m.architecture in available():
        return out
    import torchvision

    if m.architecture not in torchvision.models.list_models(module=torchvision.models):
        out.append(f"model.architecture: {m.architecture!r} is neither a registered backbone "
                   f"({', '.join(available())}) nor a torchvision classification model "
                   "(e.g. resnet18)")
        return out
    if m.in_channels != 3:
        out.append(f"model.in_channels: {m.in_channels}, but torchvision backbones "
                   f"({m.architecture!r}) take RGB: set model.in_channels: 3")
    if getattr(m, "mc_layers", "head") == "all":
        out.append(f"model.mc_layers: 'all' needs a backbone with MC-dropout sites (mnist_cnn); "
                   f"{m.architecture!r} has none: use 'head'")
    return out


def _acquisition(cfg: ProjectConfig, strategies: Sequence[str], flag: str) -> list[str]:
    import difflib

    from alray.acquisition.names import strategy_names  # torch-free: fails fast

    out, valid = [], strategy_names()
    for name in strategies:  # acquisition.strategy and .score: checked by the config schema
        if name not in valid:
            close = difflib.get_close_matches(name, valid, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            out.append(f"{flag}: unknown strategy {name!r}.{hint} Valid names: "
                       f"{', '.join(valid)}")
    if cfg.ray.address is None and (cfg.train.use_gpu or cfg.acquisition.actor_gpus > 0):
        import torch

        if not torch.cuda.is_available():
            key = "train.use_gpu" if cfg.train.use_gpu else "acquisition.actor_gpus"
            out.append(f"{key}: asks for a GPU, but this machine has no CUDA device (and "
                       "ray.address is unset, so Ray runs here)")
    return out
