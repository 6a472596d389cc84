"""``param_groups``: weight decay on weight matrices only (never norms, biases or tokens), and the groups
hold exactly the trainable parameters."""

from __future__ import annotations

from visionkit.core.params import param_groups, parameter_report
from visionkit.tasks import ClassificationTask


def test_param_groups_exclude_norms_biases_and_tokens() -> None:
    task = ClassificationTask(backbone="test_vit", backbone_kwargs={"patch_size": 4}, image_size=32, num_classes=4)
    decay, no_decay = param_groups(task, 0.1)
    names = {id(p): n for n, p in task.named_parameters()}
    assert all(names[id(p)].endswith("weight") and p.ndim > 1 for p in decay["params"])
    no_decay_names = {names[id(p)] for p in no_decay["params"]}
    assert "model.cls_token" in no_decay_names and "model.pos_embed" in no_decay_names
    assert any("norm" in n for n in no_decay_names) and no_decay["weight_decay"] == 0.0
    assert sum(p.numel() for g in (decay, no_decay) for p in g["params"]) == parameter_report(task).trainable
