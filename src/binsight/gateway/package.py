"""Build the AWS Lambda deployment zip of the gateway.

The zip holds ``binsight/__init__.py`` (a minimal one carrying only the version), ``binsight/gateway/*.py``,
``binsight/inputs/*.py`` (the strict input parser shared with the model server) and, unless
``deps=False``, Pillow installed by pip for the Lambda platform (``manylinux2014_x86_64``, CPython 3.11,
wheels only). boto3 is never bundled: the Lambda Python runtime provides it.
Handler setting: ``binsight.gateway.handler.lambda_handler``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from binsight.gateway.errors import GatewayError

HANDLER = "binsight.gateway.handler.lambda_handler"
DEPENDENCIES = ("pillow>=10",)
# Modules only the local tooling needs; Lambda never imports them.
LOCAL_ONLY = {"package.py", "local.py"}


class PackageError(GatewayError):
    """Building the zip failed (pip could not fetch the dependencies, the output is unwritable …)."""


@dataclass(frozen=True)
class PackageReport:
    """What was written."""

    path: Path
    size_bytes: int
    file_count: int
    dependencies: tuple[str, ...]


def gateway_sources() -> list[tuple[Path, str]]:
    """(file on disk, name in the zip) for every gateway module and the shared input parser."""
    package = Path(__file__).resolve().parents[1]
    return [
        (path, f"binsight/{sub}/{path.name}")
        for sub in ("gateway", "inputs")
        for path in sorted((package / sub).glob("*.py"))
        if path.name not in LOCAL_ONLY
    ]


def build_lambda_zip(
    out: str | Path,
    *,
    deps: bool = True,
    platform: str = "manylinux2014_x86_64",
    python_version: str = "3.11",
    pip_timeout: float = 30.0,
) -> PackageReport:
    """Write the Lambda zip to ``out`` and report its size and file count.

    Args:
        out: the zip file to write (its folder is created; an existing file is replaced atomically).
        deps: bundle Pillow (pip ``--target`` for the Lambda platform). With ``False`` the zip has only the
            gateway code; Pillow must then come from a Lambda layer.
        platform: pip ``--platform`` tag of the Lambda architecture (``manylinux2014_aarch64`` for arm64).
        python_version: the Lambda runtime's Python version.
        pip_timeout: pip's network timeout in seconds.

    Raises:
        PackageError: pip failed (offline, no wheel for the platform) — the message says how to proceed.
    """
    from binsight import __version__

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="binsight-lambda-") as tmp:
        site = Path(tmp) / "site"
        if deps:
            _pip_install(site, platform, python_version, pip_timeout)
        partial = out.with_name(out.name + ".partial")
        count = 0
        with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
            zf.writestr(
                "binsight/__init__.py", f'"""binsight (Lambda gateway subset)."""\n\n__version__ = "{__version__}"\n'
            )
            count += 1
            for path, name in gateway_sources():
                zf.write(path, name)
                count += 1
            if site.is_dir():
                for path in sorted(site.rglob("*")):
                    if path.is_file() and "__pycache__" not in path.parts:
                        zf.write(path, path.relative_to(site).as_posix())
                        count += 1
        os.replace(partial, out)
    return PackageReport(out, out.stat().st_size, count, DEPENDENCIES if deps else ())


def _pip_install(target: Path, platform: str, python_version: str, timeout: float) -> None:
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-input",
        "--target",
        str(target),
        "--platform",
        platform,
        "--python-version",
        python_version,
        "--implementation",
        "cp",
        "--only-binary=:all:",
        "--retries",
        "1",
        "--timeout",
        str(timeout),
        *DEPENDENCIES,
    ]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout * 10)
    except subprocess.TimeoutExpired:
        raise PackageError(_pip_advice(platform, python_version, "pip timed out")) from None
    if proc.returncode != 0:
        said = (proc.stderr or proc.stdout).strip().splitlines()
        raise PackageError(_pip_advice(platform, python_version, said[-1] if said else f"exit {proc.returncode}"))


def _pip_advice(platform: str, python_version: str, said: str) -> str:
    return (
        f"could not download Pillow for Lambda ({platform}, Python {python_version}): pip said: {said}. "
        "Check that PyPI (or your PIP_INDEX_URL) is reachable, or pass --no-deps to package only the gateway "
        "code and provide Pillow with a Lambda layer (boto3 is already in the Lambda runtime)"
    )
