"""Dense vs delta multiply-accumulates of a CNN with Delta Activation Layers, and the layers' forward-time cost.

On a few validation batches of moving-digit clips (``MovingDigitsDataModule``) the network, with a
``DeltaActivation`` after each activation (``--threshold`` step; a trained ``DeltaActivationTask``
checkpoint brings its own), runs frame by frame: per layer the dense MACs ``fanout * numel(y_t)``
against the delta MACs ``fanout * nnz(y_t - y_{t-1})`` (the first frame from a blank state), and the
float64 check that accumulating the next layers' outputs over the deltas gives the dense outputs.
Then forwards of the network with and without the layers alternate (median of ``--repeats`` pairs;
target <= 1.3x). The logic is :mod:`visionkit.methods.delta_activation.delta_inference`.

    python scripts/bench_delta_activation.py                      # random test_resnet weights, ~10 s
    python scripts/bench_delta_activation.py --checkpoint run/last.ckpt --batches 8
"""

from __future__ import annotations

import argparse
import copy
import statistics
from pathlib import Path

TARGET = 1.3


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    p = argparse.ArgumentParser(prog="bench_delta_activation", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", default="test_resnet", help="timm model name (ignored for a .ckpt)")
    p.add_argument("--checkpoint", default=None,
                   help="a trained task's .ckpt (its model is used) or .safetensors/.pth weights of --model")
    p.add_argument("--threshold", type=float, default=0.25, help="initial quantisation step of the inserted layers")
    p.add_argument("--batches", type=int, default=4, help="validation batches counted")
    p.add_argument("--batch-size", type=int, default=8, help="clips per batch")
    p.add_argument("--frames", type=int, default=8, help="frames per clip T")
    p.add_argument("--image-size", type=int, default=32, help="frame side (px)")
    p.add_argument("--repeats", type=int, default=20, help="timed forward pairs (with / without the layers)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights and of the clips")
    args = p.parse_args(argv)
    if min(args.batches, args.batch_size, args.frames, args.image_size, args.repeats, args.threads) < 1:
        p.error("batches, batch-size, frames, image-size, repeats and threads must be positive")
    if not args.threshold > 0:
        p.error(f"--threshold must be a positive step, got {args.threshold}")
    return args


def load_network(args: argparse.Namespace):
    """``(network, input normalisation, in_channels, what the weights are)`` from ``--model``/``--checkpoint``."""
    from torch import nn

    from visionkit.backbones import create_backbone
    from visionkit.core.checkpoints import load_task

    if args.checkpoint and Path(args.checkpoint).suffix == ".ckpt":
        task = load_task(args.checkpoint)
        channels = int(getattr(task.hparams, "in_channels", None) or 3)
        return task.model, task.normalize, channels, f"{type(task).__name__} checkpoint {args.checkpoint}"
    net = create_backbone(args.model, checkpoint_path=args.checkpoint, num_classes=10)
    source = f"weights {args.checkpoint}" if args.checkpoint else "RANDOM weights (no --checkpoint given)"
    return net, nn.Identity(), 3, f"{args.model}, {source}"


def main(argv: list[str] | None = None) -> int:
    """Print the MAC table, the equivalence check and the forward-time ratios; returns 0."""
    args = parse_args(argv)
    import torch

    from visionkit.data.datamodules import MovingDigitsDataModule
    from visionkit.errors import exit_on_user_error
    from visionkit.methods.delta_activation.delta_inference import (
        check_delta_equivalence,
        delta_macs,
        time_forward_pair,
    )
    from visionkit.methods.delta_activation.insert import (
        delta_layers,
        insert_delta_activations,
        remove_delta_activations,
    )

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    with exit_on_user_error("bench_delta_activation"):
        net, normalize, channels, source = load_network(args)
        net.eval()
        dm = MovingDigitsDataModule(
            num_frames=args.frames, num_train=1, num_val=args.batches * args.batch_size, num_test=1,
            channels=channels, batch_size=args.batch_size, image_size=args.image_size, seed=args.seed,
        )
        dm.setup("validate")
        with torch.no_grad():
            clips = [normalize(b["video"].flatten(0, 1)).unflatten(0, b["video"].shape[:2]) for b in dm.val_dataloader()]
        if delta_layers(net):
            plain = copy.deepcopy(net)
            remove_delta_activations(plain)
            placed = "the checkpoint's own delta layers"
        else:
            plain = copy.deepcopy(net)
            insert_delta_activations(net, clips[0][:1, 0], threshold_init=args.threshold)
            placed = f"delta layers inserted after every activation, step {args.threshold}"
        print(f"model: {source}; {placed}")
        clip = torch.cat(clips)
        print(f"data: {len(clip)} moving-digit validation clips of {args.frames} frames, {args.image_size} px\n")
        report = delta_macs(net, clip)
        print(report.table())
        print(f"\ntemporal density (first frame excluded) {report.density:.3f}, MAC-weighted {report.mac_density:.3f}")
        print(f"MACs skipped by delta inference          {report.skipped_macs:,} of {report.dense_macs:,}")
        print(f"total dense/delta MACs                   {report.ratio:.2f}x")
        error = check_delta_equivalence(net, clips[0])
        print(f"delta-accumulated vs dense outputs of the layers after the DALs (float64): max |diff| {error:.2e}\n")
        frames = clips[0].flatten(0, 1)
        print(f"forward of {len(frames)} frames, with / without the delta layers, median of {args.repeats} alternating pairs:")
        for label, num_frames in (("quantisation only (inference)", None), ("with delta statistics (training)", args.frames)):
            timing = time_forward_pair(net, plain, frames, args.repeats, num_frames=num_frames)
            plain_ms, delta_ms = (1e3 * statistics.median(t) for t in (timing.plain_s, timing.delta_s))
            verdict = ("met" if timing.ratio <= TARGET else "MISSED") if num_frames is None else "(reported only)"
            print(f"  {label:<34} {timing.ratio:5.2f}x  ({delta_ms:.2f} ms vs {plain_ms:.2f} ms)  "
                  f"target <= {TARGET}x: {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
