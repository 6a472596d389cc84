"""GPU checks of the video path, side by side in one run (needs CUDA).

1. ``VideoClassificationTask`` (timm ``test_resnet`` per frame) trained for one epoch on
   ``MovingDigitsDataModule`` (3000 clips of 8 frames, 32 px, batch 32) under ``bf16-mixed`` and
   ``32-true``: clips/s, peak CUDA memory (``torch.cuda.max_memory_allocated``), final loss, and the
   bf16/fp32 ratios; then validation accuracy of each.
2. ``TemporalActionMAP``, ``nms_1d`` and ``soft_nms_1d`` on CUDA tensors against the same on the CPU.

    python scripts/bench_video_gpu.py            # ~1-2 min on one GPU
"""

from __future__ import annotations

import argparse
import sys
import time


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    p = argparse.ArgumentParser(prog="bench_video_gpu", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--epochs", type=int, default=1, help="training epochs per precision")
    p.add_argument("--workers", type=int, default=4, help="DataLoader workers")
    return p.parse_args(argv)


def train_arm(precision: str, epochs: int, workers: int) -> dict[str, float]:
    """Train one arm on the GPU; returns clips/s, peak memory (MiB), final train loss and val accuracy."""
    import lightning.pytorch as pl
    import torch

    from visionkit.data.datamodules import MovingDigitsDataModule
    from visionkit.tasks import VideoClassificationTask

    pl.seed_everything(0, verbose=False)
    data = MovingDigitsDataModule(num_workers=workers)
    task = VideoClassificationTask(backbone="test_resnet", num_classes=10, image_size=32, lr=3e-3, warmup_epochs=0.3)
    trainer = pl.Trainer(accelerator="gpu", devices=1, precision=precision, max_epochs=epochs, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         num_sanity_val_steps=0, limit_val_batches=0)
    torch.cuda.reset_peak_memory_stats()
    torch.cuda.synchronize()
    start = time.perf_counter()
    trainer.fit(task, data)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    evaluator = pl.Trainer(accelerator="gpu", devices=1, precision=precision, logger=False, enable_progress_bar=False,
                           enable_model_summary=False)
    result = evaluator.validate(task, data, verbose=False)[0]
    return {
        "clips_per_s": epochs * len(data.dataset("train")) / seconds,
        "peak_mib": torch.cuda.max_memory_allocated() / 2**20,
        "train_loss": float(trainer.callback_metrics.get("train_loss", float("nan"))),
        "val_acc": float(result["val_acc"]),
    }


def check_tal_metrics() -> list[str]:
    """TAL metrics and NMS on CUDA give the CPU's results; returns the failures."""
    import torch

    from visionkit.metrics import TemporalActionMAP, nms_1d, soft_nms_1d

    gen = torch.Generator().manual_seed(0)
    preds, target = [], []
    for _ in range(6):
        starts = torch.rand(20, generator=gen) * 50
        preds.append({"segments": torch.stack([starts, starts + 1 + 5 * torch.rand(20, generator=gen)], 1),
                      "scores": torch.rand(20, generator=gen), "labels": torch.randint(0, 3, (20,), generator=gen)})
        gt = torch.rand(4, generator=gen) * 50
        target.append({"segments": torch.stack([gt, gt + 3], 1), "labels": torch.randint(0, 3, (4,), generator=gen)})
    cuda = lambda items: [{k: v.cuda() for k, v in d.items()} for d in items]  # noqa: E731
    cpu_metric, gpu_metric = TemporalActionMAP(num_classes=3), TemporalActionMAP(num_classes=3).cuda()
    cpu_metric.update(preds, target)
    gpu_metric.update(cuda(preds), cuda(target))
    a, b = cpu_metric.compute(), gpu_metric.compute()
    failures = [f"TemporalActionMAP {k}: cpu {a[k]} cuda {b[k]}" for k in a
                if k.startswith("map") and abs(float(a[k]) - float(b[k].cpu())) > 1e-6]
    seg, score = preds[0]["segments"], preds[0]["scores"]
    if nms_1d(seg, score, 0.3).tolist() != nms_1d(seg.cuda(), score.cuda(), 0.3).cpu().tolist():
        failures.append("nms_1d differs on CUDA")
    if soft_nms_1d(seg, score)[2].tolist() != soft_nms_1d(seg.cuda(), score.cuda())[2].cpu().tolist():
        failures.append("soft_nms_1d selection order differs on CUDA")
    print(f"TemporalActionMAP cpu map={float(a['map']):.4f} cuda map={float(b['map']):.4f}")
    return failures


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("bench_video_gpu: error: needs a CUDA GPU", file=sys.stderr)
        return 2
    print(f"device: {torch.cuda.get_device_name()}  torch {torch.__version__}")
    arms = {p: train_arm(p, args.epochs, args.workers) for p in ("bf16-mixed", "32-true")}
    for name, r in arms.items():
        print(f"{name:<11} {r['clips_per_s']:8.1f} clips/s  peak {r['peak_mib']:8.1f} MiB  "
              f"train_loss {r['train_loss']:.4f}  val_acc {r['val_acc']:.4f}")
    bf16, fp32 = arms["bf16-mixed"], arms["32-true"]
    print(f"bf16/fp32: throughput {bf16['clips_per_s'] / fp32['clips_per_s']:.2f}x  "
          f"peak memory {bf16['peak_mib'] / fp32['peak_mib']:.2f}x")
    failures = check_tal_metrics()
    for failure in failures:
        print("FAIL", failure)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
