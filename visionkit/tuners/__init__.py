"""Tuners (peft's idea): wrap a base model, freeze it, and add or expose trainable parts."""

from visionkit.tuners.base import BaseTuner
from visionkit.tuners.inject import matching_modules, replace_modules, set_submodule
from visionkit.tuners.lora import LoRATuner
from visionkit.tuners.side import SideTuner

__all__ = ["BaseTuner", "LoRATuner", "SideTuner", "matching_modules", "replace_modules", "set_submodule"]
