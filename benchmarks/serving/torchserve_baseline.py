"""TorchServe 0.12 as a serving baseline: archive the same ResNet-50 weights with the stock
``image_classifier`` handler and start TorchServe on loopback ports, default or tuned.

TorchServe is not a binsight dependency. Install it next to the project (Java 17 is needed)::

    apt-get install -y openjdk-17-jre-headless
    .venv/bin/pip install --target /tmp/ts-pkgs --no-deps "torchserve==0.12.*" torch-model-archiver captum \
        psutil wheel enum-compat
    # then: bench_serving.py --torchserve-path /tmp/ts-pkgs

Configurations (as in BENCHMARKS.md):
- ``default``: TorchServe's defaults (one worker per core, no batching, torch's default threads);
- ``tuned``: 1 worker, batch size 8, max batch delay 20 ms, ``OMP_NUM_THREADS=2``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

MODEL_FILE = '''from torchvision.models.resnet import Bottleneck, ResNet


class BinResNet50(ResNet):
    """torchvision ResNet-50 with a {k}-class head (the binsight artifact's network)."""

    def __init__(self):
        super().__init__(Bottleneck, [3, 4, 6, 3], num_classes={k})
'''


def available(ts_path: str | None) -> tuple[bool, str]:
    """(usable, reason): TorchServe importable from ``ts_path`` (or the environment) and Java on PATH."""
    if shutil.which("java") is None:
        return False, "java not found (apt-get install -y openjdk-17-jre-headless)"
    env = _env(ts_path)
    probe = subprocess.run(
        [sys.executable, "-c", "import ts, model_archiver; print(ts.__version__)"],
        env=env,
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        return False, "torchserve / torch-model-archiver not importable (see the module docstring to install)"
    return True, f"torchserve {probe.stdout.strip()}"


def _env(ts_path: str | None, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    if ts_path:
        env["PYTHONPATH"] = ts_path + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(extra)
    return env


def build_archive(artifact: Path, workdir: Path, ts_path: str | None, tuned: bool) -> Path:
    """``<workdir>/store/resnet.mar`` with the artifact's weights mapped onto torchvision's ResNet-50."""
    import torch
    from safetensors.torch import load_file

    workdir.mkdir(parents=True, exist_ok=True)
    state = load_file(str(artifact / "model.safetensors"))
    mapped = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
    mapped.update({"fc." + k[len("head.fc.") :]: v for k, v in state.items() if k.startswith("head.fc.")})
    k = mapped["fc.weight"].shape[0]
    torch.save(mapped, workdir / "weights.pth")
    (workdir / "model.py").write_text(MODEL_FILE.format(k=k))
    (workdir / "index_to_name.json").write_text(json.dumps({str(i): str(i + 1) for i in range(k)}))
    store = workdir / "store"
    store.mkdir(exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "model_archiver.model_packaging",
        "--model-name",
        "resnet",
        "--version",
        "1.0",
        "--model-file",
        str(workdir / "model.py"),
        "--serialized-file",
        str(workdir / "weights.pth"),
        "--handler",
        "image_classifier",
        "--extra-files",
        str(workdir / "index_to_name.json"),
        "--export-path",
        str(store),
        "--force",
    ]
    if tuned:
        (workdir / "model-config.yaml").write_text(
            "minWorkers: 1\nmaxWorkers: 1\nbatchSize: 8\nmaxBatchDelay: 20\nresponseTimeout: 120\n"
        )
        cmd += ["--config-file", str(workdir / "model-config.yaml")]
    subprocess.run(cmd, env=_env(ts_path), check=True, capture_output=True)
    return store / "resnet.mar"


class TorchServe:
    """A foreground TorchServe process on three loopback ports (inference, management, metrics)."""

    def __init__(self, mar: Path, workdir: Path, ports: Sequence[int], ts_path: str | None, tuned: bool):
        """``ports``: inference, management, metrics, gRPC inference, gRPC management (all on loopback)."""
        self.port = ports[0]
        self.url = f"http://127.0.0.1:{ports[0]}/predictions/resnet"
        config = workdir / "config.properties"
        config.write_text(
            f"inference_address=http://127.0.0.1:{ports[0]}\n"
            f"management_address=http://127.0.0.1:{ports[1]}\n"
            f"metrics_address=http://127.0.0.1:{ports[2]}\n"
            f"grpc_inference_address=127.0.0.1\ngrpc_management_address=127.0.0.1\n"
            f"grpc_inference_port={ports[3]}\ngrpc_management_port={ports[4]}\n"
            "disable_token_authorization=true\n"
            "enable_envvars_config=true\n"
            "install_py_dep_per_model=false\n"
            "max_request_size=10485760\n"
        )
        extra = {"OMP_NUM_THREADS": "2"} if tuned else {}
        env = _env(ts_path, **extra)
        if not tuned:
            env.pop("OMP_NUM_THREADS", None)  # the default configuration: torch picks its own thread count
        self.log = open(workdir / "torchserve.log", "wb")  # noqa: SIM115 - closed in stop()
        cmd = [
            sys.executable,
            "-m",
            "ts.model_server",
            "--start",
            "--foreground",
            "--ncs",
            "--disable-token-auth",
            "--model-store",
            str(mar.parent),
            "--models",
            f"resnet={mar.name}",
            "--ts-config",
            str(config),
        ]
        env["TMPDIR"] = str(workdir)  # its pid file lives in the temp dir: keep it private to this run
        # A session of its own: the Python launcher, the Java frontend and its Python workers stop together.
        self.proc = subprocess.Popen(
            cmd, cwd=workdir, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def wait_ready(self, body: bytes, timeout: float = 180.0) -> None:
        """Wait for a successful prediction (TorchServe's /ping says Healthy before the model can answer)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"torchserve exited {self.proc.returncode}")
            try:
                r = httpx.post(self.url, content=body, headers={"content-type": "image/jpeg"}, timeout=60)
                if r.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1.0)
        raise RuntimeError(f"torchserve did not answer a prediction within {timeout}s")

    def stop(self) -> None:
        """Stop the launcher, the Java frontend and its workers (the process group this object started)."""
        for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(wait)
                time.sleep(1.0)  # let the frontend's workers exit too
                os.killpg(self.proc.pid, 0)  # still someone in the group?
            except (subprocess.TimeoutExpired, ProcessLookupError) as exc:
                if isinstance(exc, ProcessLookupError):
                    break
        self.log.close()
