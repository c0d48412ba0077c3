"""The baseline: a minimal "seed-style" inference handler, as a first SageMaker ``inference.py`` would do it.

One request → PIL decode → torchvision Resize(256)/CenterCrop(224)/ToTensor/Normalize → eager float32
forward (``torch.no_grad``, default threads) → softmax JSON. No batching, no decode pool, no back-pressure;
stdlib ``ThreadingHTTPServer`` (one thread per connection). It serves the same ResNet-50 weights as the
binsight artifact (the artifact's ``backbone.*`` / ``head.fc.*`` keys mapped onto torchvision's).

    python benchmarks/serving/seed_handler.py --artifact ARTIFACT_DIR --port 8081
"""

from __future__ import annotations

import argparse
import io
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def load_model(artifact: str):
    import torch
    import torchvision
    from safetensors.torch import load_file

    state = load_file(f"{artifact}/model.safetensors")
    mapped = {}
    for key, value in state.items():
        if key.startswith("backbone."):
            mapped[key[len("backbone.") :]] = value
        elif key.startswith("head.fc."):
            mapped["fc." + key[len("head.fc.") :]] = value
    num_classes = mapped["fc.weight"].shape[0]
    model = torchvision.models.resnet50(weights=None, num_classes=num_classes)
    model.load_state_dict(mapped)
    model.eval()
    torch.set_grad_enabled(False)
    return model


def make_handler(model):
    import torch
    from PIL import Image
    from torchvision import transforms

    transform = transforms.Compose(
        [
            transforms.Resize(256),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        ]
    )

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # quiet: the benchmark measures, it does not log
            pass

        def _reply(self, status: int, doc: dict) -> None:
            data = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._reply(200 if self.path == "/ping" else 404, {"status": "ok"})

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            try:
                img = Image.open(io.BytesIO(body)).convert("RGB")
            except Exception as exc:
                self._reply(400, {"error": str(exc)})
                return
            with torch.no_grad():
                probs = torch.softmax(model(transform(img).unsqueeze(0)), dim=1)[0]
            self._reply(200, {"probabilities": [round(float(p), 6) for p in probs]})

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact", required=True)
    parser.add_argument("--port", type=int, default=8081)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(load_model(args.artifact)))
    server.daemon_threads = True
    print(f"seed-style handler on http://127.0.0.1:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
