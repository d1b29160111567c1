"""A bad config fails before Ray starts, fast, naming the dotted key and the reason; importing
the CLI stays light."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from alray.cli import build_parser
from alray.config import ConfigError
from alray.preflight import check_project
from tests.conftest import MNIST, small_config

ROOT = Path(__file__).resolve().parents[1]
#: CPU seconds (user + sys) a failing command may use. Alone on this 2-core machine a bad
#: config fails in about 1.5 s of wall time, most of it importing torch for the strategy
#: registry; CPU time, unlike wall time, barely moves when other test runs share the cores.
FAST_CPU_S = 5.0


def _alray(*args: str, cwd: Path) -> tuple[subprocess.CompletedProcess, float]:
    """Run the CLI in a fresh process where importing Ray fails loudly: a command that gets
    past validation into Ray start-up cannot go unnoticed. Returns (result, CPU seconds)."""
    guard = cwd / "no-ray"
    (guard / "ray").mkdir(parents=True, exist_ok=True)
    (guard / "ray" / "__init__.py").write_text(
        "raise RuntimeError('ray imported before the config was validated')\n")
    env = {**os.environ, "COLUMNS": "200",
           "PYTHONPATH": os.pathsep.join([str(guard), os.environ.get("PYTHONPATH", "")])}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    res = subprocess.run([sys.executable, "-m", "alray.cli", *args], cwd=cwd, env=env,
                         capture_output=True, text=True, timeout=300)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return res, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_bad_config_fails_fast_without_ray(tmp_path: Path):
    bad = _write(tmp_path, {"pool": {"uri": str(tmp_path / "nowhere"), "format": "idx"},
                            "model": {"in_channels": 2},
                            "storage": {"uri": str(tmp_path / "store")}})
    res, secs = _alray("run", str(bad), cwd=tmp_path)
    out = res.stdout + res.stderr
    assert res.returncode == 2, out
    assert f"pool.uri: '{tmp_path / 'nowhere'}' does not exist" in out
    assert "model.in_channels: 2 is not supported" in out
    assert "Traceback" not in out
    assert secs < FAST_CPU_S, f"took {secs:.1f} s of CPU"
    assert not (tmp_path / "store").exists()  # nothing was created
    res, _ = _alray("ingest", str(bad), cwd=tmp_path)
    assert res.returncode == 2 and "pool.uri:" in res.stdout


def test_bad_strategy_option_fails_fast_without_ray(tmp_path: Path):
    good = _write(tmp_path, {"pool": {"uri": str(MNIST), "limit": 100},
                             "storage": {"uri": str(tmp_path / "store")}})
    res, secs = _alray("run", str(good), "--strategy", "bladd", cwd=tmp_path)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "--strategy: unknown strategy 'bladd'. Did you mean 'bald'?" in res.stdout
    assert secs < FAST_CPU_S and not (tmp_path / "store").exists()
    res, secs = _alray("compare", str(good), "--strategies", "random,nope", "--out",
                       str(tmp_path / "cmp"), cwd=tmp_path)
    assert res.returncode == 2 and "--strategies: unknown strategy 'nope'" in res.stdout
    assert secs < FAST_CPU_S and not (tmp_path / "cmp").exists()
    res, _ = _alray("compare", str(good), "--targets", "0.9,95", cwd=tmp_path)
    assert res.returncode == 2 and "--targets='0.9,95': each target must lie in (0, 1]" \
        in res.stdout


def test_schema_errors_name_the_dotted_key(tmp_path: Path):
    bad = _write(tmp_path, {"pool": {"uri": str(MNIST), "formt": "idx"},
                            "train": {"max_epochs": 0}})
    res, secs = _alray("run", str(bad), cwd=tmp_path)
    assert res.returncode == 2
    assert "pool.formt: unknown key" in res.stdout and "train.max_epochs" in res.stdout
    assert secs < FAST_CPU_S


def _problems(cfg) -> str:
    with pytest.raises(ConfigError) as err:
        check_project(cfg, source="c.yaml")
    return str(err.value)


def test_pool_checks(tmp_path: Path):
    msg = _problems(small_config(tmp_path, **{"pool.format": "manifest"}))
    assert f"pool.uri: '{MNIST}' is a folder; pool.format 'manifest' reads one table" in msg
    f = tmp_path / "one.png"
    f.write_bytes(b"x")
    msg = _problems(small_config(tmp_path, **{"pool.uri": str(f), "pool.format": "image_folder"}))
    assert "pool.format 'image_folder' reads a folder" in msg
    check_project(small_config(tmp_path))  # the good one passes
    check_project(small_config(tmp_path, **{"pool.uri": "s3://bucket/pool"}))  # not listed


def test_store_and_model_checks(tmp_path: Path):
    (tmp_path / "file").write_text("x")
    msg = _problems(small_config(tmp_path, **{"storage.uri": str(tmp_path / "file" / "store")}))
    assert "storage.uri:" in msg and "is a file" in msg
    with pytest.raises(ConfigError, match="--out: "):
        check_project(small_config(tmp_path), store_uri=str(tmp_path / "file"))
    msg = _problems(small_config(tmp_path, **{"model.architecture": "resnet18"}))
    assert "model.in_channels: 1, but torchvision backbones ('resnet18') take RGB" in msg
    msg = _problems(small_config(tmp_path, **{"model.architecture": "resnet19"}))
    assert "model.architecture: 'resnet19' is neither a registered backbone" in msg
    msg = _problems(small_config(tmp_path, **{"model.weights_uri": str(tmp_path / "w.pt")}))
    assert f"model.weights_uri: '{tmp_path / 'w.pt'}' does not exist" in msg
    check_project(small_config(tmp_path, **{"model.architecture": "resnet18",
                                            "model.in_channels": 3}))


def test_gpu_request_matches_this_machine(tmp_path: Path):
    import torch

    cfg = small_config(tmp_path, **{"train.use_gpu": True})
    if torch.cuda.is_available():
        check_project(cfg)
    else:
        assert "train.use_gpu: asks for a GPU, but this machine has no CUDA device" in \
            _problems(cfg)
    check_project(small_config(tmp_path, **{"train.use_gpu": True, "ray.address": "auto"}))


def test_import_and_parser_stay_light():
    code = ("import sys, alray.cli; alray.cli.build_parser(); "
            "print(sorted(m for m in ('ray', 'torch', 'lancedb', 'torchvision', 'pyarrow') "
            "if m in sys.modules))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


def test_verbose_works_before_and_after_the_command():
    p = build_parser()
    assert p.parse_args(["run", "c.yaml"]).verbose is False
    assert p.parse_args(["-v", "run", "c.yaml"]).verbose is True
    assert p.parse_args(["run", "c.yaml", "--verbose"]).verbose is True
    assert p.parse_args(["compare", "c.yaml", "-v"]).verbose is True
