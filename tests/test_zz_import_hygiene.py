"""Heavy optional libraries (diffusers, open_clip, lime, peft) are imported lazily: ``visionkit.cli`` and the
shared toolkit (backbones, tuners, memory, callbacks) load none of them, checked in a fresh interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys

HEAVY = ("diffusers", "open_clip", "lime", "peft")

PROBE = f"""
import json, sys
import visionkit.cli
after_cli = [m for m in {HEAVY!r} if m in sys.modules]
import visionkit.backbones, visionkit.backbones.intermediates, visionkit.backbones.hooks, visionkit.backbones.vit_stepper
import visionkit.tuners, visionkit.tuners.side, visionkit.tuners.inject, visionkit.memory, visionkit.callbacks
after_toolkit = [m for m in {HEAVY!r} if m in sys.modules]
print(json.dumps({{"cli": after_cli, "toolkit": after_toolkit}}))
"""

# (The file name sorts last so the probe has the whole session to finish.)
# Started when pytest collects this file, so the fresh interpreter (which spends ~10 s importing torch,
# timm and Lightning) runs on the second core while the other tests run; the test only waits for it.
_PROBE = subprocess.Popen(
    [sys.executable, "-c", PROBE], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    env={**os.environ, "HF_HUB_OFFLINE": "1"},
)


def test_cli_and_toolkit_imports_stay_light():
    try:
        stdout, stderr = _PROBE.communicate(timeout=180)
    finally:
        if _PROBE.poll() is None:
            _PROBE.kill()
    assert _PROBE.returncode == 0, stderr[-2000:]
    loaded = json.loads(stdout.strip().splitlines()[-1])
    assert loaded["cli"] == [], f"import visionkit.cli loaded {loaded['cli']}"
    assert loaded["toolkit"] == [], f"importing the toolkit loaded {loaded['toolkit']}"
