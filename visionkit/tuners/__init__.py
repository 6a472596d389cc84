"""Tuners (peft's idea): wrap a base model, freeze it, and add or expose trainable parts."""

from visionkit.tuners.base import BaseTuner
from visionkit.tuners.lora import LoRATuner

__all__ = ["BaseTuner", "LoRATuner"]
