"""Oracle 11 of library_design.md §9: heavy optional libraries are imported lazily, in a fresh interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys

HEAVY = ("diffusers", "open_clip", "lime", "peft")

PROBE = """
import json, sys
import visionkit.cli
after_cli = [m for m in {heavy!r} if m in sys.modules]
import visionkit.backbones, visionkit.backbones.intermediates, visionkit.backbones.hooks, visionkit.backbones.vit_stepper
import visionkit.tuners, visionkit.tuners.side, visionkit.tuners.inject, visionkit.memory, visionkit.callbacks
after_toolkit = [m for m in {heavy!r} if m in sys.modules]
print(json.dumps({{"cli": after_cli, "toolkit": after_toolkit}}))
"""


def test_cli_and_toolkit_imports_stay_light():
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY)], capture_output=True, text=True, timeout=120,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["cli"] == [], f"import visionkit.cli loaded {loaded['cli']}"
    assert loaded["toolkit"] == [], f"importing the toolkit loaded {loaded['toolkit']}"
