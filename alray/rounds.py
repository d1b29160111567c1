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
from alray.config import ProjectConfig
from alray.diagnostics import class_balance, score_gap, topk_overlap
from alray.labels import LabelItem, submit_labels
from alray.pipeline.dedup import collapse, non_representatives, save_duplicates
from alray.pipeline.score import score_frames
from alray.pipeline.select import mark_selected, pick, selected_in_round
from alray.pipeline.train import train_round
from alray.stopping import stop_reason
from alray.storage import Store, sql_list

__all__ = ["RoundController", "RoundState", "TRANSITIONS", "IllegalTransition"]

log = logging.getLogger(__name__)


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
        return None

    def _stop_reason(self, history: list[dict]) -> str | None:
        loop = self.cfg.loop
        left = self.store.count_frames("split = 'pool' AND status = 'unlabeled'")
        return stop_reason(history, max_rounds=loop.max_rounds, label_budget=loop.label_budget,
                           target_accuracy=loop.target_accuracy,
                           plateau_rounds=loop.plateau_rounds,
                           plateau_epsilon=loop.plateau_epsilon, pool_left=left)

    def _batch_size(self) -> int:
        k = self.cfg.acquisition.batch_size
        budget = self.cfg.loop.label_budget
        if budget is not None:
            k = min(k, budget - self.store.count_frames("status IN ('selected', 'labeled')"))
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
    def _pool_status(self) -> tuple[np.ndarray, np.ndarray]:
        """Selectable pool frame ids and a mask of those already selected or labeled."""
        t = self.store.read_frames(["status"], "split = 'pool' AND status != 'failed'")
        ids = np.asarray(t["frame_id"].to_pylist(), dtype=object)
        labeled = np.asarray(t["status"].to_pylist(), dtype=object) != "unlabeled"
        if self.cfg.pool.dedup_threshold is not None:  # near-duplicates are never offered
            keep = labeled | ~np.isin(ids, non_representatives(self.store))
            ids, labeled = ids[keep], labeled[keep]
        return ids, labeled

    def _seed(self, rec: dict) -> RoundState:
        if not selected_in_round(self.store, 0):
            ids, labeled = self._pool_status()
            chosen = pick("random", k=rec["batch_size"], frame_ids=ids, labeled=labeled,
                          seed=self.seed)
            rec["diagnostics"]["reselected"] = mark_selected(self.store, chosen, 0)
        return S.AWAITING_LABELS

    def _score(self, rec: dict) -> RoundState:
        needs = acquisition.requirements(self.strategy)
        if not needs:  # e.g. random: nothing to score, the pixels are not touched
            rec["diagnostics"]["scored"] = False
            return S.SELECTING
        prev = self.store.get_round(rec["round"] - 1)
        t = self.store.read_frames(["status", "score", "source_id", "frame_index"],
                                   "split = 'pool' AND status != 'failed'")
        candidates = None
        pool = self.cfg.acquisition.candidate_pool
        status = np.asarray(t["status"].to_pylist(), dtype=object)
        if pool is not None:
            rng = np.random.default_rng([self.seed, rec["round"]])
            unl = np.flatnonzero(status == "unlabeled")
            keep = np.concatenate([np.flatnonzero(status != "unlabeled"),
                                   rng.choice(unl, min(pool, unl.size), replace=False)])
            candidates = t["frame_id"].take(np.sort(keep)).to_pylist()
        scored = score_frames(self.cfg, self.store, prev["checkpoint_uri"], seed=self.seed +
                              rec["round"], want_probs=self._needs_probs(needs),
                              candidate_ids=candidates)
        # Both sides are sorted by frame_id: map scored frames to table rows without a loop.
        table_ids = np.asarray(t["frame_id"].to_pylist(), dtype=str)
        rows = np.searchsorted(table_ids, scored.frame_ids.astype(str))
        if not np.array_equal(table_ids[np.minimum(rows, len(table_ids) - 1)],
                              scored.frame_ids.astype(str)):
            raise RuntimeError("scored frames do not match the pool's frames (changed mid-round?)")
        labeled = status[rows] != "unlabeled"
        old = t["score"].to_numpy(zero_copy_only=False).astype(np.float32)[rows]
        k = max(rec["batch_size"], 1)
        rec["diagnostics"].update(score_gap(scored.scores, labeled))
        rec["diagnostics"]["topk_overlap"] = topk_overlap(
            np.where(labeled, np.nan, old), np.where(labeled, -np.inf, scored.scores), k)
        update = {"frame_id": pa.array(scored.frame_ids.tolist(), pa.string()),
                  "score": scored.scores}
        if not scored.timing.get("cached"):  # cached embeddings are already stored
            update["embedding"] = pa.FixedSizeListArray.from_arrays(
                pa.array(scored.embeddings.reshape(-1)), scored.embeddings.shape[1])
        self.store.update_frames(pa.table(update))
        rec["diagnostics"]["embedding_cache"] = bool(scored.timing.get("cached"))
        rec["diagnostics"]["mc_masks"] = scored.mc_masks  # the pass's seeded dropout masks
        rec["diagnostics"]["embedded_frames"] = int(scored.timing.get("embedded", len(rows)))
        self._scored = self._collapse_duplicates(rec, scored, t, rows, labeled)
        return S.SELECTING

    def _collapse_duplicates(self, rec: dict, scored, t: pa.Table, rows: np.ndarray,
                             labeled: np.ndarray) -> tuple[Any, np.ndarray]:
        """Drop near-duplicate non-representatives (``pool.dedup_threshold``) from the scored
        candidates, keeping labeled frames; returns ``(scored, labeled)`` for selection."""
        thr = self.cfg.pool.dedup_threshold
        if thr is None:
            return scored, labeled
        from dataclasses import replace

        src = np.asarray(t["source_id"].to_pylist(), dtype=object)[rows]
        fidx = t["frame_index"].to_numpy(zero_copy_only=False)[rows]
        rep = collapse(scored.embeddings, src, fidx, threshold=thr,
                       ann_min_rows=self.cfg.pool.ann_min_rows)
        rec["diagnostics"]["near_duplicates"] = save_duplicates(self.store, scored.frame_ids, rep)
        keep = np.flatnonzero((rep == np.arange(len(rep))) | labeled)
        return replace(scored, frame_ids=scored.frame_ids[keep], scores=scored.scores[keep],
                       embeddings=scored.embeddings[keep],
                       probs=None if scored.probs is None else scored.probs[keep]), labeled[keep]

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
            ids, labeled = self._pool_status()
            chosen = pick(self.strategy, k=rec["batch_size"], frame_ids=ids, labeled=labeled,
                          seed=seed)
        else:
            if self._scored is None:  # resumed between scoring and selecting: score again
                self._score(rec)
            scored, labeled = self._scored
            chosen = pick(self.strategy, k=rec["batch_size"], frame_ids=scored.frame_ids,
                          labeled=labeled, seed=seed, probs=scored.probs,
                          scores=scored.scores if self._stored_score_suffices() else None,
                          embeddings=scored.embeddings)
        rec["diagnostics"]["reselected"] = mark_selected(self.store, chosen, rec["round"])
        rec["diagnostics"]["selected"] = len(chosen)
        self._scored = None
        return S.AWAITING_LABELS

    def _await_labels(self, rec: dict) -> RoundState | None:
        ids = selected_in_round(self.store, rec["round"])
        waiting = self.store.read_frames([], f"selected_round = {rec['round']} AND "
                                         "status = 'selected'")["frame_id"].to_pylist()
        if waiting and self.annotator is not None:
            self.annotator(self.store, rec["round"], waiting)
            waiting = self.store.read_frames([], f"selected_round = {rec['round']} AND "
                                             "status = 'selected'")["frame_id"].to_pylist()
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
