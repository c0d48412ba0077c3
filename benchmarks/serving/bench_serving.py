"""Serving benchmark: `binsight serve` vs a seed-style handler (and TorchServe 0.12 when installed).

    .venv/bin/python benchmarks/serving/bench_serving.py [--duration 8] [--concurrency 1,8,32] \
        [--backends torch,onnx] [--int8] [--torchserve-path /tmp/ts-pkgs] [--skip-torchserve]

All servers run on loopback in subprocesses and serve the same ResNet-50 (5 classes, random weights: weights do
not change the speed) to 500×400 JPEG bodies (ABID sample photos resized to 500×400 when
../shared/abid-sample exists, else synthetic pictures). For each system and each concurrency level a
closed-loop load generator (loadgen.py) runs for ``--duration`` seconds (at most ``--max-requests``):
requests/s, p50/p99 latency, errors.

Rooflines: the same run measures the float32 and the bf16 matmul peaks (2048², 2 threads; best of the start
and the end) and reports each system's best throughput against the peak of the precision it computes in
(ResNet-50 at 224 px ≈ 8.2 GFLOP per image): ``torch`` in what ``amp: auto`` picks on this CPU, ``torch-bf16``
bf16, ``torch-fp32``/``onnx``/seed handler/TorchServe float32. int8 has no int8 peak here; it is shown
against the float32 peak, as a speed-up over it.

Bare forwards: every round first measures each backend's bare forward (its own model object, no decode, no
HTTP, no batcher) at batch 1 and 8, then loads the servers; each binsight system's p50 at concurrency 1 is
divided by the bare batch-1 latency *of the same round*, so host drift between rounds cancels out, and also
by the server's own backend time per batch during that level (``binsight_inference_seconds`` on ``/metrics``):
the same forward in the same process at the same moment, which a host shared with other jobs needs, because a
busy measuring loop and a request-driven server are not scheduled alike there. After
every level each system's queue is drained (one more request, answered only after the backlog the load
generator left), so a slow server's backlog never loads the next measurement.

Writes benchmarks/results/serving.json and prints a table. Other processes on the machine skew absolute
numbers; the load average before and after is recorded — compare systems within one run.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))  # benchmarks/machine.py
os.environ.setdefault("BINSIGHT_NO_PROGRESS", "1")

from loadgen import run_load  # noqa: E402

from binsight.utils.net import free_port  # noqa: E402
from machine import machine_info, matmul_peaks  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "serving.json"
ABID_SAMPLE = REPO.parent / "shared" / "abid-sample"
RESNET50_GFLOP = 8.2


def bare_forward(model, batch: int, seconds: float = 2.0, min_calls: int = 5) -> float:
    """Images/s of a backend object's bare forward at ``batch`` (no decode, no HTTP, no batcher): the same
    backend object ``binsight serve`` runs, so each server is compared with its own model. From the median
    call (at least ``min_calls`` calls and ``seconds``), to compare with the servers' median latency."""
    x = np.random.default_rng(0).standard_normal((batch, 3, 224, 224)).astype(np.float32)
    model.run(x)
    calls: list[float] = []
    start = time.perf_counter()
    while len(calls) < min_calls or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        model.run(x)
        calls.append(time.perf_counter() - t0)
    return batch / float(np.median(calls))


def precision_of(backend: str) -> str:
    """The precision a binsight backend computes ResNet-50 in on this machine (``torch``: the policy's)."""
    from binsight.precision import decide

    if backend == "onnx-int8":
        return "int8"
    if backend in ("onnx", "torch-fp32"):
        return "float32"
    amp = {"torch": "auto", "torch-bf16": "bf16"}[backend]
    return decide("serve", "resnet50", amp).mode


def c1_ratios(results: dict, bare_rounds: list[dict], backends: list[str]) -> dict[str, dict[str, list]]:
    """Per binsight system and round, p50 at concurrency 1 divided by (a) the bare batch-1 latency measured in
    this process at the start of that round and (b) the mean backend time per batch inside the server during
    that very level (``server_forward_ms``; at c=1 nearly every batch holds one image)."""
    out: dict[str, dict[str, list]] = {}
    for backend in backends:
        runs = results.get(f"binsight serve ({backend})", {}).get(1, [])
        out[backend] = {
            "over_bare_forward": [
                round(run["p50_ms"] / (1000 / bare[backend]["batch_1"]), 3) if run["p50_ms"] else None
                for run, bare in zip(runs, bare_rounds, strict=False)
            ],
            "over_server_forward": [
                round(run["p50_ms"] / run["server_forward_ms"], 3)
                if run.get("p50_ms") and run.get("server_forward_ms")
                else None
                for run in runs
            ],
        }
    return out


def make_artifact(folder: Path) -> Path:
    import torch

    from binsight.inference.artifact import ArtifactMeta, save_artifact
    from binsight.models import create_model

    torch.manual_seed(0)
    model = create_model("resnet50", 5)
    meta = ArtifactMeta(
        name="bench-resnet50", architecture="resnet50", class_labels=list("12345"), input_size=224, version="bench"
    )
    return save_artifact(folder, model.state_dict(), meta)


def make_bodies(n: int = 16) -> tuple[list[bytes], str]:
    """``n`` 500×400 JPEGs: ABID sample photos when present, else synthetic pictures."""
    from PIL import Image, ImageDraw

    bodies: list[bytes] = []
    source = "synthetic"
    photos = sorted((ABID_SAMPLE / "bin-images").glob("*.jpg")) if ABID_SAMPLE.is_dir() else []
    if not photos:
        photos = sorted(ABID_SAMPLE.rglob("*.jpg"))[:n] if ABID_SAMPLE.is_dir() else []
    for path in photos[:n]:
        buf = io.BytesIO()
        Image.open(path).convert("RGB").resize((500, 400)).save(buf, format="JPEG", quality=90)
        bodies.append(buf.getvalue())
        source = "abid-sample resized"
    rng = np.random.default_rng(0)
    while len(bodies) < n:
        img = Image.new("RGB", (500, 400), tuple(int(v) for v in rng.integers(60, 200, 3)))
        draw = ImageDraw.Draw(img)
        for _ in range(12):
            x, y = rng.integers(0, 450), rng.integers(0, 350)
            draw.rectangle(
                (x, y, x + rng.integers(30, 150), y + rng.integers(30, 120)), fill=tuple(rng.integers(0, 255, 3))
            )
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=90)
        bodies.append(buf.getvalue())
    return bodies, source


class Proc:
    """A server subprocess with its log in the work dir."""

    def __init__(self, cmd: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env or dict(os.environ))

    def wait_ping(self, url: str, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}: see {self.log.name}")
            try:
                if httpx.get(url, timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{url} not ready after {timeout}s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def server_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)  # every system picks its own thread count (all cores)
    env["BINSIGHT_NO_PROGRESS"] = "1"
    return env


class System:
    """One server under test: its name, configuration, invocation URL, readiness wait and stop (and, for
    binsight, its Prometheus ``/metrics`` URL)."""

    def __init__(self, name: str, url: str, config: dict, wait, stop, metrics_url: str | None = None) -> None:
        self.name, self.url, self.config, self.wait, self.stop = name, url, config, wait, stop
        self.metrics_url = metrics_url


def inference_totals(system: System) -> tuple[float, float] | None:
    """(seconds, batches) the server's inference worker has spent in its backend so far, from
    ``binsight_inference_seconds`` on ``/metrics``; None for servers without it."""
    if system.metrics_url is None:
        return None
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(system.metrics_url, timeout=30).text
    for family in text_string_to_metric_families(text):
        if family.name == "binsight_inference_seconds":
            values = {sample.name: sample.value for sample in family.samples}
            return values["binsight_inference_seconds_sum"], values["binsight_inference_seconds_count"]
    return None


def start_binsight(artifact: Path, backend: str, work: Path) -> System:
    port = free_port()
    opts = ["--max-batch-size", "8", "--max-wait-ms", "5", "--queue-size", "64"]
    cmd = [sys.executable, "-m", "binsight", "serve", "--model", str(artifact), "--port", str(port)]
    proc = Proc([*cmd, "--backend", backend, *opts], work / f"binsight-{backend}.log", server_env())
    base = f"http://127.0.0.1:{port}"
    return System(
        f"binsight serve ({backend})",
        base + "/invocations",
        {"backend": backend, "options": " ".join(opts)},
        lambda bodies: proc.wait_ping(base + "/ping"),
        proc.stop,
        metrics_url=base + "/metrics",
    )


def start_seed(artifact: Path, work: Path) -> System:
    port = free_port()
    cmd = [sys.executable, str(HERE / "seed_handler.py"), "--artifact", str(artifact), "--port", str(port)]
    proc = Proc(cmd, work / "seed.log", server_env())
    base = f"http://127.0.0.1:{port}"
    config = {"server": "stdlib ThreadingHTTPServer; PIL + torchvision transforms; eager fp32; no batching"}
    return System(
        "seed-style handler", base + "/invocations", config, lambda bodies: proc.wait_ping(base + "/ping"), proc.stop
    )


def start_torchserve(artifact: Path, work: Path, ts_path: str | None, tuned: bool) -> System:
    import torchserve_baseline as tsb

    label = "tuned" if tuned else "default"
    folder = work / f"torchserve-{label}"
    mar = tsb.build_archive(artifact, folder, ts_path, tuned)
    server = tsb.TorchServe(mar, folder, [free_port() for _ in range(5)], ts_path, tuned)
    config = (
        {"workers": 1, "batch_size": 8, "max_batch_delay_ms": 20, "OMP_NUM_THREADS": 2}
        if tuned
        else {"workers": "default (one per core)", "batch_size": 1}
    )
    return System(
        f"TorchServe 0.12 ({label})", server.url, config, lambda bodies: server.wait_ready(bodies[0]), server.stop
    )


def warm_up(system: System, bodies: list[bytes]) -> None:
    for body in bodies[:4]:  # first-call costs are not part of the measurement
        httpx.post(system.url, content=body, headers={"content-type": "image/jpeg"}, timeout=120)


def drain(system: System, body: bytes) -> float:
    """Wait until ``system`` has worked off the requests the load generator left queued when it stopped (a
    slow server keeps computing them, which would load the next measurement): one more request is answered
    only after the queue ahead of it. Returns the seconds waited."""
    t0 = time.perf_counter()
    with contextlib.suppress(httpx.HTTPError):  # a server that cannot answer shows in its own measurements
        httpx.post(system.url, content=body, headers={"content-type": "image/jpeg"}, timeout=600)
    return time.perf_counter() - t0


def print_table(systems: list[dict], peaks: dict[str, float]) -> None:
    header = f"{'system':<30} {'c':>3} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6} {'of peak':>8} precision"
    print("\n" + header)
    for s in systems:
        peak = peaks[s["roofline_precision"]]
        for lv in s["levels"]:
            frac = lv["ok_rps"] * RESNET50_GFLOP / peak
            print(
                f"{s['name']:<30} {lv['concurrency']:>3} {lv['ok_rps']:>7.2f} {lv['p50_ms'] or 0:>8.0f} "
                f"{lv['p99_ms'] or 0:>8.0f} {lv['error_count']:>6} {frac:>8.0%} {s['precision']}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per concurrency level (8)")
    parser.add_argument("--max-requests", type=int, default=400, help="requests per level at most (400)")
    parser.add_argument("--concurrency", default="1,8,32", help="comma-separated levels (1,8,32)")
    parser.add_argument(
        "--backends", default="torch,onnx", help="binsight backends (torch,onnx; also torch-bf16, torch-fp32)"
    )
    parser.add_argument("--int8", action="store_true", help="also export and serve onnx-int8")
    parser.add_argument("--torchserve-path", default=None, help="folder with torchserve installed (--target)")
    parser.add_argument("--skip-torchserve", action="store_true")
    parser.add_argument(
        "--torchserve-configs", default="default,tuned", help="TorchServe configurations to run (default,tuned)"
    )
    parser.add_argument("--skip-seed", action="store_true")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds; the best is reported (2)")
    args = parser.parse_args()
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    backends = [b for b in args.backends.split(",") if b]

    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop the servers (finally) on SIGTERM too
    load_before = os.getloadavg()
    t0 = time.time()
    import torch

    torch.set_num_threads(2)
    peaks = matmul_peaks()
    print(f"matmul peaks (2048², 2 threads), GFLOP/s: {peaks}", flush=True)
    notes = [
        "ResNet-50 with random weights: weights do not change the speed",
        "loopback HTTP, closed-loop clients; all servers up at once, measurements interleaved "
        "(level by level, system by system) so load from other processes spreads over all systems",
        "per system and level the best of --rounds rounds is reported; all rounds are in 'rounds'",
        "each round starts with every backend's bare forward; c=1 p50 is compared with the same round's",
        "after every level the system's queue is drained (one more request answered) before the next starts",
    ]
    systems: list[System] = []
    results: dict[str, dict[int, list[dict]]] = {}
    ts_status = "skipped (--skip-torchserve)"
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        work = Path(tmp)
        artifact = make_artifact(work / "artifact")
        from binsight.inference.export import export_onnx

        if any(b.startswith("onnx") for b in backends) or args.int8:
            export_onnx(artifact)
        bodies, source = make_bodies()
        if args.int8:
            from binsight.inference.export import quantize_int8
            from binsight.inference.predictor import Predictor

            p = Predictor(artifact)
            quantize_int8(artifact, [p.preprocess(p.decode(b)).numpy() for b in bodies])
            backends.append("onnx-int8")
            notes.append("onnx-int8 calibrated on the 16 benchmark bodies (speed only; accuracy: binsight export)")
        from binsight.inference.predictor import Predictor

        bare_models = {
            b: Predictor(artifact, backend=b, threads=2).backend for b in dict.fromkeys(["torch", *backends])
        }
        bare_rounds: list[dict] = []
        try:
            systems += [start_binsight(artifact, b, work) for b in backends]
            if not args.skip_seed:
                systems.append(start_seed(artifact, work))
            if not args.skip_torchserve:
                import torchserve_baseline as tsb

                ok, reason = tsb.available(args.torchserve_path)
                ts_status = reason if ok else f"not run: {reason}"
                if ok:
                    tuned = [c == "tuned" for c in args.torchserve_configs.split(",") if c in ("default", "tuned")]
                    systems += [start_torchserve(artifact, work, args.torchserve_path, t) for t in tuned]
            ready: list[System] = []
            for system in systems:
                try:
                    system.wait(bodies)
                    warm_up(system, bodies)
                    ready.append(system)
                except Exception as exc:  # a baseline that cannot start is reported, not fatal
                    print(f"  {system.name} did not start: {exc}", flush=True)
                    notes.append(f"{system.name} did not start: {exc}")
            for rnd in range(args.rounds):
                bare = {b: {f"batch_{n}": round(bare_forward(m, n), 2) for n in (1, 8)} for b, m in bare_models.items()}
                bare_rounds.append(bare)
                print(f"  round {rnd + 1} bare forward (images/s): {bare}", flush=True)
                for c in args.concurrency:
                    for system in ready:
                        before = inference_totals(system) if c == 1 else None
                        stats = run_load(system.url, bodies, c, duration=args.duration, max_requests=args.max_requests)
                        if before is not None and (after := inference_totals(system)) and after[1] > before[1]:
                            # The forward inside the server during this very level: same process, same moment.
                            stats["server_forward_ms"] = round(
                                1000 * (after[0] - before[0]) / (after[1] - before[1]), 1
                            )
                        stats["drain_s"] = round(drain(system, bodies[0]), 1)
                        results.setdefault(system.name, {}).setdefault(c, []).append(stats)
                        print(
                            f"  round {rnd + 1} {system.name:<28} c={c:<3} {stats['ok_rps']:>6.2f} req/s  "
                            f"p50 {stats['p50_ms']} ms  p99 {stats['p99_ms']} ms  errors {stats['error_count']}",
                            flush=True,
                        )
        finally:
            for system in systems:
                system.stop()
    after = matmul_peaks()  # best of before and after: the least disturbed measurement
    peaks = {k: max(v, after[k]) for k, v in peaks.items()}
    report_systems = []
    for system in systems:
        if system.name not in results:
            continue
        levels = [max(runs, key=lambda lv: lv["ok_rps"]) for _, runs in sorted(results[system.name].items())]
        backend = system.config.get("backend")
        precision = precision_of(backend) if backend else "float32"
        report_systems.append(
            {
                "name": system.name,
                "config": system.config,
                "precision": precision,
                "roofline_precision": "bf16" if precision == "bf16" else "float32",
                "levels": levels,
                "rounds": results[system.name],
            }
        )
    systems = report_systems
    for s in systems:
        best = max(s["levels"], key=lambda lv: lv["ok_rps"])
        s["best_ok_rps"] = best["ok_rps"]
        s["roofline_fraction"] = round(best["ok_rps"] * RESNET50_GFLOP / peaks[s["roofline_precision"]], 3)
    ratios = c1_ratios(results, bare_rounds, backends)
    print_table(systems, peaks)
    for backend, per_round in ratios.items():
        print(f"c=1 p50 / bare batch-1 latency, {backend}, per round: {per_round}")
    report = {
        "benchmark": "serving",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join([".venv/bin/python", "benchmarks/serving/bench_serving.py", *sys.argv[1:]]),
        "machine": {**machine_info(), "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
        "bodies": {
            "size": "500x400 JPEG",
            "count": len(bodies),
            "source": source,
            "mean_kb": round(sum(map(len, bodies)) / len(bodies) / 1024, 1),
        },
        "matmul_peaks_gflops": peaks,
        "resnet50_gflop_per_image": RESNET50_GFLOP,
        "roofline_images_per_s": {k: round(v / RESNET50_GFLOP, 2) for k, v in peaks.items()},
        "bare_forward_images_per_s_by_round": bare_rounds,
        "c1_p50_over_bare_batch1_by_round": ratios,
        "torchserve": ts_status,
        "systems": systems,
        "notes": notes,
        "wall_s": round(time.time() - t0, 1),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {RESULTS} ({report['wall_s']} s)")


if __name__ == "__main__":
    main()
