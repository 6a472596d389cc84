"""Class Token Contrast (CTC, spec §2.6): DINO-style projection heads, the EMA teacher and the loss.

Head: ``MLP(D -> 2048 -> GELU -> 2048 -> GELU -> 256)`` (trunc-normal std 0.02, bias 0), L2
normalisation, then a weight-normalised ``Linear(256 -> 1024)`` without bias whose magnitude ``g``
is fixed at 1: each output is the cosine between the bottleneck and a unit prototype, in [-1, 1].
Only the head has a teacher; the ViT is shared and the teacher reads its class tokens detached. The
teacher starts as a copy of the student and follows it by EMA with a fixed momentum 0.9,
``theta_t <- m theta_t + (1 - m) theta_s``, once per step *before* the teacher output is computed.

Loss, per image ``i`` and teacher view ``t`` (``G = 2`` global views), student views ``s`` (the
``G`` global views, always positive, and the local crops, positive unless their flag is 0)::

    e_ts = exp(q_t . p_s / tau)   (raw dot product of the 1024-d outputs; tau 0.5 VOC, 1.0 COCO)
    N_t  = sum_{s negative} e_ts
    l_it = sum_{s in P} -log(e_ts / (e_ts + N_t + 1e-4)) + log(1 + N_t + 1e-4)
    L    = mean_i  sum_t l_it / G / (|P| + 1e-4)

The extra ``log(1 + N_t)`` term (the official ``for ... else``) is added once per teacher view. It
is computed here in log space (``logsumexp``), which equals the official formula but does not
overflow when ``q . p / tau`` is large.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

from visionkit.methods.toco.cam import full_precision, work_dtype
from visionkit.methods.toco.errors import ToCoError

__all__ = ["CTCHead", "CTCHeads", "ctc_loss"]


class CTCHead(nn.Module):
    """``(..., D) -> (..., out_dim)`` projection: MLP, L2 normalisation, weight-normed prototypes (g = 1)."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int = 1024,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        num_layers: int = 3,
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ToCoError(f"CTC head num_layers must be >= 1, got {num_layers}")
        dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [bottleneck_dim]
        layers: list[nn.Module] = []
        for k, (a, b) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
            layers += [nn.Linear(a, b)] + ([nn.GELU()] if k < num_layers - 1 else [])
        self.mlp = nn.Sequential(*layers)
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        self.last_layer = weight_norm(nn.Linear(bottleneck_dim, out_dim, bias=False))
        magnitude = self.last_layer.parametrizations.weight.original0
        with torch.no_grad():
            magnitude.fill_(1.0)
        magnitude.requires_grad_(False)

    def forward(self, x: Tensor) -> Tensor:
        x = nn.functional.normalize(self.mlp(x), p=2, dim=-1)
        return self.last_layer(x)


class CTCHeads(nn.Module):
    """Student head and its EMA teacher.

    ``forward(global_tokens (B, G, D), local_tokens (B, n, D))`` returns ``teacher (B, G, K)`` (from the
    detached global tokens, no grad) and ``student (B, G + n, K)``; in training mode the teacher is
    EMA-updated first (``update_teacher=False`` skips it).
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int = 1024,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        momentum: float = 0.9,
    ) -> None:
        super().__init__()
        if not 0.0 <= momentum <= 1.0:
            raise ToCoError(f"CTC EMA momentum must be in [0, 1], got {momentum}")
        self.momentum = momentum
        self.student = CTCHead(in_dim, out_dim, hidden_dim, bottleneck_dim)
        self.teacher = CTCHead(in_dim, out_dim, hidden_dim, bottleneck_dim)
        self.teacher.load_state_dict(self.student.state_dict())
        self.teacher.requires_grad_(False)

    @torch.no_grad()
    def update_teacher(self) -> None:
        """``theta_t <- m theta_t + (1 - m) theta_s`` for every head parameter."""
        m = self.momentum
        for t, s in zip(self.teacher.parameters(), self.student.parameters(), strict=True):
            t.mul_(m).add_(s.detach().to(t.dtype), alpha=1.0 - m)

    def forward(
        self, global_tokens: Tensor, local_tokens: Tensor, update_teacher: bool = True
    ) -> tuple[Tensor, Tensor]:
        if (
            global_tokens.ndim != 3
            or local_tokens.ndim != 3
            or global_tokens.shape[0] != local_tokens.shape[0]
        ):
            raise ToCoError(
                f"CTC heads need global tokens (B, G, D) and local tokens (B, n, D), got "
                f"{tuple(global_tokens.shape)} and {tuple(local_tokens.shape)}"
            )
        if self.training and update_teacher:
            self.update_teacher()
        with torch.no_grad():
            teacher = self.teacher(global_tokens.detach())
        student = self.student(torch.cat([global_tokens, local_tokens], dim=1))
        return teacher, student


def ctc_loss(
    teacher: Tensor, student: Tensor, flags: Tensor, temperature: float = 0.5, eps: float = 1e-4
) -> Tensor:
    """CTC loss (scalar, float32 or wider).

    Args:
        teacher: ``(B, G, K)`` teacher outputs of the global views.
        student: ``(B, V, K)`` student outputs, global views first.
        flags: ``(B, V)``; 1 / True marks a positive view, 0 / False a negative local crop.
        temperature: ``tau``.
    """
    if (
        teacher.ndim != 3
        or student.ndim != 3
        or tuple(flags.shape) != tuple(student.shape[:2])
        or teacher.shape[0] != student.shape[0]
        or teacher.shape[2] != student.shape[2]
    ):
        raise ToCoError(
            f"ctc_loss needs teacher (B, G, K), student (B, V, K) and flags (B, V), got "
            f"{tuple(teacher.shape)}, {tuple(student.shape)} and {tuple(flags.shape)}"
        )
    if not temperature > 0:
        raise ToCoError(f"CTC temperature must be > 0, got {temperature}")
    with full_precision(student):
        dtype = torch.promote_types(work_dtype(teacher), work_dtype(student))
        a = teacher.to(dtype) @ student.to(dtype).transpose(1, 2) / temperature  # (B, G, V) = log e_ts
        pos = flags.bool()[:, None, :].expand_as(a)
        neg = a.masked_fill(pos, -math.inf)
        log_n_eps = torch.cat([neg, a.new_full(a.shape[:2] + (1,), math.log(eps))], dim=-1).logsumexp(-1)
        log_n_one = torch.cat([neg, a.new_full(a.shape[:2] + (1,), math.log1p(eps))], dim=-1).logsumexp(-1)
        pos_terms = torch.logaddexp(a, log_n_eps[..., None]) - a  # -log(e / (e + N + eps))
        per_view = torch.where(pos, pos_terms, 0.0).sum(-1) + log_n_one  # (B, G)
        count = flags.bool().sum(-1).to(dtype)
        return (per_view.sum(-1) / teacher.shape[1] / (count + eps)).mean()
