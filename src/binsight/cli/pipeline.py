"""``binsight pipeline``: run the whole job as named stages in one run directory with a report."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from binsight.cli.common import add_config_args

if TYPE_CHECKING:
    from binsight.config import PipelineConfig


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "pipeline",
        help="run the main job: data → train → … → report, as resumable stages",
        description="Run the stages listed in the config's `stages` key in order inside one run directory "
        "(runs/pipeline/<name>[N]) and build report.html. Without --config the shipped demo config is used, "
        "from any directory "
        "(SynthBins data, CPU, a few minutes). The train stage starts from a recipe (train_recipe: auto = "
        "configs/abid-fast.yaml on generated data, configs/abid.yaml on real photos given as data=...); "
        "train.KEY=VALUE overrides it. Finished stages are recorded in pipeline.json, so --resume picks "
        "up after the last finished stage.",
        epilog="examples:\n  binsight pipeline\n  binsight pipeline --config demo synth.n=200\n"
        "  binsight pipeline data=ABID_ROOT          # real photos: trains configs/abid.yaml\n"
        "  binsight pipeline --resume                # continue the latest run of this config\n"
        "  binsight pipeline --run runs/pipeline/demo --from train\n"
        "  binsight pipeline --run runs/pipeline/demo --only stats\n"
        "  binsight pipeline --list-stages",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_args(p)
    p.add_argument("--run", type=Path, help="use this pipeline run directory instead of creating a new one")
    p.add_argument("--resume", action="store_true", help="continue the latest run (or --run), skipping done stages")
    p.add_argument("--from", dest="start", metavar="STAGE", help="re-run STAGE and every stage after it")
    p.add_argument("--only", metavar="STAGE", help="run just STAGE")
    p.add_argument("--skip", metavar="STAGE", action="append", default=[], help="skip STAGE (repeatable)")
    p.add_argument("--list-stages", action="store_true", help="list the known stages and exit")
    p.set_defaults(func=run)


def _continued_config(run_dir: Path, args: argparse.Namespace) -> PipelineConfig:
    """The run's recorded config plus the overrides, refused where they contradict finished, kept stages."""
    from binsight.config import PipelineConfig, load_config
    from binsight.pipeline.core import is_finished, load_state, plan_stages
    from binsight.pipeline.resume import resume_config

    saved = load_config(PipelineConfig, run_dir / "config.yaml")
    state = load_state(run_dir)
    plan = plan_stages(saved, state, args.start, args.only, args.skip)
    kept_done = [n for n, act in plan if act == "keep" and is_finished(state["stages"].get(n, {}))]
    if args.config is not None:
        print(f"continuing {run_dir} with its recorded config.yaml (--config is only used to find the run)")
    return resume_config(run_dir, args.overrides, kept_done)


def _latest_run(root: Path, name: str) -> Path | None:
    from binsight.utils.io import run_dirs

    runs = [p for p in run_dirs(root, "pipeline", name) if (p / "pipeline.json").exists()]
    return max(runs, key=lambda p: (p / "pipeline.json").stat().st_mtime, default=None)


def run(args: argparse.Namespace) -> int:
    from binsight.config.shipped import DEFAULT_PIPELINE
    from binsight.errors import BinsightError
    from binsight.pipeline.recipe import load_pipeline_config
    from binsight.pipeline.report import cost_summary, stage_list
    from binsight.pipeline.stages import check_stage_names
    from binsight.utils.io import next_run_dir

    if args.list_stages:
        print(stage_list())
        return 0
    # The config names the run to continue; an existing run then continues with its own recorded config.
    cfg = load_pipeline_config(args.config or DEFAULT_PIPELINE, args.overrides)
    root = Path(cfg.out)
    run_dir = args.run
    if run_dir is None and (args.resume or args.start or args.only):
        run_dir = _latest_run(root, cfg.name)
        if run_dir is None:
            raise BinsightError(f"no earlier pipeline run named {cfg.name!r} under {root / 'pipeline'} to continue")
    if run_dir is not None and (run_dir / "config.yaml").is_file():
        cfg = _continued_config(run_dir, args)
    check_stage_names([*cfg.stages, args.start, args.only, *args.skip])  # before a run directory is created
    if cfg.data and not Path(cfg.data).expanduser().exists():
        from binsight.errors import DataError

        raise DataError(f"data={cfg.data}: no such dataset (an ABID root, a labels CSV or a split folder)")
    if run_dir is None:
        run_dir = next_run_dir(root, "pipeline", cfg.name)
    from binsight.pipeline.core import run_pipeline

    print(f"pipeline run directory: {run_dir}")
    state = run_pipeline(cfg, run_dir, start=args.start, only=args.only, skip=args.skip)
    print(cost_summary(state, cfg.stages))
    print(f"report: {run_dir / 'report.html'}")
    return 0
