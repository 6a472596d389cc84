"""SyntheticCaptionedShapes: one named-colour shape per image with a caption that describes it.

Items are pure functions of ``(seed, index)`` (like :class:`SyntheticShapes`), so image-text retrieval
can be learnt and tested offline. The caption's attributes are drawn first from the item's random
stream, so captions come without drawing the image.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from visionkit.data.datasets.captions import CaptionDataset
from visionkit.data.datasets.synthetic_shapes import SHAPES, _background, shape_mask

#: Named object colours (RGB in [0, 1]); pairwise distances are at least 0.37.
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.9, 0.1, 0.1),
    "green": (0.1, 0.75, 0.1),
    "blue": (0.1, 0.25, 0.95),
    "yellow": (0.95, 0.9, 0.1),
    "magenta": (0.85, 0.1, 0.85),
    "cyan": (0.1, 0.85, 0.9),
    "orange": (1.0, 0.55, 0.0),
    "white": (0.97, 0.97, 0.97),
}
COLOUR_NAMES = list(COLOURS)
#: Cells of a 3x3 grid, row-major: position ``p`` is row ``p // 3``, column ``p % 3``.
POSITIONS = [
    "top left", "top", "top right", "left", "centre", "right", "bottom left", "bottom", "bottom right",
]
_PLACES = [
    "in the top left", "at the top", "in the top right", "on the left", "in the centre", "on the right",
    "in the bottom left", "at the bottom", "in the bottom right",
]
#: Attributes a caption can state, in the order they are stated.
ATTRIBUTES = ("colour", "shape", "position")
TEMPLATE_SETS = ("plain", "varied")
# Paraphrases with a position ({place}: "in the top left", {where}: "top left") and without one;
# "plain" always uses the first, "varied" the one drawn for the index.
_WITH_POSITION = [
    "{thing} {place}",
    "a picture of {thing} {place}",
    "{noun}, {where}",
    "there is {thing} {place} of the image",
    "an image showing {thing} {place}",
    "{where}: {thing}",
]
_WITHOUT_POSITION = [
    "{thing}",
    "a picture of {thing}",
    "{noun}",
    "there is {thing} in the image",
    "an image showing {thing}",
    "a drawing of {thing}",
]
#: Object half-size range, as a fraction of the image side.
MIN_SCALE, MAX_SCALE = 0.10, 0.16
#: The object's centre keeps this fraction of a cell's side away from the cell's borders.
CELL_MARGIN = 0.2
#: Backgrounds are redrawn until 99% of their pixels are at least this far (RGB distance) from the object.
MIN_CONTRAST = 0.35


class SyntheticCaptionedShapes(CaptionDataset):
    """One shape of a named colour in one cell of a 3x3 grid per image, with a caption stating it.

    Args:
        length: number of items (= number of images; one caption each).
        image_size: side in pixels (at least 16).
        seed: generation seed (items depend only on ``seed`` and the index).
        describe: which attributes the caption states, any non-empty subset of ``("colour", "shape",
            "position")``; always stated in that order. Unstated attributes are still random.
        num_shapes: how many of :data:`SHAPES` to use (1 to 8).
        num_colours: how many of :data:`COLOURS` to use (1 to 8).
        templates: ``"plain"`` ("a red circle in the top left") or ``"varied"`` (paraphrases drawn per
            index, e.g. "there is a red circle in the top left of the image").

    Items: ``image`` float32 ``(3, H, W)`` in [0, 1]; ``caption`` str; ``image_id`` and ``index`` int64 scalars (= index);
    ``shape``, ``colour``, ``position`` int64 scalars (indices into :data:`SHAPES`, :data:`COLOUR_NAMES`,
    :data:`POSITIONS`). The object is painted in its exact palette colour; its centre of mass lies in
    its grid cell.
    """

    def __init__(
        self,
        length: int = 1000,
        image_size: int = 32,
        seed: int = 0,
        describe: Sequence[str] = ATTRIBUTES,
        num_shapes: int = 8,
        num_colours: int = 8,
        templates: str = "plain",
    ) -> None:
        if length < 1:
            raise ValueError(f"length must be a positive integer, got {length}")
        if image_size < 16:
            raise ValueError(f"image_size must be at least 16 px, got {image_size}")
        if not 1 <= num_shapes <= len(SHAPES):
            raise ValueError(f"num_shapes must be between 1 and {len(SHAPES)}, got {num_shapes}")
        if not 1 <= num_colours <= len(COLOURS):
            raise ValueError(f"num_colours must be between 1 and {len(COLOURS)}, got {num_colours}")
        if templates not in TEMPLATE_SETS:
            raise ValueError(f"templates must be one of {list(TEMPLATE_SETS)}, got {templates!r}")
        if isinstance(describe, str) or not describe:
            raise ValueError(f"describe must be a non-empty list of {list(ATTRIBUTES)}, got {describe!r}")
        unknown = [a for a in describe if a not in ATTRIBUTES]
        if unknown:
            raise ValueError(f"unknown describe entry {unknown[0]!r}; expected entries of {list(ATTRIBUTES)}")
        self.length, self.image_size, self.seed, self.templates = length, image_size, seed, templates
        self.describe = tuple(a for a in ATTRIBUTES if a in describe)
        self.shapes, self.colours = SHAPES[:num_shapes], COLOUR_NAMES[:num_colours]
        self.num_images = length
        self._captions: list[str] | None = None

    def __len__(self) -> int:
        return self.length

    def _draws(self, index: int) -> tuple[np.random.Generator, int, int, int, int]:
        """The item's generator after drawing ``(shape, colour, position, template)``."""
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {type(self).__name__} of length {self.length}")
        rng = np.random.default_rng([self.seed, index])
        shape, colour = int(rng.integers(len(self.shapes))), int(rng.integers(len(self.colours)))
        position, template = int(rng.integers(len(POSITIONS))), int(rng.integers(len(_WITH_POSITION)))
        return rng, shape, colour, position, template

    def _text(self, shape: int, colour: int, position: int, template: int) -> str:
        words = [self.colours[colour]] if "colour" in self.describe else []
        words.append(self.shapes[shape] if "shape" in self.describe else "object")
        noun = " ".join(words)
        thing = f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}"
        choice = template if self.templates == "varied" else 0
        if "position" in self.describe:
            return _WITH_POSITION[choice].format(
                thing=thing, noun=noun, place=_PLACES[position], where=POSITIONS[position]
            )
        return _WITHOUT_POSITION[choice].format(thing=thing, noun=noun)

    def caption(self, index: int) -> str:
        """The caption of item ``index`` (without drawing its image)."""
        return self._text(*self._draws(index)[1:])

    @property
    def captions(self) -> list[str]:
        """All captions, in item order (computed once)."""
        if self._captions is None:
            self._captions = [self.caption(i) for i in range(self.length)]
        return self._captions

    def _image(self, rng: np.random.Generator, shape: int, colour: int, position: int) -> np.ndarray:
        """A ``(H, W, 3)`` image in [0, 1] with the shape painted in its palette colour in its grid cell."""
        size, rgb = self.image_size, np.array(COLOURS[self.colours[colour]])
        best, best_contrast = None, -1.0
        for _ in range(20):
            background = _background(rng, size)
            contrast = float(np.quantile(np.linalg.norm(background - rgb, axis=-1), 0.01))
            if contrast > best_contrast:
                best, best_contrast = background, contrast
            if contrast >= MIN_CONTRAST:
                break
        img = best
        s = rng.uniform(MIN_SCALE, MAX_SCALE) * size
        cell = size / 3
        row, col = divmod(position, 3)
        margin = CELL_MARGIN * cell
        cx = rng.uniform(max(col * cell + margin, s), min((col + 1) * cell - margin, size - s))
        cy = rng.uniform(max(row * cell + margin, s), min((row + 1) * cell - margin, size - s))
        yy, xx = np.mgrid[0:size, 0:size] + 0.5
        mask = shape_mask(self.shapes[shape], xx - cx, yy - cy, s)
        if not mask.any():  # a thin shape can fall between pixel centres at 16 px
            mask[int(cy), int(cx)] = True
        img[mask] = rgb
        return img

    def __getitem__(self, index: int) -> dict[str, Any]:
        rng, shape, colour, position, template = self._draws(index)
        img = self._image(rng, shape, colour, position)
        return {
            "image": torch.from_numpy(img.transpose(2, 0, 1).astype(np.float32)),
            "caption": self._text(shape, colour, position, template),
            "image_id": torch.tensor(index, dtype=torch.int64),
            "index": torch.tensor(index, dtype=torch.int64),
            "shape": torch.tensor(shape, dtype=torch.int64),
            "colour": torch.tensor(colour, dtype=torch.int64),
            "position": torch.tensor(position, dtype=torch.int64),
        }
