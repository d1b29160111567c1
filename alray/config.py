"""Project configuration: one pydantic model, loaded from YAML.

Every field has a default and a description; unknown keys are errors that name the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

__all__ = [
    "AcquisitionConfig",
    "ConfigError",
    "LoopConfig",
    "ModelConfig",
    "PoolConfig",
    "ProjectConfig",
    "RayConfig",
    "StorageConfig",
    "TrainConfig",
    "VideoSelectionConfig",
    "load_config",
]


class ConfigError(ValueError):
    """A configuration file or value is invalid; the message names the field."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PoolConfig(_Section):
    """Where the unlabeled pool lives and how it is split."""

    uri: str = Field(
        "data/mnist-t10k",
        description="Pool location: a folder, file://, or s3:// URI. Relative paths are "
        "resolved against the working directory when the config is loaded.",
    )
    format: str = Field(
        "idx",
        description="A registered source (alray.sources.available_sources()): 'idx': "
        "MNIST-style IDX images + labels (.gz or raw); 'image_folder': images under a folder, "
        "labeled by a CSV (pool.labels_file) or one subfolder per class; 'video': "
        "mp4/mkv/avi/mov files "
        "under a folder or prefix (or one file), decoded with PyAV; 'image_prefix': every image "
        "under a folder or prefix, unlabeled; 'manifest': a Parquet/CSV/JSONL table of image or "
        "video URIs (column uri; optional source_id, drive_id, camera, frame_index, "
        "timestamp_ms, label).",
    )
    sampling: Literal["every_n", "fps", "keyframes"] = Field(
        "every_n",
        description="Video frame sampling: 'every_n' keeps every pool.every_n-th decoded frame, "
        "'fps' keeps the first frame of each 1/pool.fps interval, 'keyframes' decodes key "
        "frames only (fastest). Frame ids use the decoded frame index whatever the mode.",
    )
    every_n: int = Field(1, ge=1, description="Keep every n-th frame (pool.sampling: every_n).")
    fps: float | None = Field(
        None, gt=0, description="Target frames per second (pool.sampling: fps; required there)."
    )
    batch_frames: int = Field(
        512, ge=1, description="Frames per decoded batch: a video streams through Ray Data in "
        "batches of this size, so memory does not grow with video length."
    )
    decode_cpus: float = Field(
        0.5, gt=0, description="CPU slots each decode task (one video or shard) holds; with the "
        "scoring actors' slots this bounds how many decode concurrently on a node."
    )
    inflight_mb: int | None = Field(
        None, ge=16, description="Object-store memory (MiB) the blocks in flight of one "
        "pipeline (ingest, scoring, re-embedding) may use; Ray Data pauses decoding or reading "
        "while the actors catch up. None: "
        "32 decoded batches (pool.batch_frames at model.input_size), at least 512 MiB. Ray "
        "Data's own default is half the object store, which a fast decoder fills when the model "
        "is the bottleneck: peak memory then grows with the run's length until it does."
    )
    s3_endpoint_url: str | None = Field(
        None, description="S3 endpoint for s3:// URIs (e.g. http://127.0.0.1:9000 for MinIO); "
        "None: AWS_ENDPOINT_URL from the environment, else AWS. Credentials come only from the "
        "environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) or the instance's IAM role."
    )
    s3_region: str | None = Field(
        None, description="S3 region; None: AWS_REGION from the environment, else us-east-1."
    )
    embed_on_ingest: bool = Field(
        False, description="With model.freeze_backbone, compute each frame's embedding in the "
        "ingest pipeline (an actor pool after decode) and store it, so no round decodes "
        "pixels for the backbone again."
    )
    dedup_threshold: float | None = Field(
        None, gt=0, le=1, description="Cosine similarity above which two frames' embeddings "
        "are near-duplicates (within a clip and across clips); only one representative of each "
        "group can be selected. None: no collapsing. Dashcam video: try 0.97."
    )
    ann_min_rows: int = Field(
        50_000, ge=256, description="Build a LanceDB IVF-PQ index on frames.embedding once "
        "this many frames have embeddings (used by near-duplicate search and /similar); "
        "below it, search is exact."
    )
    val_fraction: float = Field(
        0.05, ge=0.0, lt=1.0, description="Fraction of frames drawn at random for validation."
    )
    test_fraction: float = Field(
        0.2, ge=0.0, lt=1.0, description="Fraction of frames drawn at random for testing."
    )
    seed: int = Field(0, description="Seed of the val/test split draw.")
    limit: int | None = Field(
        None, ge=1, description="Ingest at most this many frames (None: all)."
    )
    root: str | None = Field(
        None, description="The folder or s3:// prefix frame ids are relative to (a frame's id "
        "is its path under the root, plus ':<frame index>' inside a video), so moving or "
        "remounting the data keeps every id, split and label. None: pool.uri itself (a "
        "manifest's own folder for pool.format: manifest; set it when a manifest lists files "
        "outside its folder). The store records the root of its last ingest."
    )
    labels_file: str | None = Field(
        None, description="image_folder: a CSV of labels (path, label per row; ',', ';' or tab "
        "separated, sniffed). A relative name is looked up under pool.uri; the paths in it are "
        "resolved against the CSV's own folder. None: pool.uri/labels.csv if present, else one "
        "subfolder per class."
    )
    path_column: str | None = Field(
        None, description="Column of pool.labels_file holding image paths. None: the first of "
        "filename, path, file, image, filepath, image_path (any case)."
    )
    label_column: str | None = Field(
        None, description="Column of pool.labels_file holding class names. None: the first of "
        "label, class, classid, class_id, category, target (any case)."
    )
    classes: list[str] | None = Field(
        None, min_length=2, description="The class list, in order (index = label). None: from "
        "the data: labels that are all whole numbers forming a dense range of ids (e.g. 0-42) "
        "are their own index (class '10' is 10); other labels are sorted by name."
    )

    @model_validator(mode="after")
    def _fractions(self) -> PoolConfig:  # noqa: D102
        if self.sampling == "fps" and self.fps is None:
            raise ValueError("pool.sampling='fps' needs pool.fps (frames per second, > 0)")
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ValueError(
                f"pool.val_fraction + pool.test_fraction = "
                f"{self.val_fraction + self.test_fraction}: must be < 1"
            )
        return self


class ModelConfig(_Section):
    """The MC-dropout classifier."""

    architecture: str = Field(
        "mnist_cnn",
        description="'mnist_cnn' (BatchBALD's conv32-conv64-fc128 CNN) or any torchvision "
        "classification model name, e.g. 'resnet18'.",
    )
    weights_uri: str | None = Field(
        None, description="Backbone weights (a torch state_dict file URI). None: random init."
    )
    dropout_p: float = Field(0.5, ge=0.0, lt=1.0, description="Dropout probability of the head.")
    mc_samples: int = Field(20, ge=1, description="MC-dropout samples T per frame when scoring.")
    mc_layers: Literal["head", "all"] = Field(
        "head", description="Where MC dropout acts. 'head': on the backbone's features only; "
        "the backbone runs once per frame and, with freeze_backbone, scoring re-uses stored "
        "embeddings. 'all': also after both conv blocks, as BatchBALD's reference MNIST CNN "
        "(mnist_cnn only); the backbone is stochastic, so scoring runs the whole model T times "
        "per frame and never scores from stored embeddings. Either way, one scoring pass "
        "draws its T masks once (seeded) and shares them across all frames.",
    )
    input_size: int = Field(28, ge=8, description="Square input side in pixels.")
    in_channels: int = Field(1, description="Input channels (1 for grayscale, 3 for RGB).")
    num_classes: int | None = Field(
        None, ge=2, description="Number of classes; None: inferred from the pool's labels."
    )
    embedding_dim: int = Field(
        128, ge=1, description="Size of the penultimate features (the stored embedding)."
    )
    freeze_backbone: bool = Field(
        False, description="Keep the backbone fixed so embeddings are computed once, stored in "
        "frames.embedding and re-used: later rounds re-score from the stored embeddings with the "
        "head alone, never touching pixels (give pretrained weights in model.weights_uri, or the "
        "backbone differs per round and the cache is rebuilt). A frozen backbone stays in eval "
        "mode while the head trains (batch-norm statistics do not move). False: the backbone "
        "trains, so every re-scoring re-embeds the pixels."
    )


class TrainConfig(_Section):
    """Ray Train settings for each round's model."""

    @model_validator(mode="after")
    def _local_is_single_worker(self) -> TrainConfig:
        if self.backend == "local" and self.workers != 1:
            raise ValueError(f"train.workers={self.workers}: backend 'local' trains on one worker; "
                             "use train.backend: ray for data-parallel training")
        return self

    max_epochs: int = Field(30, ge=1, description="Upper bound on epochs per round.")
    epoch_samples: int = Field(
        2048,
        ge=1,
        description="Samples drawn (with replacement) per epoch when the labeled set is smaller, "
        "so tiny labeled sets still get enough optimizer steps between val checks.",
    )
    patience: int = Field(
        3, ge=1, description="Early stopping: epochs without val improvement before stopping."
    )
    lr: float = Field(1e-3, gt=0, description="Adam learning rate.")
    weight_decay: float = Field(0.0, ge=0, description="Adam weight decay.")
    batch_size: int = Field(64, ge=1, description="Per-worker batch size.")
    backend: Literal["ray", "local"] = Field(
        "ray",
        description="'ray': a Ray Train TorchTrainer per round (data-parallel over `workers`, "
        "checkpoints under the store). 'local': train in the calling process or task (one "
        "worker; no worker-group start-up per round, for small embedded runs and experiments).",
    )
    workers: int = Field(1, ge=1, description="Ray Train workers (data-parallel).")
    cpus_per_worker: float = Field(0.5, gt=0, description="CPUs reserved per training worker.")
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_SPREAD"] = Field(
        "PACK", description="How Ray places the training workers: 'PACK' fills one node first "
        "(Ray's default), 'SPREAD' spreads them over nodes where it can, 'STRICT_SPREAD' puts "
        "each on its own node (fails to start with fewer nodes than workers).",
    )
    use_gpu: bool = Field(False, description="Train on GPUs (NCCL) instead of CPUs (gloo).")
    reinit_each_round: bool = Field(
        True, description="Start each round from fresh weights rather than last round's."
    )


class VideoSelectionConfig(_Section):
    """The video constraint: spread a round's picks over clips and time.

    Off unless ``min_gap_ms`` or ``max_per_group`` is set; then every strategy, in every round,
    returns no two frames of one group closer than ``min_gap_ms`` (nor closer than that to a
    frame of the group selected or labeled in an earlier round), and at most ``max_per_group``
    frames of one group per round.
    """

    group_by: str = Field(
        "source_id", min_length=1, description="What a group is: 'source_id' (the video or "
        "folder a frame came from), or a column of a manifest pool (pool.format: manifest), "
        "e.g. 'drive_id', so frames of one drive count as one group across cameras."
    )
    min_gap_ms: float | None = Field(
        None, ge=0, description="Two selected frames of one group are at least this many "
        "milliseconds apart (frames.timestamp_ms; a frame without one, e.g. a still image, "
        "counts as 0 ms). None: no gap rule."
    )
    max_per_group: int | None = Field(
        None, ge=1, description="At most this many frames of one group per round. None: no "
        "quota."
    )

    @property
    def enabled(self) -> bool:
        """Whether any rule is set."""
        return self.min_gap_ms is not None or self.max_per_group is not None


def _suggest(name: str, valid: list[str], what: str) -> str:
    import difflib

    close = difflib.get_close_matches(name, valid, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return f"{name!r} is not a {what}.{hint} Valid: {', '.join(valid)}"


class AcquisitionConfig(_Section):
    """How the next batch is chosen."""

    strategy: str = Field(
        "bald", description="Selection strategy (alray.acquisition.available()): 'random', "
        "'bald', 'entropy', 'topk:<score>', 'batchbald', 'badge', 'kcenter', 'powerbald', …"
    )
    batch_size: int = Field(10, ge=1, description="Frames selected per round.")
    score: str = Field(
        "bald", description="Per-frame score (alray.acquisition.SCORES) computed when scoring, "
        "recorded with each selection and written to frames.score."
    )
    scoring_batch_size: int = Field(512, ge=1, description="Frames per scoring batch.")
    scoring_actors: int = Field(1, ge=1, description="Max scoring actors in the Ray Data pool.")
    actor_cpus: float = Field(0.5, gt=0, description="CPUs per scoring actor (fractional).")
    actor_gpus: float = Field(0.0, ge=0, description="GPUs per scoring actor.")
    candidate_pool: int | None = Field(
        None,
        ge=1,
        description="Score only a random subset of this many unlabeled frames per round "
        "(None: the whole pool).",
    )
    probe_size: int = Field(
        256, ge=1, description="With candidate_pool: a fixed set of this many pool frames, "
        "drawn once per project and scored every round, on which the rank-change diagnostic "
        "(topk_overlap) compares two consecutive models."
    )
    video: VideoSelectionConfig = Field(
        default_factory=VideoSelectionConfig, description="The video constraint (off unless "
        "min_gap_ms or max_per_group is set)."
    )

    @field_validator("strategy")
    @classmethod
    def _known_strategy(cls, v: str) -> str:
        from alray.acquisition.names import strategy_names  # no numpy/torch import

        if v not in strategy_names():
            raise ValueError(_suggest(v, strategy_names(), "strategy"))
        return v

    @field_validator("score")
    @classmethod
    def _known_score(cls, v: str) -> str:
        from alray.acquisition.names import SCORES

        if v not in SCORES:
            raise ValueError(_suggest(v, sorted(SCORES), "score"))
        return v


class LoopConfig(_Section):
    """Rounds and stopping rules."""

    initial_labels: int = Field(20, ge=1, description="Random seed set size (round 0).")
    initial_per_class: int | None = Field(
        None, ge=1, description="Balanced seed set: this many frames of each class in round 0 "
        "(drawn at random within each class from the pool's ground truth; replaces "
        "initial_labels; a class with fewer frames gives all it has). Needs ground truth "
        "(a labeled pool): an error otherwise. None: initial_labels frames at random."
    )
    max_rounds: int = Field(20, ge=0, description="Stop after this many acquisition rounds.")
    label_budget: int | None = Field(
        None, ge=1, description="Stop once this many frames are labeled."
    )
    target_accuracy: float | None = Field(
        None, gt=0, le=1, description="Stop once val accuracy reaches this."
    )
    plateau_rounds: int | None = Field(
        None, ge=1, description="Stop when val gain < plateau_epsilon for this many rounds."
    )
    plateau_epsilon: float = Field(0.002, ge=0, description="Gain threshold of the plateau rule.")


class StorageConfig(_Section):
    """Where the project's LanceDB database and checkpoints live."""

    uri: str = Field(
        "runs/store", description="Folder or s3:// URI of the project's LanceDB database."
    )


class RayConfig(_Section):
    """How to reach Ray."""

    address: str | None = Field(
        None, description="Ray address ('auto', 'ray://…'); None starts a local instance."
    )
    num_cpus: int | None = Field(
        None, ge=1, description="CPUs of a local instance (None: all of this machine's)."
    )


class ProjectConfig(_Section):
    """Everything one active-learning project needs."""

    name: str = Field("quickstart", min_length=1, description="Project name.")
    seed: int = Field(0, description="Seed of the loop: seed set, selection, training.")
    pool: PoolConfig = Field(default_factory=PoolConfig, description="The pool.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="The model.")
    train: TrainConfig = Field(default_factory=TrainConfig, description="Training.")
    acquisition: AcquisitionConfig = Field(
        default_factory=AcquisitionConfig, description="Selection."
    )
    loop: LoopConfig = Field(default_factory=LoopConfig, description="Rounds and stopping.")
    storage: StorageConfig = Field(default_factory=StorageConfig, description="Storage.")
    ray: RayConfig = Field(default_factory=RayConfig, description="Ray.")

    def with_overrides(self, **dotted: Any) -> ProjectConfig:
        """Return a copy with dotted-path overrides, e.g. ``{"acquisition.strategy": "random"}``."""
        data = self.model_dump()
        for path, value in dotted.items():
            node = data
            *parents, leaf = path.split(".")
            for key in parents:
                node = node[key]
            node[leaf] = value
        return validate_config(data)


def _format_errors(err: ValidationError, source: str) -> str:
    lines = [f"invalid config {source}:"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(root)"
        if e["type"] == "extra_forbidden":
            lines.append(f"  {loc}: unknown key (check the spelling; see configs/quickstart.yaml)")
        else:
            lines.append(f"  {loc}: {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


def validate_config(data: dict[str, Any], source: str = "<dict>") -> ProjectConfig:
    """Validate a plain dict into a :class:`ProjectConfig`.

    Raises:
        ConfigError: naming every bad or unknown key.
    """
    try:
        return ProjectConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_errors(err, source)) from None


def load_config(path: str | Path) -> ProjectConfig:
    """Load a YAML config; relative local ``pool.uri``/``storage.uri`` are made absolute.

    Raises:
        ConfigError: the file is missing, is not YAML, or has bad/unknown keys.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: top level must be a mapping")
    cfg = validate_config(data, source=str(path))
    return cfg.with_overrides(**{
        "pool.uri": _absolute(cfg.pool.uri), "storage.uri": _absolute(cfg.storage.uri),
        "pool.root": cfg.pool.root and _absolute(cfg.pool.root)})


def _absolute(uri: str) -> str:
    """Local relative paths become absolute (Ray workers may run elsewhere)."""
    if "://" in uri or Path(uri).is_absolute():
        return uri
    return str(Path(uri).resolve())
