"""Ray Train really runs data-parallel with ``train.workers: 2`` (DDP over gloo on CPU)."""

from alray.pipeline.ingest import ingest
from alray.pipeline.select import mark_selected
from alray.pipeline.train import load_checkpoint, train_round
from alray.rounds import simulated_annotator
from alray.storage import Store
from tests.conftest import small_config


def test_two_workers_split_every_epoch(ray_session, tmp_path):
    cfg = small_config(tmp_path, **{"train.backend": "ray", "train.workers": 2,
                                    "train.max_epochs": 2, "train.patience": 5,
                                    "train.epoch_samples": 256, "train.batch_size": 32})
    store = Store(cfg.storage.uri)
    ingest(cfg, store)
    ids = store.read_frames([], "split = 'pool'")["frame_id"].to_pylist()[:40]
    mark_selected(store, ids, 0)
    simulated_annotator(store, 0, ids)
    res = train_round(cfg, store, 0, seed=0)
    m = res.metrics
    assert m["world_size"] == 2
    # 256 samples per epoch split over 2 ranks = 128 each = 4 steps of 32 per epoch (not 8).
    assert m["steps"] == 4 * m["epochs"]
    model = load_checkpoint(res.checkpoint_uri, cfg.model)
    assert model.num_classes == 10 and 0.0 <= m["test_accuracy"] <= 1.0
