"""The round state machine, persisted in the store's ``rounds`` table.

A round ``n`` goes ``SEEDING`` (n = 0) or ``SCORING → SELECTING`` (n ≥ 1), then
``AWAITING_LABELS → TRAINING → COMPLETED`` (or ``STOPPED`` when a stopping rule fires after
training). ``FAILED`` keeps the error and the state it failed in; running again resumes there.
Every step checks the store before it works, so a crashed step is resumed, never repeated:
a round that already selected frames never selects again.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa

from alray import acquisition
from alray.acquisition import near_taken
from alray.config import ProjectConfig
from alray.diagnostics import class_balance, paired_topk_overlap, score_gap, topk_overlap
from alray.labels import LabelItem, submit_labels
from alray.pipeline.dedup import (
    collapse,
    duplicates_of_taken,
    near_duplicate_of_taken,
    non_representatives,
    save_duplicates,
)
from alray.pipeline.score import score_frames
from alray.pipeline.select import (
    balanced_seed,
    mark_selected,
    pick,
    record_selection,
    selected_in_round,
    video_groups,
)
from alray.pipeline.train import train_round
from alray.stopping import stop_reason
from alray.storage import Store, sql_list
from alray.storage.schema import FrameStatus, Split
from alray.storage.store import SCORABLE, frame_filter

__all__ = ["RoundController", "RoundState", "TRANSITIONS", "IllegalTransition"]

log = logging.getLogger(__name__)
#: Frame columns selection reads besides the ids: label state and what the video rule needs.
_META = ["status", "source_id", "source_uri", "timestamp_ms"]
#: ``meta`` key of the probe set (``<key>/<round>``: its scores under that round's model).
_PROBE_KEY = "rank_probe"


class RoundState(enum.StrEnum):
    SEEDING = "SEEDING"
    SCORING = "SCORING"
    SELECTING = "SELECTING"
    AWAITING_LABELS = "AWAITING_LABELS"
    TRAINING = "TRAINING"
    COMPLETED = "COMPLETED"
    STOPPED = "STOPPED"
    FAILED = "FAILED"


S = RoundState
TRANSITIONS: dict[RoundState, set[RoundState]] = {
    S.SEEDING: {S.AWAITING_LABELS, S.FAILED},
    S.SCORING: {S.SELECTING, S.FAILED},
    S.SELECTING: {S.AWAITING_LABELS, S.FAILED},
    S.AWAITING_LABELS: {S.TRAINING, S.FAILED},
    S.TRAINING: {S.COMPLETED, S.STOPPED, S.FAILED},
    S.COMPLETED: set(),
    S.STOPPED: set(),
    S.FAILED: {S.SEEDING, S.SCORING, S.SELECTING, S.AWAITING_LABELS, S.TRAINING},
}
TERMINAL = {S.COMPLETED, S.STOPPED}


class IllegalTransition(RuntimeError):
    """A round was asked to move along an edge that is not in :data:`TRANSITIONS`."""


Annotator = Callable[[Store, int, list[str]], None]


def simulated_annotator(store: Store, round_n: int, frame_ids: list[str]) -> None:
    """Label frames from the pool's shipped ground truth (simulation only)."""
    gt = store.ground_truth(frame_ids)
    items = [LabelItem(f, int(gt[f]), f"sim:{f}") for f in frame_ids if f in gt]
    submit_labels(store, items, source="simulated")


class RoundController:
    """Drives rounds for one project store.

    Args:
        cfg: the project config.
        store: the project store.
        annotator: labels a round's selection; ``None`` leaves the round AWAITING_LABELS
            (the service waits for labels over HTTP).
        strategy: overrides ``cfg.acquisition.strategy``.
        seed: overrides ``cfg.seed``.
        force: train even if some of the round's selected frames are still unlabeled.
    """

    def __init__(self, cfg: ProjectConfig, store: Store, *, annotator: Annotator | None =
                 simulated_annotator, strategy: str | None = None, seed: int | None = None,
                 force: bool = False):
        self.force = force
        self.cfg = cfg
        self.store = store
        self.annotator = annotator
        self.strategy = strategy or cfg.acquisition.strategy
        self.seed = cfg.seed if seed is None else seed
        self._scored = None  # the SCORING output handed to SELECTING in this process

    # ---- state -------------------------------------------------------------------------
    def _move(self, rec: dict, to: RoundState, **fields: Any) -> dict:
        frm = RoundState(rec["state"])
        if to not in TRANSITIONS[frm]:
            raise IllegalTransition(f"round {rec['round']}: {frm} -> {to} is not allowed")
        rec.update(fields, state=to.value)
        if to != S.FAILED:
            rec["error"] = None
        return self.store.put_round(rec)

    def history(self) -> list[dict]:
        return [{"round": r["round"], **r["metrics"]} for r in self.store.rounds()
                if r["state"] in TERMINAL]

    def finished(self) -> str | None:
        """The stop reason if the project has stopped under the *current* config.

        A project stopped by, say, ``max_rounds: 5`` continues when re-run with a higher limit.
        """
        rounds = self.store.rounds()
        if rounds and rounds[-1]["state"] == S.STOPPED:
            return self._stop_reason(self.history())
        if rounds and rounds[-1]["state"] in TERMINAL and self._batch_size() == 0:
            # The budget counts selected frames, the stop rule labels: a round whose
            # selection was not all labeled can leave labels < budget with nothing to select.
            return "label_budget"
        return None

    def _stop_reason(self, history: list[dict]) -> str | None:
        loop = self.cfg.loop
        left = self.store.count_status(FrameStatus.UNLABELED, split=Split.POOL)
        return stop_reason(history, max_rounds=loop.max_rounds, label_budget=loop.label_budget,
                           target_accuracy=loop.target_accuracy,
                           plateau_rounds=loop.plateau_rounds,
                           plateau_epsilon=loop.plateau_epsilon, pool_left=left)

    def _batch_size(self) -> int:
        k = self.cfg.acquisition.batch_size
        budget = self.cfg.loop.label_budget
        if budget is not None:
            k = min(k, budget - self.store.count_status(
                (FrameStatus.SELECTED, FrameStatus.LABELED), split=Split.POOL))
        return max(k, 0)

    # ---- the loop ----------------------------------------------------------------------
    def run(self, on_round: Callable[[dict], None] | None = None) -> str:
        """Run rounds until a stopping rule fires; returns the stop reason."""
        while True:
            reason = self.finished()
            if reason:
                return reason
            rec = self.step_round()
            if on_round:
                on_round(rec)
            if rec["state"] == S.AWAITING_LABELS:
                return "awaiting_labels"

    def current(self) -> dict:
        """The open round (resumed or newly started)."""
        rounds = self.store.rounds()
        if rounds and rounds[-1]["state"] not in TERMINAL:
            return rounds[-1]
        n = rounds[-1]["round"] + 1 if rounds else 0
        if n and self._batch_size() == 0:
            raise RuntimeError(f"round {n}: loop.label_budget={self.cfg.loop.label_budget} is "
                               "spent (every budgeted frame was selected); nothing to select")
        return self.store.put_round({
            "round": n, "state": (S.SEEDING if n == 0 else S.SCORING).value,
            "strategy": "random" if n == 0 else self.strategy,
            "batch_size": self.cfg.loop.initial_labels if n == 0 else self._batch_size(),
            "metrics": {}, "diagnostics": {"seed": self.seed},
        })

    def step_round(self) -> dict:
        """Advance the open round as far as it can go; returns its record."""
        rec = self.current()
        if rec["state"] == S.FAILED:
            resume = rec["diagnostics"].get("failed_state", S.SCORING)
            rec = self._move(rec, RoundState(resume))
        steps = {S.SEEDING: self._seed, S.SCORING: self._score, S.SELECTING: self._select,
                 S.AWAITING_LABELS: self._await_labels, S.TRAINING: self._train}
        while rec["state"] in steps:
            state = RoundState(rec["state"])
            t0 = time.perf_counter()
            try:
                nxt = steps[state](rec)
            except Exception as err:
                rec["diagnostics"]["failed_state"] = state.value
                self._move(rec, S.FAILED, error=f"{type(err).__name__}: {err}")
                raise
            rec["diagnostics"].setdefault("timings", {})[state.value.lower()] = round(
                time.perf_counter() - t0, 3)
            if nxt is None:  # waiting on the outside world
                return self.store.put_round(rec)
            rec = self._move(rec, nxt)
        return rec

    # ---- steps -------------------------------------------------------------------------
    def _offer(self) -> tuple[np.ndarray, np.ndarray, pa.Table]:
        """Pool frames a strategy that scores nothing may consider: ids, a taken mask
        (selected or labeled) and their ``_META`` columns. Recorded near-duplicates are left
        out (non-representatives, and any frame grouped with a taken one)."""
        t = self.store.read_frames(_META, SCORABLE)
        ids = np.asarray(t["frame_id"].to_pylist(), dtype=object)
        taken = np.asarray(t["status"].to_pylist(), dtype=object) != FrameStatus.UNLABELED
        if self.cfg.pool.dedup_threshold is not None:  # near-duplicates are never offered
            keep = taken | ~self._recorded_duplicates(ids, taken)
            ids, taken, t = ids[keep], taken[keep], t.filter(pa.array(keep))
        return ids, taken, t

    def _recorded_duplicates(self, ids: np.ndarray, taken: np.ndarray) -> np.ndarray:
        """``bool[N]``: recorded (any round) as a non-representative or grouped with a taken
        frame."""
        return (np.isin(ids, non_representatives(self.store))
                | np.isin(ids, duplicates_of_taken(self.store, ids[taken])))

    def _seed(self, rec: dict) -> RoundState:
        if not selected_in_round(self.store, 0):
            ids, taken, meta = self._offer()
            per_class = self.cfg.loop.initial_per_class
            if per_class is None:
                self._choose(rec, "random", ids, taken, meta, seed=self.seed)
            else:
                rows = balanced_seed(self.store, ids, taken, per_class, self.seed)
                rec["batch_size"], rec["strategy"] = len(rows), "balanced"
                self._commit(rec, "balanced", ids[rows], scores=None)
        return S.AWAITING_LABELS

    def _score(self, rec: dict) -> RoundState:
        needs = acquisition.requirements(self.strategy)
        if not needs:  # e.g. random: nothing to score, the pixels are not touched
            rec["diagnostics"]["scored"] = False
            return S.SELECTING
        prev = self.store.get_round(rec["round"] - 1)
        t = self.store.read_frames([*_META, "score", "frame_index"], SCORABLE)
        status = np.asarray(t["status"].to_pylist(), dtype=object)
        taken_all = status != FrameStatus.UNLABELED
        all_ids = np.asarray(t["frame_id"].to_pylist(), dtype=object)
        candidates, probe = None, None
        pool = self.cfg.acquisition.candidate_pool
        if pool is not None:
            probe = self._probe(all_ids, taken_all)
            rng = np.random.default_rng([self.seed, rec["round"]])
            unl = np.flatnonzero(~taken_all)
            keep = taken_all | np.isin(all_ids, probe)
            keep[rng.choice(unl, min(pool, unl.size), replace=False)] = True
            candidates = all_ids[keep].tolist()
        scored = score_frames(self.cfg, self.store, prev["checkpoint_uri"], seed=self.seed +
                              rec["round"], want_probs=self._needs_probs(needs),
                              candidate_ids=candidates)
        # Both sides are sorted by frame_id: map scored frames to table rows without a loop.
        table_ids = all_ids.astype(str)
        rows = np.searchsorted(table_ids, scored.frame_ids.astype(str))
        if not np.array_equal(table_ids[np.minimum(rows, len(table_ids) - 1)],
                              scored.frame_ids.astype(str)):
            raise RuntimeError("scored frames do not match the pool's frames (changed mid-round?)")
        labeled = taken_all[rows]
        old = t["score"].to_numpy(zero_copy_only=False).astype(np.float32)[rows]
        diag = rec["diagnostics"]
        diag.update(score_gap(scored.scores, labeled))
        diag["scored"], diag["score_scope"] = True, "pool" if probe is None else "candidates"
        if "topk_overlap_vs" not in diag:  # scored again on resume: frames.score is ours now
            diag.update(self._rank_change(rec, scored, labeled, old, probe))
        update = {"frame_id": pa.array(scored.frame_ids.tolist(), pa.string()),
                  "score": scored.scores}
        if not scored.timing.get("cached"):  # cached embeddings are already stored
            update["embedding"] = pa.FixedSizeListArray.from_arrays(
                pa.array(scored.embeddings.reshape(-1)), scored.embeddings.shape[1])
        self.store.update_frames(pa.table(update))
        diag["embedding_cache"] = bool(scored.timing.get("cached"))
        diag["mc_masks"] = scored.mc_masks  # the pass's seeded dropout masks
        diag["embedded_frames"] = int(scored.timing.get("embedded", len(rows)))
        self._scored = self._collapse_duplicates(rec, scored, t, rows, labeled)
        return S.SELECTING

    def _probe(self, ids: np.ndarray, taken: np.ndarray) -> np.ndarray:
        """The project's probe set (drawn once from unlabeled pool frames, kept in ``meta``)."""
        probe = self.store.get_meta(_PROBE_KEY)
        if probe is None:
            unl = ids[~taken]
            rng = np.random.default_rng([self.seed, 0x9B0BE])
            size = min(self.cfg.acquisition.probe_size, unl.size)
            probe = sorted(rng.choice(unl, size, replace=False).tolist())
            self.store.set_meta(_PROBE_KEY, probe)
        return np.asarray(probe, dtype=object)

    def _rank_change(self, rec: dict, scored, labeled: np.ndarray, old: np.ndarray,
                     probe: np.ndarray | None) -> dict[str, Any]:
        """``topk_overlap`` between this round's model and the last model that scored the same
        frames (``topk_overlap_vs``: its round), over frames unlabeled now.

        Whole-pool scoring compares with ``frames.score`` when the last scoring round scored
        the whole pool too. With ``candidate_pool``, every round scores the probe set and
        stores its scores; the comparison is over the probe alone."""
        k = max(rec["batch_size"], 1)
        base = next((r for r in reversed(self.store.rounds()) if r["round"] < rec["round"]
                     and r["diagnostics"].get("scored")), None)
        scope = None if base is None else base["diagnostics"].get("score_scope")
        out: dict[str, Any] = {"topk_overlap": None, "topk_overlap_vs": None}
        if probe is None:
            if scope == "pool":
                out["topk_overlap"] = topk_overlap(
                    np.where(labeled, np.nan, old), np.where(labeled, -np.inf, scored.scores), k)
                out["topk_overlap_vs"] = base["round"]
            return out
        ids = scored.frame_ids.astype(str)
        inp = np.isin(ids, probe.astype(str))
        self.store.set_meta(f"{_PROBE_KEY}/{rec['round']}", {
            "ids": ids[inp].tolist(), "scores": scored.scores[inp].astype(float).tolist()})
        before = self.store.get_meta(f"{_PROBE_KEY}/{base['round']}") if scope else None
        if before:
            keep = inp & ~labeled
            out["topk_overlap"], out["topk_overlap_frames"] = paired_topk_overlap(
                np.asarray(before["ids"], dtype=str), np.asarray(before["scores"]), ids[keep],
                scored.scores[keep], k)
            out["topk_overlap_vs"] = base["round"]
        return out

    def _collapse_duplicates(self, rec: dict, scored, t: pa.Table, rows: np.ndarray,
                             labeled: np.ndarray) -> tuple[Any, np.ndarray, pa.Table]:
        """Drop near-duplicates (``pool.dedup_threshold``) from the scored candidates, keeping
        taken frames: non-representatives, frames grouped with a taken frame, and frames a
        round recorded so. With cached embeddings (a frozen backbone), groups are formed
        over the whole pool, not only this round's candidates. Returns ``(scored, labeled,
        meta)`` for selection."""
        meta = t.select(_META).take(pa.array(rows))
        thr = self.cfg.pool.dedup_threshold
        if thr is None:
            return scored, labeled, meta
        from dataclasses import replace

        ids = scored.frame_ids.astype(object)
        src = np.asarray(t["source_id"].to_pylist(), dtype=object)
        fidx = t["frame_index"].to_numpy(zero_copy_only=False)
        taken = np.asarray(t["status"].to_pylist(), dtype=object) != FrameStatus.UNLABELED
        emb_all = None
        if scored.timing.get("cached") and len(rows) < t.num_rows:  # whole pool, cached
            e = self.store.read_frames(["embedding"], SCORABLE)
            if (e.num_rows == t.num_rows and e["embedding"].null_count == 0
                    and e["frame_id"].equals(t["frame_id"])):
                col = e["embedding"].combine_chunks()  # FixedSizeList: one flat buffer
                emb_all = col.flatten().to_numpy().reshape(len(col), col.type.list_size)
        if emb_all is not None:
            rep = collapse(emb_all, src, fidx, threshold=thr,
                           ann_min_rows=self.cfg.pool.ann_min_rows)
            saved = save_duplicates(self.store, t["frame_id"].to_numpy(zero_copy_only=False),
                                    rep, rec["round"])
            block = ((rep != np.arange(len(rep))) | near_duplicate_of_taken(rep, taken))[rows]
        else:
            rep = collapse(scored.embeddings, src[rows], fidx[rows], threshold=thr,
                           ann_min_rows=self.cfg.pool.ann_min_rows)
            saved = save_duplicates(self.store, ids, rep, rec["round"])
            block = (rep != np.arange(len(rep))) | near_duplicate_of_taken(rep, labeled)
        block |= self._recorded_duplicates(ids, labeled)
        keep = np.flatnonzero(~block | labeled)
        rec["diagnostics"]["near_duplicates"] = saved
        rec["diagnostics"]["near_duplicates_withheld"] = int((block & ~labeled).sum())
        whole = emb_all is not None or len(rows) == t.num_rows
        rec["diagnostics"]["dedup_scope"] = "pool" if whole else "candidates"
        return (replace(scored, frame_ids=scored.frame_ids[keep], scores=scored.scores[keep],
                        embeddings=scored.embeddings[keep],
                        probs=None if scored.probs is None else scored.probs[keep]),
                labeled[keep], meta.take(pa.array(keep)))

    def _stored_score_suffices(self) -> bool:
        """True when the strategy is top-k of the score the scoring actors already compute."""
        name = self.strategy if ":" in self.strategy else f"topk:{self.strategy}"
        return name == f"topk:{self.cfg.acquisition.score}"

    def _needs_probs(self, needs: set[str]) -> bool:
        return "probs" in needs and not self._stored_score_suffices()

    def _select(self, rec: dict) -> RoundState:
        if selected_in_round(self.store, rec["round"]):
            return S.AWAITING_LABELS  # resumed after the selection was written
        seed = self.seed + rec["round"]
        if not acquisition.requirements(self.strategy):
            ids, taken, meta = self._offer()
            self._choose(rec, self.strategy, ids, taken, meta, seed=seed)
        else:
            if self._scored is None:  # resumed between scoring and selecting: score again
                self._score(rec)
            scored, labeled, meta = self._scored
            self._choose(rec, self.strategy, scored.frame_ids, labeled, meta, seed=seed,
                         scored=scored, probs=scored.probs, embeddings=scored.embeddings,
                         scores=scored.scores if self._stored_score_suffices() else None)
        self._scored = None
        return S.AWAITING_LABELS

    def _choose(self, rec: dict, strategy: str, ids: np.ndarray, taken: np.ndarray,
                meta: pa.Table, *, seed: int, scored=None, **inputs: Any) -> None:
        """Pick ``rec["batch_size"]`` frames with ``strategy`` under the video constraint,
        then record and mark them."""
        video: dict[str, Any] = {}
        vcfg = self.cfg.acquisition.video
        if vcfg.enabled:
            groups = video_groups(self.cfg, meta["source_id"].to_numpy(zero_copy_only=False),
                                  meta["source_uri"].to_numpy(zero_copy_only=False))
            groups = pa.array(groups).dictionary_encode().indices.to_numpy()  # ints: fast sorts
            ts = meta["timestamp_ms"].fill_null(0).to_numpy(zero_copy_only=False)
            video = {"groups": groups, "timestamps_ms": ts, "min_gap_ms": vcfg.min_gap_ms,
                     "max_per_group": vcfg.max_per_group}
            if vcfg.min_gap_ms:  # nor close to a frame taken in an earlier round
                near = near_taken(groups, ts, taken, vcfg.min_gap_ms)
                rec["diagnostics"]["video_withheld"] = int(near.sum())
                taken = taken | near  # never picked; taken rows stay known to the strategy
        rows = pick(strategy, k=rec["batch_size"], frame_ids=ids, labeled=taken, seed=seed,
                    **inputs, **video)
        self._commit(rec, strategy, np.asarray(ids)[rows],
                     scores=None if scored is None else scored.scores[rows])

    def _commit(self, rec: dict, strategy: str, chosen: np.ndarray,
                scores: np.ndarray | None) -> None:
        """Write the selection record, then mark the frames selected (see pipeline.select)."""
        prev = self.store.get_round(rec["round"] - 1) if scores is not None else None
        record_selection(self.store, rec["round"], chosen, strategy=strategy, scores=scores,
                         score_name=self.cfg.acquisition.score,
                         checkpoint_uri=prev["checkpoint_uri"] if prev else None)
        rec["diagnostics"]["reselected"] = mark_selected(self.store, chosen, rec["round"])
        rec["diagnostics"]["selected"] = len(chosen)
        if scores is not None and len(scores):  # from the record, not the mutable frames.score
            rec["diagnostics"]["mean_score_selected"] = float(np.mean(scores))

    def _await_labels(self, rec: dict) -> RoundState | None:
        ids = selected_in_round(self.store, rec["round"])
        awaited = frame_filter(status=FrameStatus.SELECTED,
                               also=f"selected_round = {int(rec['round'])}")
        waiting = self.store.read_frames([], awaited)["frame_id"].to_pylist()
        if waiting and self.annotator is not None:
            self.annotator(self.store, rec["round"], waiting)
            waiting = self.store.read_frames([], awaited)["frame_id"].to_pylist()
        if waiting and not self.force:
            return None
        rec["diagnostics"]["unlabeled_at_training"] = len(waiting)
        labels = self.store.read_frames(["label"], f"frame_id IN {sql_list(ids)}")["label"]
        classes = self.store.get_meta("classes") or []
        rec["diagnostics"].update(class_balance(
            labels.to_numpy(zero_copy_only=False).astype(np.int64), max(len(classes), 2)))
        return S.TRAINING

    def _train(self, rec: dict) -> RoundState:
        prev = self.store.get_round(rec["round"] - 1) if rec["round"] else None
        res = train_round(self.cfg, self.store, rec["round"], seed=self.seed + rec["round"],
                          init_checkpoint=prev["checkpoint_uri"] if prev else None)
        rec["checkpoint_uri"] = res.checkpoint_uri
        rec["metrics"] = res.metrics
        self.store.tag_frames(f"round-{rec['round']}")
        reason = self._stop_reason([*self.history(), {"round": rec["round"], **res.metrics}])
        if reason:
            rec["stop_reason"] = reason
            return S.STOPPED
        return S.COMPLETED

