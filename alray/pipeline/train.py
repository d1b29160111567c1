"""Train one round's model with Ray Train (``TorchTrainer``), early-stopped on val.

The labeled, val and test frames are small next to the pool; they go to the workers through
Ray's object store. Each worker trains on its own shard of every epoch's sample (real data
parallelism: DDP over gloo on CPU, NCCL on GPU); rank 0 writes the checkpoint.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import ray
import torch

from alray.config import ProjectConfig, TrainConfig
from alray.models import build_model, load_checkpoint, save_checkpoint
from alray.models.tensors import images_to_tensor
from alray.storage.schema import FrameStatus, Split
from alray.storage.uri import is_remote, join, resolve

if TYPE_CHECKING:  # the store stack (LanceDB) stays out of scoring actors' imports
    from alray.storage import Store

__all__ = ["TrainResult", "evaluate", "load_checkpoint", "load_split", "train_round"]

log = logging.getLogger(__name__)
_METRIC_KEYS = ("val_accuracy", "test_accuracy", "train_accuracy", "epochs", "steps", "world_size",
                "labels", "train_seconds")


@dataclass
class TrainResult:
    """One round's trained model and its metrics."""

    checkpoint_uri: str
    metrics: dict


def load_split(store: Store, where: str, with_label_from: str = "label") -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Frames matching ``where`` as ``(x [N, C, H, W], y [N], frame_ids)``.

    ``with_label_from='label'`` reads pool labels; ``'ground_truth'`` reads the held-out labels of
    val/test frames (never offered to a strategy).
    """
    t = store.read_frames(["image", "height", "width", "channels", "label"], where)
    ids = t["frame_id"].to_pylist()
    if t.num_rows == 0:
        return torch.zeros(0), torch.zeros(0, dtype=torch.long), ids
    h, w, c = (int(t[k][0].as_py()) for k in ("height", "width", "channels"))
    x = images_to_tensor(t["image"], h, w, c)
    if with_label_from == "ground_truth":
        gt = store.ground_truth(ids)
        y = torch.tensor([gt.get(i, -1) for i in ids], dtype=torch.long)
    else:
        y = torch.from_numpy(t["label"].to_numpy(zero_copy_only=False).astype(np.int64))
    keep = y >= 0
    return x[keep], y[keep], [i for i, k in zip(ids, keep.tolist(), strict=True) if k]


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 1024) -> float:
    """Accuracy of the deterministic (dropout-off) model; NaN on an empty set."""
    if len(y) == 0:
        return float("nan")
    was = model.training
    model.eval()
    correct = 0
    for s in range(0, len(y), batch):
        correct += (model(x[s: s + batch]).argmax(1) == y[s: s + batch]).sum().item()
    model.train(was)
    return correct / len(y)


def _fit(config: dict, *, rank: int = 0, world: int = 1, device: str | torch.device = "cpu",
         prepare=lambda m: m) -> tuple[dict, dict]:
    """Train with early stopping on val; returns ``(metrics, best_state_dict)``.

    Each epoch draws one sample of the labeled set (with replacement up to ``epoch_samples``)
    from a seeded generator shared by all ranks; rank ``r`` trains on ``sample[r::world]``.
    """
    data = config["data"]
    if isinstance(data, ray.ObjectRef):
        data = ray.get(data)
    tcfg: TrainConfig = config["train_cfg"]
    torch.manual_seed(config["seed"])
    core = build_model(config["model_cfg"], config["num_classes"])
    if config.get("init_state") is not None:
        core.load_state_dict(config["init_state"])
    model = prepare(core)  # DDP when world > 1
    core = core.to(device)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=tcfg.lr,
                           weight_decay=tcfg.weight_decay)
    xtr, ytr = data["x_train"], data["y_train"]
    x_val, y_val = data["x_val"].to(device), data["y_val"].to(device)
    n = len(ytr)
    per_epoch = max(n, tcfg.epoch_samples)
    gen = torch.Generator().manual_seed(config["seed"])
    best, best_state, bad, steps, epochs = -1.0, None, 0, 0, 0
    t0 = time.perf_counter()
    for epoch in range(tcfg.max_epochs):
        epochs = epoch + 1
        model.train()  # a frozen backbone stays in eval mode: batch-norm stats never move
        order = torch.randperm(n, generator=gen)
        if per_epoch > n:  # small sets: sample with replacement up to epoch_samples
            order = torch.cat([order, torch.randint(n, (per_epoch - n,), generator=gen)])
        mine = order[rank::world]  # this worker's shard of the epoch
        for s in range(0, len(mine), tcfg.batch_size):
            idx = mine[s: s + tcfg.batch_size]
            xb, yb = xtr[idx].to(device), ytr[idx].to(device)
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
            steps += 1
        # Every rank evaluates the same (DDP-synchronised) weights on all of val: same decision.
        acc = evaluate(core, x_val, y_val)
        if np.isnan(acc) or acc > best:
            best, bad = acc, 0
            best_state = {k: v.detach().cpu().clone() for k, v in core.state_dict().items()}
        else:
            bad += 1
            if bad >= tcfg.patience:
                break
    core.load_state_dict(best_state)
    metrics = {
        "val_accuracy": best,
        "test_accuracy": evaluate(core, data["x_test"].to(device), data["y_test"].to(device)),
        "train_accuracy": evaluate(core, xtr.to(device), ytr.to(device)),
        "epochs": epochs, "steps": steps, "world_size": world, "labels": n,
        "train_seconds": time.perf_counter() - t0,
    }
    return metrics, best_state


def _train_loop(config: dict) -> None:
    """Ray Train worker loop (runs on every worker); rank 0 reports the checkpoint."""
    import ray.train
    import ray.train.torch as rtt

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    metrics, state = _fit(config, rank=rank, world=world, device=rtt.get_device(),
                          prepare=rtt.prepare_model)
    with tempfile.TemporaryDirectory() as d:
        checkpoint = None
        if rank == 0:
            save_checkpoint(state, config["num_classes"], d)
            checkpoint = ray.train.Checkpoint.from_directory(d)
        ray.train.report(metrics, checkpoint=checkpoint)


def train_round(cfg: ProjectConfig, store: Store, round_n: int, *, seed: int,
                init_checkpoint: str | None = None) -> TrainResult:
    """Train on every labeled pool frame; return the checkpoint URI and val/test metrics.

    Raises:
        ValueError: there are no labeled frames yet.
    """
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from alray.storage.store import frame_filter

    x_tr, y_tr, _ = load_split(store, frame_filter(split=Split.POOL, status=FrameStatus.LABELED))
    if len(y_tr) == 0:
        raise ValueError("no labeled frames to train on (label the seed set first)")
    x_val, y_val, _ = load_split(store, frame_filter(split=Split.VAL), "ground_truth")
    x_te, y_te, _ = load_split(store, frame_filter(split=Split.TEST), "ground_truth")
    classes = store.get_meta("classes") or []
    num_classes = cfg.model.num_classes or max(len(classes), int(y_tr.max()) + 1, 2)
    init_state = None
    if init_checkpoint and not cfg.train.reinit_each_round:
        init_state = load_checkpoint(init_checkpoint, cfg.model).state_dict()
    data = {"x_train": x_tr, "y_train": y_tr, "x_val": x_val, "y_val": y_val,
            "x_test": x_te, "y_test": y_te}
    config = {"train_cfg": cfg.train, "model_cfg": cfg.model, "num_classes": num_classes,
              "seed": seed, "init_state": init_state}
    name = f"round-{round_n}-{int(time.time() * 1000)}"
    t0 = time.perf_counter()
    if cfg.train.backend == "local":
        metrics, state = _fit({**config, "data": data})
        uri = join(store.uri, "checkpoints", name)
        save_checkpoint(state, num_classes, uri)
        metrics["fit_seconds"] = time.perf_counter() - t0
        log.info("round %d trained locally: %s", round_n, metrics)
        return TrainResult(checkpoint_uri=uri, metrics=metrics)
    fs, root = resolve(join(store.uri, "checkpoints"))
    if not is_remote(store.uri):
        os.makedirs(root, exist_ok=True)
    trainer = TorchTrainer(
        _train_loop,
        train_loop_config={**config, "data": ray.put(data)},
        scaling_config=ScalingConfig(
            num_workers=cfg.train.workers, use_gpu=cfg.train.use_gpu,
            placement_strategy=cfg.train.placement_strategy,
            resources_per_worker={"CPU": cfg.train.cpus_per_worker,
                                  **({"GPU": 1} if cfg.train.use_gpu else {})}),
        run_config=RunConfig(name=name, storage_path=root,
                             storage_filesystem=fs if is_remote(store.uri) else None),
    )
    result = trainer.fit()
    if result.error:
        raise result.error
    metrics = {k: v for k, v in (result.metrics or {}).items() if k in _METRIC_KEYS}
    metrics["fit_seconds"] = time.perf_counter() - t0
    path = result.checkpoint.path
    uri = f"s3://{path}" if is_remote(store.uri) else path
    log.info("round %d trained: %s", round_n, metrics)
    return TrainResult(checkpoint_uri=uri, metrics=metrics)
