"""Shared fixtures: one real local Ray per test session, small real pools, temp stores."""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from alray.config import ProjectConfig

ROOT = Path(__file__).resolve().parents[1]
MNIST = ROOT / "data" / "mnist-t10k"


@pytest.fixture(scope="session")
def ray_session():
    """A real local Ray instance shared by the whole session (2 CPUs, like CI)."""
    import ray

    from alray.config import RayConfig
    from alray.pipeline.ray_runtime import ensure_ray
    from alray.service.ingress import use_ingress

    use_ingress("haproxy")  # the service tests go through what `alray serve` deploys
    ensure_ray(RayConfig(num_cpus=2))
    yield ray
    ray.shutdown()


def small_config(tmp_path: Path, **overrides) -> ProjectConfig:
    """A fast config over the first 1,500 MNIST test digits."""
    base = {
        "pool.uri": str(MNIST), "pool.limit": 1500, "pool.val_fraction": 0.1,
        "pool.test_fraction": 0.2, "storage.uri": str(tmp_path / "store"),
        "model.mc_samples": 5, "train.max_epochs": 3, "train.epoch_samples": 256,
        "train.patience": 2, "acquisition.batch_size": 10, "loop.initial_labels": 20,
        "loop.max_rounds": 2,
    }
    base.update(overrides)
    return ProjectConfig().with_overrides(**base)


@pytest.fixture()
def mnist_raw(tmp_path: Path) -> Path:
    """The MNIST IDX files, decompressed, in a temp folder (raw, non-.gz format)."""
    d = tmp_path / "mnist-raw"
    d.mkdir()
    for f in MNIST.glob("*.gz"):
        (d / f.name[:-3]).write_bytes(gzip.decompress(f.read_bytes()))
    return d


@pytest.fixture()
def image_pool(tmp_path: Path) -> Path:
    """A small image folder pool: 3 classes × 8 PNGs, plus one corrupt file."""
    from PIL import Image

    rng = np.random.default_rng(0)
    root = tmp_path / "images"
    for c, name in enumerate(["car", "sign", "truck"]):
        (root / name).mkdir(parents=True)
        for i in range(8):
            arr = (rng.random((20, 24, 3)) * 80 + c * 80).astype(np.uint8)
            Image.fromarray(arr).save(root / name / f"{i:02d}.png")
    (root / "sign" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    return root


@pytest.fixture(autouse=True)
def _quiet_env(monkeypatch):
    monkeypatch.setenv("ALRAY_PROGRESS", "0")
    yield


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    os.chmod(dst, 0o755)
    return dst
