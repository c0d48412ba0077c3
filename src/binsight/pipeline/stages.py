"""The pipeline's stages, in their order: one list, the only place a stage is named.

Each stage function imports what it needs (torch, Optuna, the model server) when it runs, so listing the stages
and running the data stages stay light.
"""

from __future__ import annotations

from collections.abc import Iterable

from binsight.errors import BinsightError
from binsight.pipeline import data_stages, model_stages, serve_stages
from binsight.pipeline.context import Stage

STAGES: dict[str, Stage] = {
    s.name: s
    for s in (
        Stage(
            "synth",
            data_stages.stage_synth,
            "generate a SynthBins dataset in ABID layout (skipped when `data` names a dataset)",
        ),
        Stage("split", data_stages.stage_split, "stratified, leak-free train/val/test manifests"),
        Stage("stats", data_stages.stage_stats, "class distribution, sample grid and image-size plots"),
        Stage(
            "train", model_stages.stage_train, "train the baseline model (the `train` section) and write its artifact"
        ),
        Stage(
            "evaluate", model_stages.stage_evaluate, "evaluate the trained model on the test split (calibrated on val)"
        ),
        Stage(
            "ddp_train",
            model_stages.stage_ddp,
            "train the `ddp.train` config with `ddp.nproc` data-parallel workers (torchrun)",
        ),
        Stage("tune", model_stages.stage_tune, "Optuna search over the `tune` section (pruned trials, shared caches)"),
        Stage(
            "final",
            model_stages.stage_final,
            "train with the tuned parameters (best.yaml) and evaluate on the test split",
        ),
        Stage(
            "audit",
            model_stages.stage_audit,
            "audit the test split with injected record errors: operating curve, riskiest bins",
        ),
        Stage(
            "export",
            serve_stages.stage_export,
            "export the model to ONNX and a SageMaker model.tar.gz; compare backends",
        ),
        Stage("deploy", serve_stages.stage_deploy, "create a local SageMaker-style endpoint serving the model"),
        Stage(
            "smoke",
            serve_stages.stage_smoke,
            "smoke-test the endpoint, then client → gateway → endpoint (URL, S3, API Gateway)",
        ),
        Stage(
            "cleanup",
            serve_stages.stage_cleanup,
            "delete the endpoint, its endpoint config and model; stop its processes",
        ),
    )
}


def check_stage_names(names: Iterable[str | None]) -> None:
    """Raise BinsightError naming the first of ``names`` (Nones ignored) that is not a stage."""
    unknown = [n for n in names if n and n not in STAGES]
    if unknown:
        raise BinsightError(f"unknown stage {unknown[0]!r}; known stages: {', '.join(STAGES)}")
