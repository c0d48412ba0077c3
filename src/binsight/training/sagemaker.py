"""SageMaker training jobs: map the container's ``SM_*`` environment onto ``binsight train``.

Entry point (the ``entry_point`` script of a ``sagemaker.pytorch.PyTorch`` estimator)::

    from binsight.training.sagemaker import main
    raise SystemExit(main())

What it reads:

- ``SM_HOSTS`` (JSON list), ``SM_CURRENT_HOST``: the machines; rendezvous at the FIRST host (``MASTER_ADDR``),
  machine rank = position in the list, so global rank 0 (which writes the model) runs on ``algo-1``.
- ``SM_NUM_GPUS`` / ``SM_NUM_CPUS``: workers per machine = GPUs, or 1 on a CPU instance (``--nproc`` overrides).
- ``SM_CHANNEL_TRAIN`` (required), ``SM_CHANNEL_VALIDATION``, ``SM_CHANNEL_TEST``: the data (see
  :func:`prepare_split`).
- ``SM_MODEL_DIR``: receives the artifact (``model.json`` + ``model.safetensors``).
- ``SM_OUTPUT_DATA_DIR``: receives ``metrics.csv``, ``config.yaml`` and the plots.
- ``/opt/ml/checkpoints`` (present when the job has ``checkpoint_s3_uri``): the run directory lives there and
  a restarted job (managed spot) resumes from it automatically; so does a new job given the same checkpoint
  location and ``BINSIGHT_RUN_NAME`` (``binsight aws train --resume``).
- Hyperparameters arrive as ``--key value`` arguments and become ``key=value`` overrides.

With ``distribution={"torch_distributed": {"enabled": True}}`` SageMaker starts torchrun itself and every
worker runs this entry point with ``RANK``/``WORLD_SIZE`` set; without it, this entry point is the launcher
on each machine and starts the local workers through :func:`~binsight.training.launch.launch_workers`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from binsight.errors import BinsightError, DataError

log = logging.getLogger(__name__)

CHECKPOINT_DIR = Path("/opt/ml/checkpoints")
MASTER_PORT = 29500
# Files copied from the run directory into SM_OUTPUT_DATA_DIR (the job's output.tar.gz).
OUTPUT_FILES = ("metrics.csv", "config.yaml", "curves.png", "confusion_matrix.png")


@dataclass(frozen=True)
class SageMakerEnv:
    """The parts of a SageMaker training container's environment that binsight uses."""

    hosts: list[str]
    current_host: str
    num_gpus: int
    num_cpus: int
    channels: dict[str, Path]
    model_dir: Path
    output_data_dir: Path
    checkpoint_dir: Path | None

    @property
    def node_rank(self) -> int:
        return self.hosts.index(self.current_host)

    @property
    def master_addr(self) -> str:
        return self.hosts[0]

    def workers_per_host(self, nproc: int | None = None) -> int:
        return nproc or (self.num_gpus if self.num_gpus > 0 else 1)


def sagemaker_env(env: Mapping[str, str] | None = None) -> SageMakerEnv | None:
    """The SageMaker environment, or None outside a SageMaker training container (no ``SM_HOSTS``).

    Raises:
        BinsightError: ``SM_HOSTS`` is not a JSON list or ``SM_CURRENT_HOST`` is not in it.
    """
    if env is None:
        env = os.environ
    if "SM_HOSTS" not in env:
        return None
    try:
        hosts = json.loads(env["SM_HOSTS"])
        assert isinstance(hosts, list) and hosts and all(isinstance(h, str) for h in hosts)
    except (ValueError, AssertionError):
        raise BinsightError(f'SM_HOSTS={env["SM_HOSTS"]!r} is not a JSON list of host names like ["algo-1"]') from None
    current = str(env.get("SM_CURRENT_HOST", hosts[0]))
    if current not in hosts:
        raise BinsightError(f"SM_CURRENT_HOST={current!r} is not one of SM_HOSTS {hosts}")
    channels = {
        name: Path(env[f"SM_CHANNEL_{name.upper()}"])
        for name in ("train", "validation", "test")
        if env.get(f"SM_CHANNEL_{name.upper()}")
    }
    ckpt = Path(env.get("BINSIGHT_SM_CHECKPOINT_DIR", str(CHECKPOINT_DIR)))
    return SageMakerEnv(
        hosts=hosts,
        current_host=current,
        num_gpus=int(env.get("SM_NUM_GPUS", "0") or 0),
        num_cpus=int(env.get("SM_NUM_CPUS", "1") or 1),
        channels=channels,
        model_dir=Path(env.get("SM_MODEL_DIR", "/opt/ml/model")),
        output_data_dir=Path(env.get("SM_OUTPUT_DATA_DIR", "/opt/ml/output/data")),
        checkpoint_dir=ckpt if ckpt.is_dir() else None,
    )


def _channel_manifest(folder: Path, names: tuple[str, ...]) -> Path | None:
    for name in names:
        if (folder / name).is_file():
            return folder / name
    csvs = sorted(folder.glob("*.csv"))
    return csvs[0] if len(csvs) == 1 else None


def prepare_split(sm: SageMakerEnv, work: Path | None = None, local_rank: int = 0) -> Path:
    """A split folder built from the job's channels.

    The channels may hold, in order of preference:

    1. ``train`` = a whole split folder (``train.csv``, ``val.csv``, ``test.csv`` written by ``binsight data
       split``, with the images at paths relative to it): used as it is.
    2. one manifest per channel: ``train`` holds ``train.csv`` (or its only ``*.csv``), ``validation`` holds
       ``val.csv`` (or its only CSV), optional ``test`` holds ``test.csv``; image paths relative to each CSV.
    3. ``train`` = an ABID-layout dataset root (``bin-images/`` + ``metadata/``): split here with
       ``binsight data split``'s defaults (seed 42, 10% val, 10% test) — the same on every machine.

    Built splits go to ``work`` (default: the temp folder), one per ``local_rank`` on the machine.

    Raises:
        DataError: no train channel, or its contents match none of the layouts.
    """
    from binsight.data.manifest import is_split_dir, read_manifest, write_manifest

    train = sm.channels.get("train")
    if train is None:
        raise DataError("SM_CHANNEL_TRAIN is not set: give the job a 'train' input channel (see docs/distributed.md)")
    if (train / "val.csv").is_file() and (train / "test.csv").is_file() and is_split_dir(train):
        return train
    work = Path(work or tempfile.gettempdir()) / f"binsight-sm-split-{local_rank}"
    train_csv = _channel_manifest(train, ("train.csv",))
    if train_csv is not None:
        val_dir = sm.channels.get("validation")
        val_csv = _channel_manifest(val_dir, ("val.csv", "validation.csv")) if val_dir else None
        if val_csv is None:
            raise DataError(
                f"the train channel {train} holds {train_csv.name} but no validation manifest was found: add a "
                "'validation' channel with val.csv (or put train.csv, val.csv and test.csv in the train channel)"
            )
        test_dir = sm.channels.get("test")
        test_csv = _channel_manifest(test_dir, ("test.csv",)) if test_dir else None
        work.mkdir(parents=True, exist_ok=True)
        for name, src in (("train", train_csv), ("val", val_csv), ("test", test_csv)):
            write_manifest(work / f"{name}.csv", read_manifest(src) if src else [])  # absolute image paths
        if (train / "split_summary.json").is_file():
            shutil.copyfile(train / "split_summary.json", work / "split_summary.json")
        return work
    if (train / "bin-images").is_dir() or (train / "metadata").is_dir():
        from binsight.config.schemas import SplitConfig
        from binsight.data.split import split_dataset

        split_dataset(train, work, SplitConfig(), show_progress=False)
        return work
    raise DataError(
        f"the train channel {train} holds neither a split folder (train.csv, val.csv, test.csv), nor train.csv "
        "(with a 'validation' channel holding val.csv), nor an ABID dataset root (bin-images/, metadata/)"
    )


def run_dir_for(sm: SageMakerEnv, name: str) -> Path:
    """Where the run lives: under the checkpoint folder when the job has one (synced to S3 and restored on a
    spot restart), else in a local temp folder."""
    if sm.checkpoint_dir is not None:
        return sm.checkpoint_dir / name
    return Path(tempfile.gettempdir()) / "binsight-run" / name


def publish(run_dir: Path, sm: SageMakerEnv) -> None:
    """Copy the artifact into ``SM_MODEL_DIR`` and the metrics and plots into ``SM_OUTPUT_DATA_DIR``."""
    sm.model_dir.mkdir(parents=True, exist_ok=True)
    for f in (run_dir / "artifact").iterdir():
        if f.is_file():
            shutil.copy2(f, sm.model_dir / f.name)
    sm.output_data_dir.mkdir(parents=True, exist_ok=True)
    for name in OUTPUT_FILES:
        if (run_dir / name).is_file():
            shutil.copy2(run_dir / name, sm.output_data_dir / name)
    log.info("artifact copied to %s, metrics and plots to %s", sm.model_dir, sm.output_data_dir)


def main(argv: list[str] | None = None) -> int:
    """The SageMaker entry point: ``[--config FILE] [--nproc N] [--key value …]`` (hyperparameters).

    Returns the exit code (0 done, 1 error, 2 config error, 3 stopped with a checkpoint).
    """
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    from binsight.cli.main import main as cli_main

    sm = sagemaker_env()
    if sm is None:
        print("binsight: error: not in a SageMaker training container (SM_HOSTS is not set)", file=sys.stderr)
        return 1
    return cli_main(["train", *sagemaker_train_args(sm, argv)])


def sagemaker_train_args(sm: SageMakerEnv, argv: list[str]) -> list[str]:
    """The ``binsight train`` arguments for this job: data, run directory, launcher options, hyperparameters."""
    from binsight.training.protocol import WorkerEnv

    worker = WorkerEnv.from_env()
    torchrun = worker.torchrun
    # BINSIGHT_RUN_NAME (set by `binsight aws train`) stays the same when a new job resumes an old one's run.
    name = os.environ.get("BINSIGHT_RUN_NAME") or os.environ.get("TRAINING_JOB_NAME", "sagemaker")
    args = [
        "--data",
        str(prepare_split(sm, local_rank=worker.dist.local_rank)),
        "--out",
        str(run_dir_for(sm, name)),
        "--auto-resume",
        *argv,
    ]
    args += ["--publish-sagemaker"]
    if not torchrun and "--nproc" not in argv and len(sm.hosts) * sm.workers_per_host() > 1:
        args += ["--nproc", str(sm.workers_per_host())]
    if not torchrun and len(sm.hosts) > 1:
        os.environ.setdefault("MASTER_ADDR", sm.master_addr)
        port = int(os.environ.get("MASTER_PORT", MASTER_PORT))
        args += [
            "--nnodes",
            str(len(sm.hosts)),
            "--rdzv-endpoint",
            f"{sm.master_addr}:{port}",
            "--rdzv-backend",
            "static",
            "--node-rank",
            str(sm.node_rank),
        ]
    return args


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
