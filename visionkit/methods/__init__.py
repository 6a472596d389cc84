"""Published methods, one folder each (``model.py`` pure torch, ``task.py`` the LightningModule, ``README.md``)."""
