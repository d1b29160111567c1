"""Fixtures for video-scale pools: the real dashcam clips, corrupt copies, frozen weights."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from alray.config import ProjectConfig
from tests.conftest import ROOT

VIDEOS = ROOT / "data" / "driving-videos"
CUT = "project_video_cut.mp4"  # 76 frames, 1280x720, 25 fps, MPEG-4 Part 2
WHITE = "solidWhiteRight.mp4"  # 221 frames, 960x540, 25 fps, H.264


def video_config(tmp_path: Path, uri: str | Path, **overrides) -> ProjectConfig:
    """A small, fast config over a video pool (32 px RGB, tiny CNN, local training)."""
    base = {
        "pool.uri": str(uri), "pool.format": "video", "pool.limit": None,
        "pool.val_fraction": 0.1, "pool.test_fraction": 0.1, "pool.batch_frames": 64,
        "storage.uri": str(tmp_path / "store"), "model.input_size": 32, "model.in_channels": 3,
        "model.embedding_dim": 32, "model.mc_samples": 4, "model.num_classes": 3,
        "train.backend": "local", "train.max_epochs": 2, "train.epoch_samples": 64,
        "train.patience": 1, "acquisition.batch_size": 6, "acquisition.scoring_batch_size": 128,
        "loop.initial_labels": 6, "loop.max_rounds": 2,
    }
    base.update(overrides)
    return ProjectConfig().with_overrides(**base)


@pytest.fixture()
def video_dir(tmp_path: Path) -> Path:
    """A copy of the short dashcam clip in its own folder."""
    d = tmp_path / "videos"
    d.mkdir()
    shutil.copy(VIDEOS / CUT, d / CUT)
    return d


@pytest.fixture()
def truncated_video(tmp_path: Path) -> Path:
    """The H.264 clip cut at 40% of its bytes (moov atom first, so it opens)."""
    data = (VIDEOS / WHITE).read_bytes()
    p = tmp_path / "truncated.mp4"
    p.write_bytes(data[: int(len(data) * 0.4)])
    return p


@pytest.fixture(scope="session")
def frozen_weights(tmp_path_factory) -> Path:
    """A fixed (seeded) mnist_cnn backbone state_dict, standing in for pretrained weights."""
    from alray.models import build_model

    cfg = video_config(Path("/tmp"), VIDEOS).model
    torch.manual_seed(1234)
    path = tmp_path_factory.mktemp("weights") / "backbone.pt"
    torch.save(build_model(cfg, 3).backbone.state_dict(), path)
    return path
