"""visionkit: adapt vision and multimodal models through their intermediate activations.

Importing the package is cheap: no torch, Lightning or heavy optional libraries are loaded
here, so ``visionkit --help`` answers quickly.
"""

__version__ = "0.1.0"
