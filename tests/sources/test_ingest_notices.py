"""Ingest says what it did (issue 15, item 7): resizing, channel mismatches, missing labels."""

from __future__ import annotations

import logging

import pytest

from alray.pipeline.ingest import ingest
from alray.storage import Store
from tests.conftest import small_config
from tests.sources.conftest import video_config


def test_channel_mismatch_is_an_error_naming_both(ray_session, tmp_path):
    cfg = small_config(tmp_path, **{"pool.limit": 40, "model.in_channels": 3,
                                    "model.architecture": "mnist_cnn"})
    store = Store(cfg.storage.uri)
    with pytest.raises(ValueError, match=r"model.in_channels=3 does not match the pool: its "
                       r"frames are grayscale, 1 channel\(s\) .*t10k-images.*model.in_channels: 1"):
        ingest(cfg, store)
    assert not store.has_frames()  # refused before the first write


def test_unlabeled_video_pool_notices_resize_and_no_labels(ray_session, tmp_path, video_dir,
                                                           caplog):
    cfg = video_config(tmp_path, video_dir, **{"pool.every_n": 25, "model.input_size": 16})
    with caplog.at_level(logging.WARNING, logger="alray.pipeline.ingest"):
        s = ingest(cfg, Store(cfg.storage.uri))
    assert s.frames_added == 4 and s.labeled == 0
    resized = [n for n in s.notices if "resized" in n]
    assert resized == [f"frames resized to 16x16 (model.input_size) from 1280x720 (4 frames, "
                       f"e.g. {video_dir / 'project_video_cut.mp4'})"]
    assert any("ships no labels" in n and "alray labels push" in n for n in s.notices)
    assert all(n in caplog.text for n in s.notices)  # logged, not only returned


def test_matching_sizes_and_labels_say_nothing(ray_session, tmp_path):
    cfg = small_config(tmp_path, **{"pool.limit": 30})
    s = ingest(cfg, Store(cfg.storage.uri))
    assert s.frames_added == 30 and s.labeled == 30 and s.notices == []


def test_a_simulation_without_ground_truth_is_an_error(tmp_path, video_dir):
    from alray.compare import compare

    cfg = video_config(tmp_path, video_dir)
    with pytest.raises(ValueError, match=r"alray compare simulates the annotator .* ships none"
                       r".*alray labels push"):
        compare(cfg, ["random"], [0], tmp_path / "out")
    assert not (tmp_path / "out").exists()  # refused before any run
