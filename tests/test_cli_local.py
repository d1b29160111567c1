"""The local labeling path: `alray run` on an unlabeled pool stops at awaiting_labels and says
what to do; `rounds show`, `selection export` and `labels push` work on the config's store
without the service; `alray run` then continues. Real Ray, LanceDB and images on disk."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from alray.cli import main
from alray.storage import Store
from tests.conftest import small_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def unlabeled(tmp_path: Path) -> Path:
    """A config over 60 unlabeled PNGs in two folders (no ground truth anywhere)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    pool = tmp_path / "pool"
    for cam in ("cam0", "cam1"):
        (pool / cam).mkdir(parents=True)
        for i in range(30):
            Image.fromarray((rng.random((12, 12)) * 255).astype(np.uint8)).save(
                pool / cam / f"{i:06d}.png")
    cfg = small_config(tmp_path, **{
        "name": "unlabeled", "pool.uri": str(pool), "pool.format": "image_prefix",
        "pool.limit": None, "model.num_classes": 2, "train.backend": "local",
        "train.max_epochs": 1, "train.epoch_samples": 32, "loop.initial_labels": 6,
        "acquisition.batch_size": 4, "acquisition.strategy": "random", "loop.max_rounds": 3})
    path = tmp_path / "unlabeled.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump()))
    return path


def _alray(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "ALRAY_PROGRESS": "0", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "alray.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_run_is_quiet_and_says_what_to_do_next(unlabeled: Path, tmp_path: Path):
    """A real `alray run` process: per-round lines on stdout, the next commands, and Ray's,
    LanceDB's and the raylet's output in alray.log, not on the terminal."""
    res = _alray("run", str(unlabeled), cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout
    log = tmp_path / "alray.log"  # next to the store (storage.uri = tmp_path/store)
    assert f"logs of Ray and LanceDB: {log}" in out
    assert "ingest: 60 frames added" in out
    assert "round  0" in out and "awaiting labels" in out
    assert "round 0 awaits labels: 6 selected frames have none" in out
    assert f"alray selection export {unlabeled} --round 0 --format jsonl --out round-0.jsonl" \
        in out
    assert f"alray labels push {unlabeled} round-0.jsonl" in out
    assert out.rstrip().endswith(f"alray run {unlabeled}")
    # Nothing of Ray, LanceDB or Python warnings reached the terminal; they are in the log.
    noise = ("authentication_token_setup", "RuntimeWarning", "lancedb fork", "streaming_executor",
             "core_worker", "(raylet)")
    assert not [n for n in noise if n in res.stderr or n in out], res.stderr
    assert "Token authentication" in log.read_text() or "streaming_executor" in log.read_text()


def test_label_round_trip_without_the_service(ray_session, unlabeled: Path, tmp_path: Path,
                                              capsys):
    assert main(["run", str(unlabeled)]) == 0
    assert "round 0 awaits labels" in capsys.readouterr().out

    assert main(["rounds", "show", str(unlabeled)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and "AWAITING_LABELS" in lines[0] and "selected=6" in lines[0]
    assert main(["rounds", "show", str(unlabeled), "0"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["round"] == 0 and rec["selected"] == 6 and rec["labeled"] == 0

    # Exports: the same item shapes as the service, URLs an annotator can open here.
    out = tmp_path / "round-0.jsonl"
    assert main(["selection", "export", str(unlabeled), "--round", "0", "--format", "jsonl",
                 "--out", str(out)]) == 0
    items = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(items) == 6 and all(i["round"] == 0 for i in items)
    assert all(i["url"].startswith("file://") and Path(i["url"][7:]).is_file() for i in items)
    ls = tmp_path / "tasks.json"
    assert main(["selection", "export", str(unlabeled), "0", "--format", "label-studio",
                 "--out", str(ls)]) == 0
    tasks = json.loads(ls.read_text())
    assert [t["data"]["frame_id"] for t in tasks] == [i["frame_id"] for i in items]
    coco = tmp_path / "coco.json"
    assert main(["selection", "export", str(unlabeled), "--round", "0", "--format", "coco",
                 "--out", str(coco)]) == 0
    doc = json.loads(coco.read_text())
    assert [im["alray_frame_id"] for im in doc["images"]] == [i["frame_id"] for i in items]
    assert doc["annotations"] == [] and [im["id"] for im in doc["images"]] == list(range(1, 7))
    capsys.readouterr()
    assert main(["selection", "export", str(unlabeled), "--round", "5"]) == 2
    assert "--round 5: no such round" in capsys.readouterr().out

    # Push: the exported file with labels added; one line left unlabeled is skipped.
    labeled = tmp_path / "labels.jsonl"
    labeled.write_text("".join(json.dumps({**it, "label": k % 2} if k < 5 else it) + "\n"
                               for k, it in enumerate(items)))
    assert main(["labels", "push", str(unlabeled), str(labeled)]) == 0
    assert json.loads(capsys.readouterr().out) == {"accepted": 5, "duplicate": 0,
                                                   "conflict": 0, "rejected": 0}
    assert main(["labels", "push", str(unlabeled), str(labeled)]) == 0  # idempotent
    assert json.loads(capsys.readouterr().out)["duplicate"] == 5
    # Validation as in the service: out of range, a never-selected frame, a bad label type.
    store = Store(str(tmp_path / "store"))
    never = store.read_frames([], "status = 'unlabeled' AND split = 'pool'")["frame_id"][0]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"frame_id": items[5]["frame_id"], "label": 7}) + "\n"
                   + json.dumps({"frame_id": never.as_py(), "label": 1}) + "\n")
    assert main(["labels", "push", str(unlabeled), str(bad)]) == 1
    res = capsys.readouterr()
    assert json.loads(res.out) == {"accepted": 0, "duplicate": 0, "conflict": 0, "rejected": 2}
    assert "out of range [0, 2)" in res.err and "never selected" in res.err
    bad.write_text(json.dumps({"frame_id": items[5]["frame_id"], "label": 1.5}) + "\n")
    assert main(["labels", "push", str(unlabeled), str(bad)]) == 2
    assert f"{bad}:1: label" in capsys.readouterr().out
    events = Store(str(tmp_path / "store")).label_events().to_pylist()
    assert sum(e["accepted"] for e in events) == 5 and len(events) == 7  # 5 + 2 rejected
    assert {e["source"] for e in events} == {"cli"}

    # The last frame labeled too; `alray run` trains round 0 and selects round 1.
    last = tmp_path / "last.jsonl"
    last.write_text(json.dumps({"frame_id": items[5]["frame_id"], "label": 1,
                                "idempotency_key": "k-1"}) + "\n")
    assert main(["labels", "push", str(unlabeled), str(last)]) == 0
    capsys.readouterr()
    assert main(["run", str(unlabeled)]) == 0
    out = capsys.readouterr().out
    assert "round 1 awaits labels: 4 selected frames have none" in out
    assert main(["rounds", "show", str(unlabeled)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "COMPLETED" in lines[0] and "labeled=6" in lines[0]
    assert "AWAITING_LABELS" in lines[1] and "selected=4" in lines[1]


def test_local_mode_errors_name_the_fix(tmp_path: Path, capsys):
    cfg = small_config(tmp_path)
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump()))
    assert main(["rounds", "show", str(path)]) == 2
    assert "no store there yet; run `alray run CONFIG`" in capsys.readouterr().out
    assert main(["rounds", "start", str(path)]) == 2
    assert f"run `alray run {path}`" in capsys.readouterr().out
    assert main(["selection", "export", str(path)]) == 2
    assert "--round 1" in capsys.readouterr().out
