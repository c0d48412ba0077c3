"""``binsight pipeline``: the whole life of a model as named, resumable stages with an HTML report."""

from binsight.pipeline.context import Section, Stage, StageContext
from binsight.pipeline.core import run_pipeline
from binsight.pipeline.stages import STAGES

__all__ = ["STAGES", "Section", "Stage", "StageContext", "run_pipeline"]
