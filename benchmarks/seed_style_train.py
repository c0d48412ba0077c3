"""The capstone report's training loop, as a baseline for ``benchmarks/train_throughput.py``.

A torchvision ``ImageFolder``-like dataset over the same split manifests (one PIL decode per image per epoch),
the torchvision ImageNet transforms ``Resize(size / 0.875)`` / ``CenterCrop(size)`` / ``ToTensor`` /
``Normalize``, ``DataLoader(num_workers=2, shuffle=True)``, Adam and cross-entropy; each epoch trains on the
train split and then evaluates on the val split, as the report's ``train.py`` does. Same model as binsight
(``binsight.models.create_model``), so only the input pipeline and the loop differ.

Run alone: ``python benchmarks/seed_style_train.py --data SPLITDIR --model efficientnet_lite0 --img-size 224``.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path


class ManifestImages:
    """``ImageFolder`` semantics over a split manifest: ``(transform(PIL image), class index)``."""

    def __init__(self, rows, classes: list[int], transform) -> None:
        self.items = [(str(r.path), classes.index(int(r.label))) for r in rows]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        from PIL import Image

        path, target = self.items[i]
        with Image.open(path) as img:
            return self.transform(img.convert("RGB")), target


def seed_style_train(
    data: Path,
    model_name: str,
    img_size: int,
    batch_size: int,
    epochs: int,
    weights: str = "imagenet",
    lr: float = 2.0e-5,
    weight_decay: float = 1.34e-6,
    num_workers: int = 2,
    threads: int = 2,
) -> dict:
    """Train ``epochs`` epochs the seed way and time each (epoch 1 includes building the model and loaders)."""
    import torch
    from torch.utils.data import DataLoader
    from torchvision import transforms

    from binsight.data.manifest import load_split
    from binsight.models import create_model

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    t_start = time.monotonic()
    splits = load_split(Path(data))
    classes = sorted({int(r.label) for part in splits.values() for r in part})
    model = create_model(model_name, len(classes), weights=weights)
    mean, std = list(model.default_cfg["mean"]), list(model.default_cfg["std"])
    tf = transforms.Compose(
        [
            transforms.Resize(round(img_size / 0.875)),
            transforms.CenterCrop(img_size),
            transforms.ToTensor(),
            transforms.Normalize(mean, std),
        ]
    )
    train_dl = DataLoader(
        ManifestImages(splits["train"], classes, tf), batch_size=batch_size, shuffle=True, num_workers=num_workers
    )
    val_dl = DataLoader(ManifestImages(splits["val"], classes, tf), batch_size=batch_size, num_workers=num_workers)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = torch.nn.CrossEntropyLoss()
    ends, train_seconds = [], []
    for _ in range(epochs):
        model.train()
        t0 = time.monotonic()
        for x, y in train_dl:
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
        train_seconds.append(time.monotonic() - t0)
        model.eval()
        correct = 0
        with torch.no_grad():
            for x, y in val_dl:
                correct += int((model(x).argmax(1) == y).sum())
        ends.append(time.monotonic())
    epoch_seconds = [ends[0] - t_start] + [b - a for a, b in zip(ends, ends[1:], strict=False)]
    return {
        "n_train": len(splits["train"]),
        "n_val": len(splits["val"]),
        "epoch_seconds": epoch_seconds,
        "train_loop_seconds": train_seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_rss_children_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="split folder (train.csv / val.csv)")
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--weights", default="imagenet")
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    result = seed_style_train(
        args.data,
        args.model,
        args.img_size,
        args.batch_size,
        args.epochs,
        weights=args.weights,
        num_workers=args.num_workers,
        threads=args.threads,
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
