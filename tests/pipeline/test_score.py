"""One scoring path: consistent MC-dropout masks whichever way frames are scored (actors over
pixels or the head over stored embeddings), ``mc_layers: all``, and the embedding-cache rule.
Real local Ray, LanceDB in a temp folder, the committed MNIST digits."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch

from alray import acquisition
from alray.models import backbone_fingerprint, draw_masks, load_checkpoint, mc_probs
from alray.models.tensors import images_to_tensor
from alray.pipeline.embed_cache import CACHE_KEY
from alray.pipeline.ingest import ingest
from alray.pipeline.score import score_frames
from alray.pipeline.select import mark_selected
from alray.pipeline.train import train_round
from alray.rounds import simulated_annotator
from alray.storage import Store
from alray.storage.schema import FrameStatus, Split
from alray.storage.store import SCORABLE, frame_filter
from tests.conftest import small_config

COPIES, TOP, K = 10, 10, 20


@pytest.fixture(scope="module")
def trained(ray_session, tmp_path_factory):
    """A trained-ish MNIST model (200 labels) and a pool holding 10 copies of each of its
    10 highest-BALD frames."""
    tmp = tmp_path_factory.mktemp("score")
    cfg = small_config(tmp, **{"train.backend": "local", "train.max_epochs": 6,
                               "train.epoch_samples": 1024, "train.patience": 6,
                               "model.mc_samples": 20})
    store = Store(cfg.storage.uri)
    ingest(cfg, store)
    ids = store.read_frames([], SCORABLE)["frame_id"].to_pylist()[:200]
    mark_selected(store, ids, 0)
    simulated_annotator(store, 0, ids)
    ckpt = train_round(cfg, store, 0, seed=0).checkpoint_uri
    first = score_frames(cfg, store, ckpt, seed=5, want_probs=False)
    unl = store.read_frames([], frame_filter(split=Split.POOL, status=FrameStatus.UNLABELED))
    unl = np.isin(first.frame_ids, unl["frame_id"].to_pylist())
    top = first.frame_ids[unl][np.argsort(-first.scores[unl], kind="stable")[:TOP]]
    rows = store.frames.search().where(f"frame_id IN {tuple(top.tolist())}").limit(None).to_arrow()
    copies = pa.concat_tables([rows.set_column(
        rows.schema.get_field_index("frame_id"), "frame_id",
        pa.array([f"copy{c}-{f}" for f in rows["frame_id"].to_pylist()])) for c in range(COPIES)])
    store.add_frames(copies, store.embedding_dim())
    return cfg, store, ckpt, set(top.tolist())


def _repeats(picked: np.ndarray) -> int:
    """Picks that show an image already in the batch (copies map to their original)."""
    groups = [f.split("-", 1)[1] if f.startswith("copy") else f for f in picked.tolist()]
    return len(groups) - len(set(groups))


def test_batchbald_keeps_its_diversity_on_every_path(trained):
    """Defect 1: with per-frame masks the pixel (actor) path picked 9 repeats of 20 on such
    a pool; with the pass's masks shared by all frames both paths give the same
    probabilities and so the same batch."""
    cfg, store, ckpt, top = trained
    frozen = cfg.with_overrides(**{"model.freeze_backbone": True})
    pixels = score_frames(cfg, store, ckpt, seed=7, want_probs=True)
    cached = score_frames(frozen, store, ckpt, seed=7, want_probs=True)
    assert not pixels.timing.get("cached") and cached.timing["cached"]
    assert list(pixels.frame_ids) == list(cached.frame_ids)
    np.testing.assert_allclose(pixels.probs, cached.probs, rtol=1e-4, atol=1e-6)
    assert pixels.mc_masks == cached.mc_masks == {"seed": 7, "samples": 20, "layers": "head",
                                                  "p": 0.5}
    # Copies of a frame get the same T samples: their probabilities are equal.
    ids = pixels.frame_ids.astype(str)
    one = next(iter(top))
    same = np.flatnonzero((ids == one) | np.char.endswith(ids.astype(str), "-" + one))
    assert same.size == COPIES + 1
    np.testing.assert_allclose(pixels.probs[same], pixels.probs[same[:1]].repeat(same.size, 0),
                               atol=1e-6)
    labeled = np.isin(ids, store.read_frames([], frame_filter(
        status=FrameStatus.LABELED))["frame_id"].to_pylist())
    picks = {}
    for name, s in (("pixels", pixels), ("cached", cached)):
        picks[name] = s.frame_ids[acquisition.select("batchbald", k=K, probs=s.probs,
                                                     labeled=labeled, seed=0)]
    topk = pixels.frame_ids[acquisition.select("topk:bald", k=K, probs=pixels.probs,
                                               labeled=labeled, seed=0)]
    print({k: _repeats(v) for k, v in picks.items()}, "topk:", _repeats(topk))
    assert _repeats(picks["pixels"]) == _repeats(picks["cached"]) <= 3
    assert _repeats(topk) >= 2 * COPIES - TOP  # top-k BALD fills up with copies
    strip = np.vectorize(lambda f: f.split("-", 1)[1] if f.startswith("copy") else f)
    assert sorted(strip(picks["pixels"])) == sorted(strip(picks["cached"]))


def test_mc_layers_all_runs_the_whole_model_and_never_reads_the_cache(trained):
    """Defect 4: ``mc_layers: all`` scores with the backbone T times (consistent masks at
    every site), even with a frozen backbone and a valid cache; ``head`` re-scores from it."""
    cfg, store, ckpt, _ = trained
    frozen = cfg.with_overrides(**{"model.freeze_backbone": True})
    score_frames(frozen, store, ckpt, seed=1, want_probs=False)  # fills the cache if needed
    again = score_frames(frozen, store, ckpt, seed=2, want_probs=False)
    assert again.timing["cached"] and again.timing["embedded"] == 0
    model = load_checkpoint(ckpt, cfg.model).eval()
    assert store.get_meta(CACHE_KEY) == backbone_fingerprint(model)
    every = frozen.with_overrides(**{"model.mc_layers": "all"})
    ids = store.read_frames([], SCORABLE)["frame_id"].to_pylist()[:50]
    s = score_frames(every, store, ckpt, seed=3, want_probs=True, candidate_ids=ids)
    assert not s.timing.get("cached") and s.mc_masks["layers"] == "all"
    assert store.get_meta(CACHE_KEY) == backbone_fingerprint(model)  # still valid for 'head'
    model = load_checkpoint(ckpt, every.model).eval()
    t = store.read_frames(["image"], f"frame_id IN {tuple(ids)}")
    x = images_to_tensor(t["image"], 28, 28, 1)
    with torch.no_grad():
        expect = mc_probs(model, x, draw_masks(model, 20, 3))
        np.testing.assert_allclose(s.embeddings, model.features(x).numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(s.probs, expect.numpy(), rtol=1e-4, atol=1e-6)
    head = score_frames(frozen, store, ckpt, seed=3, want_probs=True, candidate_ids=ids)
    assert not np.allclose(head.probs, s.probs, atol=1e-3)  # the conv masks act


def test_frozen_batchnorm_backbone_keeps_its_cache_across_rounds(ray_session, tmp_path,
                                                                image_pool):
    """Defect 3: a frozen resnet18 (batch norm) trained each round leaves its running
    statistics, so its fingerprint and the embedding cache survive: no round re-embeds."""
    from alray.models import build_model
    from alray.rounds import RoundController

    base = small_config(tmp_path, **{
        "pool.uri": str(image_pool), "pool.format": "image_folder", "pool.limit": None,
        "pool.val_fraction": 0.2, "pool.test_fraction": 0.1, "pool.embed_on_ingest": True,
        "model.architecture": "resnet18", "model.input_size": 32, "model.in_channels": 3,
        "model.num_classes": 3, "model.mc_samples": 4, "train.backend": "local",
        "train.max_epochs": 2, "train.epoch_samples": 32, "train.batch_size": 8,
        "loop.initial_labels": 6, "acquisition.batch_size": 3,
        "acquisition.strategy": "bald", "acquisition.scoring_batch_size": 64})
    torch.manual_seed(3)
    weights = tmp_path / "resnet18.pt"
    torch.save(build_model(base.model, 3).backbone.state_dict(), weights)
    cfg = base.with_overrides(**{"model.freeze_backbone": True, "model.weights_uri": str(weights)})
    store = Store(cfg.storage.uri)
    ingest(cfg, store)
    fp = store.get_meta(CACHE_KEY)
    assert fp is not None and store.count_frames("embedding IS NULL") == 1  # the corrupt PNG
    RoundController(cfg, store).run()
    rounds = store.rounds()
    assert len(rounds) == 3
    for r in rounds[1:]:
        assert r["diagnostics"]["embedding_cache"] is True
        assert r["diagnostics"]["embedded_frames"] == 0, r["diagnostics"]
    assert store.get_meta(CACHE_KEY) == fp
    last = load_checkpoint(rounds[-1]["checkpoint_uri"], cfg.model)
    assert backbone_fingerprint(last) == fp
