"""``binsight pipeline``: the whole life of a model as named, resumable stages with an HTML report."""

from binsight.pipeline.core import STAGES, Section, StageContext, register_stage, run_pipeline

__all__ = ["STAGES", "Section", "StageContext", "register_stage", "run_pipeline"]
