"""Project GET and /metrics at pool scale: counts come from indexed ``count_rows``, never
from reading frames into Python (issue 17, item 6)."""

from __future__ import annotations

import collections

import numpy as np
import pyarrow as pa
import pytest
from prometheus_client.parser import text_string_to_metric_families

from alray.service import metrics
from alray.service.routes.projects import project_public
from alray.service.settings import ServiceSettings
from alray.service.state import ServiceState
from alray.storage import Store
from benchmarks.serve_scale import build_store, register

N = 50_000
#: The only calls the two endpoints may make on the frames table.
_ALLOWED = {"count_rows"}


class _CountOnly:
    """A frames table that answers ``count_rows`` and records every other attribute asked
    for (a read of frames would go through search/to_arrow/to_pandas/to_lance/...)."""

    def __init__(self, table):
        self._t = table
        self.calls: collections.Counter = collections.Counter()

    def __getattr__(self, name):
        self.calls[name] += 1
        return getattr(self._t, name)


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pool_scale")
    uri = str(tmp / "store")
    build_store(uri, N, seed=3)
    state = ServiceState(ServiceSettings(service_root=str(tmp / "root"),
                                         data_roots=str(tmp)), [])
    register(state, "big", uri)
    return state, uri


def _expected(uri: str) -> tuple[collections.Counter, int]:
    t = Store(uri).read_frames(["split", "status", "score"])
    pairs = collections.Counter(zip(t["split"].to_pylist(), t["status"].to_pylist(),
                                    strict=True))
    return pairs, t.num_rows - t["score"].null_count


def _watch(state: ServiceState) -> _CountOnly:
    p = state.project("big")
    spy = _CountOnly(p.store.frames)
    p.store._tables["frames"] = spy
    return spy


def _scrape(state: ServiceState) -> dict[tuple, float]:
    metrics._COLLECTOR._at = 0.0  # past the scrape cache
    try:
        text, _ = metrics.render_metrics(state, per_project=True)
    finally:
        metrics._COLLECTOR.state = None
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text.decode()) for s in fam.samples}


def test_status_columns_are_bitmap_indexed(big):
    _, uri = big
    idx = {tuple(ix.columns): ix.index_type for ix in Store(uri).frames.list_indices()}
    assert idx[("split",)] == "Bitmap" and idx[("status",)] == "Bitmap"
    assert Store(uri).ensure_status_indices() == []  # idempotent


def test_project_get_counts_without_reading_frames(big):
    state, uri = big
    pairs, _ = _expected(uri)
    spy = _watch(state)
    frames = project_public(state, state.project("big")).frames
    assert set(spy.calls) <= _ALLOWED and spy.calls["count_rows"] > 0, spy.calls
    for split in ("pool", "val", "test"):
        assert frames[split] == sum(c for (sp, _), c in pairs.items() if sp == split)
    for status in ("unlabeled", "selected", "labeled", "failed"):
        assert frames[status] == pairs[("pool", status)]
    assert sum(frames[s] for s in ("pool", "val", "test")) == N


def test_metrics_counts_without_reading_frames(big):
    state, uri = big
    pairs, scored = _expected(uri)
    store = state.project("big").store
    store.append_label_events([{"frame_id": "000000000001", "label": 1, "accepted": True},
                               {"frame_id": "000000000002", "label": 2, "accepted": False},
                               {"frame_id": "000000000003", "label": 3, "accepted": True}])
    spy = _watch(state)
    got = _scrape(state)
    assert set(spy.calls) <= _ALLOWED and spy.calls["count_rows"] > 0, spy.calls
    for (sp, st), c in pairs.items():
        key = ("alray_frames", (("project", "big"), ("split", sp), ("status", st)))
        assert got[key] == c, key
    assert got[("alray_frames_scored", (("project", "big"),))] == scored
    assert got[("alray_labels_awaited", (("project", "big"),))] == pairs[("pool", "selected")]
    assert got[("alray_label_events", (("accepted", "true"), ("project", "big")))] == 2
    assert got[("alray_label_events", (("accepted", "false"), ("project", "big")))] == 1


def test_counts_follow_updates_past_the_index(big):
    """Rows rewritten after indexing (a label batch) are counted too (flat, not stale)."""
    state, uri = big
    writer = Store(uri)
    t = writer.read_frames(["split", "status"], "split = 'pool' AND status = 'unlabeled'")
    ids = t["frame_id"].slice(0, 500)
    writer.update_frames(pa.table({"frame_id": ids,
                                   "status": pa.array(np.full(len(ids), "labeled"))}))
    pairs, _ = _expected(uri)
    spy = _watch(state)
    frames = project_public(state, state.project("big")).frames
    assert set(spy.calls) <= _ALLOWED, spy.calls
    assert frames["labeled"] == pairs[("pool", "labeled")]
    assert frames["unlabeled"] == pairs[("pool", "unlabeled")]
