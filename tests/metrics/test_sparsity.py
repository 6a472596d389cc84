"""ActivationDensity: overall density is sum nnz / sum numel (not a mean of ratios), MAC-weighted by fan-out,
and merging two instances (as DDP ranks) gives the single-instance result."""

from __future__ import annotations

import pytest

from visionkit.metrics.sparsity import ActivationDensity


def test_overall_density_pools_the_counts_and_the_mac_density_weights_them() -> None:
    metric = ActivationDensity(["a", "b"], fanouts=[10, 1])
    metric.update({"a": (1, 10), "b": (30, 40)})
    out = metric.compute()
    assert float(out["density"]) == pytest.approx(31 / 50)  # a mean of ratios would be (0.1 + 0.75) / 2
    assert float(out["mac_density"]) == pytest.approx((10 * 1 + 30) / (10 * 10 + 40))
    assert float(out["density/a"]) == pytest.approx(0.1) and float(out["density/b"]) == pytest.approx(0.75)


def test_merged_instances_equal_one_instance() -> None:
    whole, first, second = (ActivationDensity(["a", "b"], [3, 2]) for _ in range(3))
    batches = [{"a": (2, 8), "b": (1, 4)}, {"a": (5, 8)}, {"b": (4, 4)}]
    for batch in batches:
        whole.update(batch)
    first.update(batches[0])
    second.update(batches[1])
    second.update(batches[2])
    first.merge_state(second)
    assert {k: float(v) for k, v in first.compute().items()} == pytest.approx({k: float(v) for k, v in whole.compute().items()})
    with pytest.raises(ValueError, match="one fan-out per layer"):
        ActivationDensity(["a"], [1, 2])
