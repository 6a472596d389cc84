"""Published methods, one folder each (``model.py`` pure torch, ``task.py`` the LightningModule, ``README.md``)."""
from visionkit.methods.layer_masking import LayerMaskingTask  # noqa: F401
