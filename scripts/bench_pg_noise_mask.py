"""One heating step of policy-gradient noise masks against one plain classifier step, side by side.

The same classifier (same weights), the same batch of SynthRad images: a ``NoiseMaskTask`` step (policy
forward on the clean batch, Beta cells, mask, classifier on the masked batch, the joint loss, one backward,
both optimisers step) and a ``ClassificationTask`` step (clean CE, one backward, one optimiser) alternate,
``--repeats`` pairs after a warm-up; prints the median and fastest times, their ratio (target <= 2.5x with
the official policy trunk resnet10t), and the parameter, gradient and optimiser-state bytes of both.

    python scripts/bench_pg_noise_mask.py                                   # 32 px, batch 32, ~1 min
    python scripts/bench_pg_noise_mask.py --backbone resnet18 --image-size 64
"""

from __future__ import annotations

import argparse
import statistics
import time

TARGET = 2.5


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    p = argparse.ArgumentParser(prog="bench_pg_noise_mask", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--backbone", default="resnet10t", help="timm classifier (the same in both steps)")
    p.add_argument("--policy-trunk", default="resnet10t", help="timm trunk of the policy (official resnet10t)")
    p.add_argument("--estimator", default="faithful", choices=("faithful", "reinforce", "random"))
    p.add_argument("--grid", type=int, default=16, help="mask cells per side")
    p.add_argument("--kernel-size", type=int, default=7, help="odd blur width")
    p.add_argument("--sigma", type=float, default=3.0, help="blur sigma")
    p.add_argument("--image-size", type=int, default=32, help="image side (px)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--optimizer", default="sgd", choices=("sgd", "adamw"))
    p.add_argument("--repeats", type=int, default=20, help="timed step pairs (after 3 warm-up pairs)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights and of the batch")
    args = p.parse_args(argv)
    if min(args.grid, args.kernel_size, args.image_size, args.repeats, args.threads) < 1 or args.batch_size < 2:
        p.error("grid, kernel-size, image-size, repeats and threads must be positive, batch-size at least 2")
    return args


def step_fn(task, optimizers, batch):
    """One training step of ``task`` on ``batch`` with its own loss; returns its seconds."""

    def step() -> float:
        start = time.perf_counter()
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        task.compute_loss(batch, "train")["loss"].backward()
        for opt in optimizers:
            opt.step()
        return time.perf_counter() - start

    return step


def main(argv: list[str] | None = None) -> int:
    """Print the two steps' times, their ratio and the state bytes; returns 0."""
    args = parse_args(argv)
    import torch

    from visionkit.data.datamodules import SynthRadDataModule
    from visionkit.errors import exit_on_user_error
    from visionkit.memory import state_bytes
    from visionkit.methods.pg_noise_mask import NoiseMaskTask
    from visionkit.tasks import ClassificationTask

    torch.set_num_threads(args.threads)
    with exit_on_user_error("bench_pg_noise_mask"):
        torch.manual_seed(args.seed)
        common = {"backbone": args.backbone, "num_classes": 12, "in_channels": 1, "image_size": args.image_size,
                  "normalize_input": True, "optimizer": args.optimizer, "scheduler": "none", "lr": 1e-3}
        heat = NoiseMaskTask(grid=args.grid, kernel_size=args.kernel_size, sigma=args.sigma, estimator=args.estimator,
                             policy_trunk=args.policy_trunk, **common)
        plain = ClassificationTask(**common)
        plain.model.load_state_dict(heat.model.state_dict())
        data = SynthRadDataModule(train_per_class=-(-args.batch_size // 12), batch_size=args.batch_size,
                                  image_size=args.image_size, seed=args.seed, cache=False)
        data.setup("fit")
        batch = next(iter(data.train_dataloader()))
        heat_opts, plain_opts = heat.configure_optimizers(), [plain.configure_optimizers()]
        heat.train(), plain.train()
        steps = {"heating": step_fn(heat, heat_opts, batch), "plain": step_fn(plain, plain_opts, batch)}
        times: dict[str, list[float]] = {name: [] for name in steps}
        for k in range(3 + args.repeats):
            for name in (("heating", "plain") if k % 2 else ("plain", "heating")):  # alternate who goes first
                seconds = steps[name]()
                if k >= 3:
                    times[name].append(seconds)
        policy = heat.masker.policy
        rows = {"plain": state_bytes(plain.model, plain_opts[0]), "heating classifier": state_bytes(heat.model, heat_opts[0])}
        if policy is not None:
            rows["heating policy"] = state_bytes(policy, heat_opts[1])
    print(f"classifier {args.backbone}, policy trunk {args.policy_trunk if policy is not None else '(none)'}, "
          f"estimator {args.estimator}, G={args.grid} k={args.kernel_size} sigma={args.sigma}, "
          f"{args.image_size} px, batch {len(batch['image'])}, {args.optimizer}, {args.threads} thread(s)")
    medians = {name: statistics.median(t) for name, t in times.items()}
    fastest = {name: min(t) for name, t in times.items()}
    for name in steps:
        print(f"  {name:<8} step: median {1e3 * medians[name]:8.2f} ms   fastest {1e3 * fastest[name]:8.2f} ms")
    ratio = medians["heating"] / medians["plain"]
    print(f"heating / plain step, median of {args.repeats} alternating pairs: {ratio:.2f}x "
          f"(fastest: {fastest['heating'] / fastest['plain']:.2f}x); target <= {TARGET}x: "
          f"{'met' if ratio <= TARGET else 'MISSED'}")
    print(f"{'state (MiB)':<20} {'params':>10} {'grads':>10} {'optimizer':>10} {'total':>10}")
    for name, s in rows.items():
        mib = [v / 2**20 for v in (s.parameters + s.buffers, s.gradients, s.optimizer, s.total)]
        print(f"{name:<20} " + " ".join(f"{v:10.2f}" for v in mib))
    heat_total = sum(s.total for name, s in rows.items() if name != "plain")
    print(f"heating / plain state bytes: {heat_total / rows['plain'].total:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
