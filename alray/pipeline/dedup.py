"""Near-duplicate frames: collapse frames whose embeddings are nearly the same.

Two frames are near-duplicates when the cosine similarity of their embeddings exceeds a
threshold. Collapsing runs in two stages, neither of which forms an N x N matrix:

1. **Within a clip** (frames of one ``source_id`` in ``frame_index`` order), a frame that is
   similar to the current *leader* joins it; the first dissimilar frame becomes the next leader.
   The loop runs once per leader (a scene change), each step a vectorised window comparison.
2. **Across leaders** (other clips, or a scene that returns later in the same clip), each
   leader's neighbours above the threshold are found exactly in blocks (few leaders) or with a
   LanceDB IVF-PQ index (``ann_min_rows`` leaders or more), and connected leaders form one group.

Each group keeps one representative; the others are never offered to a selection strategy,
and no member of a group that holds a selected or labeled frame is offered either (whichever
member is the representative). Each round appends its groups to the ``near_duplicates`` table
(keyed by round), so what one round found is never lost to the next.
"""

from __future__ import annotations

import logging
import tempfile

import numpy as np
import pyarrow as pa

from alray.storage import Store

__all__ = ["DUPLICATES_TABLE", "collapse", "duplicates_of_taken", "near_duplicate_of_taken",
           "non_representatives", "save_duplicates"]

log = logging.getLogger(__name__)
DUPLICATES_TABLE = "near_duplicates"
_SCHEMA = pa.schema([pa.field("round", pa.int64(), nullable=False),
                     pa.field("frame_id", pa.string(), nullable=False),
                     pa.field("representative", pa.string())])


def _normalise(emb: np.ndarray) -> np.ndarray:
    emb = np.asarray(emb, dtype=np.float32)
    return emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)


def _leaders_in_clip(e: np.ndarray, threshold: float, window: int) -> np.ndarray:
    """Leader position of each row of one clip's ``[n, D]`` unit embeddings (in time order)."""
    n = len(e)
    lead = np.empty(n, dtype=np.int64)
    i = 0
    while i < n:  # one iteration per leader (scene change), not per frame
        j = i + 1
        while True:  # extend the leader's run window by window
            sims = e[j: j + window] @ e[i]  # [<= window]
            below = np.flatnonzero(sims <= threshold)
            end = j + (int(below[0]) if below.size else len(sims))
            if below.size or end >= n:
                break
            j = end
        lead[i:end] = i
        i = end
    return lead


def _pairs_exact(u: np.ndarray, threshold: float, block_elems: int = 1 << 24) -> np.ndarray:
    """``[P, 2]`` index pairs ``i < j`` of rows of ``u`` with cosine similarity > threshold."""
    n = len(u)
    rows = max(1, block_elems // max(n, 1))
    out = []
    for s in range(0, n, rows):  # blocks of rows: memory rows x n, never n x n
        sims = u[s: s + rows] @ u.T  # [rows, n]
        i, j = np.nonzero(sims > threshold)
        i = i + s
        keep = j > i
        out.append(np.stack([i[keep], j[keep]], axis=1))
    return np.concatenate(out) if out else np.zeros((0, 2), dtype=np.int64)


def _pairs_ann(u: np.ndarray, threshold: float, k: int = 16, nprobes: int = 16,
               query_batch: int = 2048) -> np.ndarray:
    """Like :func:`_pairs_exact` via a LanceDB IVF-PQ index (approximate recall)."""
    import lancedb

    n, d = u.shape
    with tempfile.TemporaryDirectory(prefix="alray-dedup-") as tmp:
        db = lancedb.connect(tmp)
        vec = pa.FixedSizeListArray.from_arrays(pa.array(u.reshape(-1)), d)
        table = db.create_table("leaders", pa.table({"row": np.arange(n), "vector": vec}))
        table.create_index("vector", config=_ivf_pq(n, d))
        out = []
        for s in range(0, n, query_batch):  # batches of query vectors
            res = (table.search(u[s: s + query_batch]).metric("cosine").limit(k)
                   .nprobes(nprobes).select(["row", "_distance"]).to_arrow())
            qi = res["query_index"].to_numpy() + s
            nb = res["row"].to_numpy()
            # PQ distances are approximate: confirm each candidate pair exactly.
            sim = np.einsum("ij,ij->i", u[qi], u[nb])
            keep = (sim > threshold) & (nb != qi)
            out.append(np.stack([np.minimum(qi, nb)[keep], np.maximum(qi, nb)[keep]], axis=1))
    return np.unique(np.concatenate(out), axis=0) if out else np.zeros((0, 2), dtype=np.int64)


def _ivf_pq(n: int, d: int):
    """IVF-PQ settings for ``n`` cosine vectors of size ``d`` (~512 rows per partition)."""
    from lancedb.index import IvfPq

    sub = next(s for s in (16, 8, 4, 2, 1) if d % s == 0 and d // s >= 1)
    return IvfPq(distance_type="cosine", num_partitions=max(1, n // 512), num_sub_vectors=sub)


def collapse(embeddings: np.ndarray, source_id: np.ndarray, frame_index: np.ndarray, *,
             threshold: float, ann_min_rows: int = 50_000, window: int = 1024) -> np.ndarray:
    """Group near-duplicate frames and pick one representative per group.

    Args:
        embeddings: ``[N, D]`` float embeddings (any scale; compared by cosine).
        source_id: ``[N]`` clip of each frame.
        frame_index: ``[N]`` position of each frame in its clip.
        threshold: Cosine similarity above which frames are near-duplicates, in (0, 1].
        ann_min_rows: Use an IVF-PQ index for stage 2 from this many leaders on.
        window: Frames compared per step in stage 1.

    Returns:
        ``[N]`` int64: the row of each frame's representative (``rep[i] == i`` for the
        representatives). The representative of a group is its earliest leader.

    Raises:
        ValueError: bad threshold or mismatched lengths.
    """
    n = len(embeddings)
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold={threshold}: must be in (0, 1]")
    if len(source_id) != n or len(frame_index) != n:
        raise ValueError(f"embeddings ({n}), source_id ({len(source_id)}) and frame_index "
                         f"({len(frame_index)}) must have the same length")
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    u = _normalise(embeddings)
    src = np.asarray(source_id).astype(str)
    order = np.lexsort((np.asarray(frame_index), src))
    bounds = np.flatnonzero(np.r_[True, src[order][1:] != src[order][:-1], True])
    lead = np.empty(n, dtype=np.int64)
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):  # per clip
        rows = order[a:b]
        lead[rows] = rows[_leaders_in_clip(u[rows], threshold, window)]
    leaders = np.flatnonzero(lead == np.arange(n))
    ul = u[leaders]
    pairs = (_pairs_ann(ul, threshold) if len(leaders) >= ann_min_rows
             else _pairs_exact(ul, threshold))
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    m = len(leaders)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(m, m))
    _, comp = connected_components(graph, directed=False)
    first = np.full(comp.max() + 1, m, dtype=np.int64)
    np.minimum.at(first, comp, np.arange(m))  # earliest leader of each group
    rep_of_leader = leaders[first[comp]]
    pos = np.searchsorted(leaders, lead)
    rep = rep_of_leader[pos]
    log.info("near-duplicates: %d frames, %d leaders, %d representatives", n, m,
             int((rep == np.arange(n)).sum()))
    return rep


def near_duplicate_of_taken(rep: np.ndarray, taken: np.ndarray) -> np.ndarray:
    """Rows in a group (``rep`` from :func:`collapse`) with a taken row, taken rows excluded.

    Args:
        rep: ``[N]`` representative row of each row.
        taken: ``bool[N]`` rows already selected or labeled.

    Returns:
        ``bool[N]``.
    """
    hit = np.zeros(len(rep), dtype=bool)
    hit[np.asarray(rep)[np.asarray(taken, dtype=bool)]] = True  # groups holding a taken row
    return hit[rep] & ~np.asarray(taken, dtype=bool)


def _open(store: Store):
    if DUPLICATES_TABLE not in store._names():
        return None
    table = store.db.open_table(DUPLICATES_TABLE)
    if "round" not in table.schema.names:  # a record from before rounds were kept: start over
        store.db.drop_table(DUPLICATES_TABLE)
        return None
    return table


def save_duplicates(store: Store, frame_ids: np.ndarray, rep: np.ndarray, round_n: int) -> int:
    """Record round ``round_n``'s non-representatives and their representatives.

    Earlier rounds' records are kept; re-running a round replaces that round's record only.

    Returns:
        The number of non-representative frames.
    """
    dup = np.flatnonzero(rep != np.arange(len(rep)))
    ids = np.asarray(frame_ids).astype(str)
    data = pa.table({"round": pa.array(np.full(len(dup), int(round_n), dtype=np.int64)),
                     "frame_id": pa.array(ids[dup], pa.string()),
                     "representative": pa.array(ids[rep[dup]], pa.string())}, schema=_SCHEMA)
    table = _open(store) or store.db.create_table(DUPLICATES_TABLE, schema=_SCHEMA,
                                                  exist_ok=True)
    (table.merge_insert(["round", "frame_id"]).when_matched_update_all()
     .when_not_matched_insert_all()
     .when_not_matched_by_source_delete(f"round = {int(round_n)}").execute(data))
    store._tables.pop(DUPLICATES_TABLE, None)
    return len(dup)


def _records(store: Store) -> pa.Table | None:
    table = _open(store)
    return None if table is None else table.to_arrow()


def non_representatives(store: Store) -> np.ndarray:
    """Frame ids any round recorded as near-duplicates of another frame (may be empty)."""
    t = _records(store)
    if t is None:
        return np.zeros(0, dtype=object)
    return np.unique(np.asarray(t["frame_id"].to_pylist(), dtype=object))


def duplicates_of_taken(store: Store, taken_ids: np.ndarray) -> np.ndarray:
    """Frame ids recorded (in any round) in one group with a taken frame, taken ones excluded.

    Args:
        store: The project store.
        taken_ids: Ids of frames already selected or labeled.

    Returns:
        Object array of ids never to offer (representatives and members alike).
    """
    t = _records(store)
    if t is None or t.num_rows == 0:
        return np.zeros(0, dtype=object)
    member = np.asarray(t["frame_id"].to_pylist(), dtype=object)
    rep = np.asarray(t["representative"].to_pylist(), dtype=object)
    taken_ids = np.asarray(taken_ids, dtype=object)
    hit = np.unique(rep[np.isin(member, taken_ids) | np.isin(rep, taken_ids)])  # groups
    out = np.unique(np.concatenate([hit, member[np.isin(rep, hit)]]))
    return out[~np.isin(out, taken_ids)]
