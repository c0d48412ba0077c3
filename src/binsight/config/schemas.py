"""Dataclass schemas, one per stage. Defaults here are the library defaults; YAML files under
``configs/`` document every key and set the recipes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

from binsight.config.loader import Registered


def registered_models() -> list[str]:
    """The architectures in the model registry (imports the built-in ones, and torch, on first use)."""
    from binsight.models.registry import list_models

    return list_models()


# Any architecture registered with ``@register_model`` (checked when a config is read, not a fixed list).
ModelName = Annotated[str, Registered(registered_models)]


@dataclass
class SynthConfig:
    """`binsight data synth`: the SynthBins generator."""

    n: int = 1000
    seed: int = 0
    counts: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])
    mix: Literal["udacity", "uniform"] = "udacity"
    width_min: int = 300
    width_max: int = 550
    jpeg_quality_min: int = 70
    jpeg_quality_max: int = 95
    workers: int = 0
    aspect_min: float = 0.55  # picture height / width, like ABID's mostly landscape shots
    aspect_max: float = 1.4
    straps_max: int = 3  # elastic straps across the bin opening: 0..straps_max
    min_visible: float = 0.5  # share of each item left uncovered by other items (keeps counts learnable)

    def validate(self) -> None:
        if self.n < 0:
            raise ValueError("n must be >= 0")
        if not self.counts or min(self.counts) < 0:
            raise ValueError("counts must be a non-empty list of counts >= 0")
        if not 32 <= self.width_min <= self.width_max:
            raise ValueError("need 32 <= width_min <= width_max")
        if not 1 <= self.jpeg_quality_min <= self.jpeg_quality_max <= 100:
            raise ValueError("need 1 <= jpeg_quality_min <= jpeg_quality_max <= 100")
        if self.workers < 0:
            raise ValueError("workers must be >= 0 (0 = one per core)")
        if not 0.2 <= self.aspect_min <= self.aspect_max <= 5:
            raise ValueError("need 0.2 <= aspect_min <= aspect_max <= 5")
        if not 0 <= self.straps_max <= 3:
            raise ValueError("straps_max must be 0, 1, 2 or 3")
        if not 0 <= self.min_visible <= 1:
            raise ValueError("min_visible must be in [0, 1]")
        if self.width_max > 4096:
            raise ValueError("width_max must be <= 4096")


@dataclass
class SplitConfig:
    """`binsight data split`: stratified, leak-free train/val/test manifests."""

    seed: int = 42
    val: float = 0.1
    test: float = 0.1
    classes: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])
    check_images: bool = True  # decode every image so corrupt files are reported, not trained on
    workers: int = 0  # threads for decoding and hashing; 0 = two per core (at most 16)

    def validate(self) -> None:
        if not (0 <= self.val < 1 and 0 <= self.test < 1 and self.val + self.test < 1):
            raise ValueError("val and test must be fractions in [0, 1) that sum to less than 1")
        if not self.classes:
            raise ValueError("classes must not be empty")
        if min(self.classes) < 0 or len(set(self.classes)) != len(self.classes):
            raise ValueError("classes must be distinct item counts >= 0")
        if self.workers < 0:
            raise ValueError("workers must be >= 0 (0 = two per core)")


@dataclass
class TrackingConfig:
    """Run tracking (`tracking.backend=mlflow|tensorboard` on train, tune and evaluate)."""

    backend: Literal["none", "mlflow", "tensorboard"] = "none"
    uri: str = ""  # MLflow tracking URI (default: sqlite:///./mlflow.db); TensorBoard log root (default <run>)
    experiment: str = "binsight"  # MLflow experiment name


LossName = Literal["auto", "ce", "weighted_ce", "focal", "gce", "ordinal"]


@dataclass
class TrainConfig:
    """`binsight train`: one training run.

    The defaults are binsight's recipe for real bin photos (``configs/abid.yaml``, cross-validated in
    docs/recipes.md) less its SynthBins start (``synth_pretrain``, so no call starts that build unasked): the whole
    ImageNet EfficientNet-Lite0 fine-tuned with an ordinal head for up to 8 epochs, early-stopped on the
    thresholded val macro-F1, and decision thresholds fitted for macro-F1 by ``binsight evaluate``.
    ``configs/abid-fast.yaml`` is the head-only recipe on cached frozen features.
    """

    name: str = "exp"
    data: str = ""
    model: ModelName = "efficientnet_lite0"
    weights: str = "imagenet"
    synth_pretrain: int = 0
    synth_pretrain_images: int = 3000
    head: Literal["softmax", "ordinal"] = "ordinal"
    loss: LossName = "auto"
    label_smoothing: float = 0.0
    focal_gamma: float = 2.0
    img_size: int = 224
    resize: Literal["letterbox", "stretch", "center_crop"] = "letterbox"
    epochs: int = 8
    batch_size: int = 32
    lr: float = 3e-4
    weight_decay: float = 1e-4
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    momentum: float = 0.9
    scheduler: Literal["cosine", "step", "none"] = "cosine"
    warmup_epochs: float = 0.3
    step_size: int = 10
    step_gamma: float = 0.1
    patience: int = 3
    freeze_backbone: bool = False
    augment: Literal["none", "light", "strong"] = "light"
    balance: bool = False
    grad_clip: float = 0.0
    ema: float = 0.0
    teacher: str = ""
    teacher_weight: float = 0.5
    seed: int = 0
    deterministic: bool = False
    channels_last: bool = True
    amp: Literal["auto", "bf16", "off"] = "auto"
    tta: bool = False
    decision: Literal["argmax", "macro_f1"] = "macro_f1"
    num_workers: int = 0
    max_runtime: float = 0.0
    max_train_batches: int = 0
    cache_dir: str = ""
    device: str = "auto"
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    def validate(self) -> None:
        if self.epochs < 1:
            raise ValueError("epochs must be >= 1")
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if self.img_size < 16:
            raise ValueError("img_size must be >= 16")
        if self.lr <= 0:
            raise ValueError("lr must be > 0")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError("label_smoothing must be in [0, 1)")
        if self.patience < 0:
            raise ValueError("patience must be >= 0 (0 disables early stopping)")
        if self.weight_decay < 0 or self.grad_clip < 0 or self.focal_gamma < 0:
            raise ValueError("weight_decay, grad_clip and focal_gamma must be >= 0")
        if not 0 <= self.momentum < 1:
            raise ValueError("momentum must be in [0, 1)")
        if not 0 < self.teacher_weight <= 1:
            raise ValueError("teacher_weight must be in (0, 1] (1 = learn from the teacher's soft targets alone)")
        if self.synth_pretrain < 0:
            raise ValueError("synth_pretrain must be >= 0 (epochs on generated SynthBins photos first; 0 = off)")
        if self.synth_pretrain_images < 50:
            raise ValueError("synth_pretrain_images must be >= 50 (every count needs photos in the split's val part)")
        if not 0 <= self.ema < 1:
            raise ValueError("ema must be in [0, 1) (0 = off; e.g. 0.99 averages over about the last 100 steps)")
        if self.warmup_epochs < 0 or self.warmup_epochs > self.epochs:
            raise ValueError("warmup_epochs must be in [0, epochs]")
        if self.step_size < 1 or not 0 < self.step_gamma <= 1:
            raise ValueError("step_size must be >= 1 epoch and step_gamma in (0, 1]")
        if self.max_runtime < 0 or self.max_train_batches < 0 or self.num_workers < 0:
            raise ValueError("max_runtime, max_train_batches and num_workers must be >= 0 (0 = off / automatic)")
        if self.head == "ordinal" and self.loss not in ("auto", "ordinal"):
            raise ValueError(
                f"loss '{self.loss}' is for the softmax head, and the head is 'ordinal' (the default): "
                "add head=softmax, or use loss=auto"
            )
        if self.loss == "ordinal" and self.head != "ordinal":
            raise ValueError("loss 'ordinal' needs head 'ordinal' (add head=ordinal, or use loss=auto)")

    @property
    def loss_kind(self) -> LossName:
        """``loss`` with ``auto`` resolved: the ordinal head's CORAL loss, class-weighted CE for the softmax head."""
        if self.loss != "auto":
            return self.loss
        return "ordinal" if self.head == "ordinal" else "weighted_ce"


@dataclass
class SearchSpace:
    """A tuning search space over :class:`TrainConfig` keys.

    ``lr``, ``weight_decay`` (log scale) and ``patience`` (integers) are ranges ``[low, high]``; the other keys
    are lists of choices. An empty list leaves the key at the ``train`` value; a single value fixes it.
    The defaults are the capstone report's space.
    """

    lr: list[float] = field(default_factory=lambda: [1e-5, 3e-3])
    weight_decay: list[float] = field(default_factory=lambda: [1e-7, 1e-2])
    batch_size: list[int] = field(default_factory=lambda: [16, 32, 64])
    freeze_backbone: list[bool] = field(default_factory=lambda: [True, False])
    patience: list[int] = field(default_factory=lambda: [2, 5])
    model: list[str] = field(default_factory=list)
    loss: list[str] = field(default_factory=list)
    augment: list[str] = field(default_factory=list)
    img_size: list[int] = field(default_factory=list)

    def validate(self) -> None:
        from typing import get_args, get_type_hints

        for key in ("lr", "weight_decay", "patience"):
            values = getattr(self, key)
            if len(values) > 2:
                raise ValueError(f"{key} is a range: give [low, high], one fixed value, or []")
            if len(values) == 2 and values[0] > values[1]:
                raise ValueError(f"{key}: low {values[0]} is above high {values[1]}")
        if any(v <= 0 for v in self.lr + self.weight_decay):
            raise ValueError("lr and weight_decay ranges are searched on a log scale: values must be > 0")
        if any(v < 0 for v in self.patience):
            raise ValueError("patience values must be >= 0 (0 disables early stopping)")
        if any(v < 1 for v in self.batch_size):
            raise ValueError("batch_size choices must be >= 1")
        if any(v < 16 for v in self.img_size):
            raise ValueError("img_size choices must be >= 16")
        models = registered_models() if self.model else []
        unknown = [v for v in self.model if v not in models]
        if unknown:
            raise ValueError(f"model: {unknown} not registered; choices are {', '.join(models)}")
        hints = get_type_hints(TrainConfig)
        for key in ("loss", "augment"):
            allowed = get_args(hints[key])
            bad = [v for v in getattr(self, key) if v not in allowed]
            if bad:
                raise ValueError(f"{key}: {bad} not allowed; choices are {', '.join(allowed)}")
        for key in ("batch_size", "freeze_backbone", "model", "loss", "augment", "img_size"):
            values = getattr(self, key)
            if len(set(values)) != len(values):
                raise ValueError(f"{key} lists a choice twice")


@dataclass
class TuneConfig:
    """`binsight tune`: an Optuna study over a training config."""

    name: str = "study"
    study_name: str = ""  # the Optuna study's name; "" = name. Machines sharing a study use the same one
    trials: int = 8
    timeout: float = 0.0
    jobs: int = 1
    threads: int = 0  # torch threads per worker; 0 = cores / jobs
    storage: str = ""  # "" = journal file in the tuning run dir; an RDB URL or a journal file path
    heartbeat: int = 60
    grace: int = 0  # seconds without a heartbeat before a RUNNING trial is failed; 0 = 2 * heartbeat
    max_retry: int = 1  # retries of a trial whose worker died or was stopped (0 = never)
    sampler: Literal["tpe", "random"] = "tpe"
    sampler_seed: int = 0
    startup_trials: int = 4  # TPE: random trials before the model-based search starts
    pruner: Literal["median", "hyperband", "threshold", "none"] = "median"
    pruner_startup: int = 2  # median: finished trials needed before pruning starts
    pruner_warmup: int = 1  # epochs of every trial that are never pruned
    prune_below: float = 0.0  # threshold: prune a trial whose val macro-F1 is below this after warmup
    keep: Literal["all", "best"] = "all"
    space: SearchSpace = field(default_factory=SearchSpace)
    # No augmentation, as the report: the space's frozen-backbone trials then train on cached features.
    train: TrainConfig = field(default_factory=lambda: TrainConfig(augment="none"))

    def validate(self) -> None:
        if self.trials < 1:
            raise ValueError("trials must be >= 1")
        if self.timeout < 0:
            raise ValueError("timeout must be >= 0 seconds (0 = none)")
        if not 1 <= self.jobs <= 64:
            raise ValueError("jobs must be in 1..64")
        if self.threads < 0:
            raise ValueError("threads must be >= 0 (0 = cores / jobs)")
        if self.heartbeat < 1 or self.grace < 0:
            raise ValueError("heartbeat must be >= 1 second and grace >= 0 seconds")
        if self.grace and self.grace <= self.heartbeat:
            raise ValueError("grace must be longer than heartbeat (or 0 for 2 * heartbeat)")
        if self.max_retry < 0:
            raise ValueError("max_retry must be >= 0")
        if self.startup_trials < 0 or self.pruner_startup < 0 or self.pruner_warmup < 0:
            raise ValueError("startup_trials, pruner_startup and pruner_warmup must be >= 0")
        if not 0 <= self.prune_below <= 1:
            raise ValueError("prune_below is a macro-F1: it must be in [0, 1]")


@dataclass
class ServeConfig:
    """`binsight serve`: the HTTP model server (limits and timeouts: docs/serving.md)."""

    host: str = "127.0.0.1"
    port: int = 8080
    backend: str = "torch"  # a name from binsight.inference.backends
    max_batch_size: int = 8
    max_wait_ms: float = 5.0
    queue_size: int = 64
    max_body_bytes: int = 6 * 1024 * 1024
    request_timeout: float = 60.0
    threads: int = 0
    decode_threads: int = 0
    failure_threshold: int = 3
    header_timeout: float = 10.0  # seconds to send a request's headers (from connect, or after keep-alive)
    body_timeout: float = 30.0  # seconds to send a request's whole body
    keep_alive_timeout: float = 75.0  # an idle keep-alive connection is closed after this
    max_connections: int = 256  # connections beyond this are closed at once
    max_header_bytes: int = 16 * 1024  # request line + headers
    max_image_pixels: int = 40_000_000  # width x height, checked from the header before decoding
    max_decode_ratio: float = 1000.0  # decoded RGB bytes per compressed byte (above 1 MP)
    capture_dir: str = ""  # capture requests into this folder (binsight.audit.capture); "" = off
    capture_rate: float = 1.0  # share of requests captured
    endpoint_name: str = ""  # answer /endpoints/NAME/invocations for this NAME only ("" = any name)

    def validate(self) -> None:
        from binsight.inference.backends import check_backend

        check_backend(self.backend)
        if not 0 < self.capture_rate <= 1:
            raise ValueError("capture_rate must be in (0, 1]")
        if not 0 <= self.port <= 65535:
            raise ValueError("port must be in 0..65535 (0 picks a free port)")
        if not 1 <= self.max_batch_size <= 256:
            raise ValueError("max_batch_size must be in 1..256")
        if not 0 <= self.max_wait_ms <= 10_000:
            raise ValueError("max_wait_ms must be in 0..10000")
        if self.queue_size < 1:
            raise ValueError("queue_size must be >= 1")
        if self.max_body_bytes < 1024:
            raise ValueError("max_body_bytes must be >= 1024")
        if min(self.request_timeout, self.header_timeout, self.body_timeout, self.keep_alive_timeout) <= 0:
            raise ValueError("request_timeout, header_timeout, body_timeout and keep_alive_timeout must be > 0 s")
        if self.threads < 0 or self.decode_threads < 0:
            raise ValueError("threads and decode_threads must be >= 0 (0 = one per core)")
        if self.failure_threshold < 1:
            raise ValueError("failure_threshold must be >= 1")
        if self.max_connections < 1 or self.max_header_bytes < 1024:
            raise ValueError("max_connections must be >= 1 and max_header_bytes >= 1024")
        if self.max_image_pixels < 1 or self.max_decode_ratio < 1:
            raise ValueError("max_image_pixels and max_decode_ratio must be >= 1")


@dataclass
class DistributedConfig:
    """The pipeline's distributed training stage: ``train`` run by ``nproc`` local data-parallel workers."""

    nproc: int = 2
    max_restarts: int = 1
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> None:
        if self.nproc < 1:
            raise ValueError("nproc must be >= 1")
        if self.max_restarts < 0:
            raise ValueError("max_restarts must be >= 0")


@dataclass
class AuditConfig:
    """The pipeline's audit stage: the test split audited with records corrupted on purpose."""

    simulate_errors: float = 0.1
    seed: int = 0
    top: int = 10

    def validate(self) -> None:
        if not 0 < self.simulate_errors < 1:
            raise ValueError("simulate_errors must be a fraction in (0, 1)")
        if self.top < 1:
            raise ValueError("top must be >= 1")


@dataclass
class PipelineConfig:
    """`binsight pipeline`: the whole life of a model, as named stages."""

    name: str = "demo"
    out: str = "runs"
    stages: list[str] = field(default_factory=lambda: ["synth", "split", "stats"])
    data: str = ""
    synth: SynthConfig = field(default_factory=SynthConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    train_recipe: str = "auto"  # what ``train`` starts from: binsight.pipeline.recipe.load_pipeline_config
    train: TrainConfig = field(default_factory=TrainConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    ddp: DistributedConfig = field(default_factory=DistributedConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)


@dataclass
class EvaluateConfig:
    """`binsight evaluate`: metrics, calibration and plots of a run on one split."""

    split: Literal["train", "val", "test"] = "test"
    data: str = ""  # split folder; empty = the run's own data
    batch_size: int = 32
    calibrate: bool = True
    threads: int = 0  # torch threads; 0 = $OMP_NUM_THREADS, else all cores
    backend: str = "torch"  # a name from binsight.inference.backends

    def validate(self) -> None:
        from binsight.inference.backends import check_backend

        check_backend(self.backend)
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if self.threads < 0:
            raise ValueError("threads must be >= 0 (0 = automatic)")


@dataclass
class PredictConfig:
    """`binsight predict`: counts for photos and folders of photos."""

    batch_size: int = 16
    backend: str = "torch"
    threads: int = 0
    format: Literal["jsonl", "json", "csv", "table"] = "jsonl"
    expected_quantity: int | None = None

    def validate(self) -> None:
        from binsight.inference.backends import check_backend

        check_backend(self.backend)
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if self.threads < 0:
            raise ValueError("threads must be >= 0 (0 = automatic)")


@dataclass
class ExportConfig:
    """`binsight export`: ONNX (optionally static int8) or a SageMaker model.tar.gz."""

    format: Literal["onnx", "sagemaker"] = "onnx"
    int8: bool = False
    data: str = ""  # split folder for calibration and the comparison; empty = the run's own data
    calib_size: int = 128
    eval_limit: int = 0  # test images compared; 0 = all
    compare: bool = True
    opset: int = 17
    threads: int = 0

    def validate(self) -> None:
        if self.calib_size < 1 or self.eval_limit < 0:
            raise ValueError("calib_size must be >= 1 and eval_limit >= 0")
        if self.int8 and self.format != "onnx":
            raise ValueError("int8 applies to format onnx; export onnx with int8 first, then sagemaker")


@dataclass
class StatsConfig:
    """`binsight data stats`: plots and counts of a dataset or split."""

    seed: int = 0  # picks the sample photos
