"""UniPT's figures for the image panels that :class:`visionkit.callbacks.ImageLogger` writes.

The tasks' ``visualize`` returns them; matplotlib is imported inside the function that draws.
"""

from __future__ import annotations

from torch import Tensor

from visionkit.utils.viz import figure_to_tensor, pyplot

__all__ = ["layer_weight_chart"]


def layer_weight_chart(weights: Tensor, title: str) -> Tensor:
    """Bar chart of the confidence ``pi`` ``(B, T)`` per target layer (mean and per-sample spread)."""
    plt = pyplot()

    w = weights.float().cpu().numpy()
    fig, ax = plt.subplots(figsize=(5, 2.6))
    x = list(range(w.shape[1]))
    ax.bar(x, w.mean(0), color="tab:blue", label="mean over images")
    ax.scatter(x * len(w), w.flatten(), s=6, color="black", alpha=0.4, label="per image")
    ax.axhline(1.0 / w.shape[1], color="grey", linestyle="--", linewidth=0.8, label="uniform")
    ax.set_xticks(x, ["emb" if i == 0 else str(i) for i in x], fontsize=7)
    ax.set_xlabel("hidden state (0 = embedding, l = block l)")
    ax.set_ylabel("confidence π")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6)
    fig.tight_layout()
    return figure_to_tensor(fig)
