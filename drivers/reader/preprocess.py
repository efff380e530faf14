"""Pre-processing steps for hard QR frames: small pure functions on Pillow images (mode ``L``).

Pillow only (no numpy: the daemon does not depend on it). Each step says what it wins and what
it costs, measured with ``kiosk bench qr`` on 640x480 frames on the development machine (the
times are for a typical crop of about 200x200 pixels unless said otherwise; a Pi 4 is 5-8x
slower). zxing-cpp already inverts (``try_invert``) and rotates by itself, so neither is a step
here.

The candidate search (:func:`activity`) is how the kiosk's decoder stays cheap: a 39x29 map of
where the frame is busy with fine detail says whether anything code-like is there at all (a
wall or a hand is not: the frame is given up before any decoding) and where to crop, so that
the expensive steps run on a crop.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image

Box = tuple[int, int, int, int]  # left, top, right, bottom, in pixels of the full frame

CELL = 16  # pixels of the full frame per cell of the activity map
BUSY_FLOOR = 16  # an activity floor this high: busy all over (a code that fills the frame)
_RUNS = re.compile(rb"[^\x00]+")


def gray(image: Image.Image) -> Image.Image:
    """The image in mode ``L`` (a no-op for camera frames, which already are)."""
    return image if image.mode == "L" else image.convert("L")


def half(image: Image.Image) -> Image.Image:
    """Half the size, each pixel the mean of 2x2 (``Image.reduce``).

    Wins: sensor noise (sigma halves) and time (a quarter of the pixels) when modules are ≥ 3 px.
    Costs: ~0.1 ms for a full 640x480 frame; loses codes with modules under 2.5 px.
    """
    return image.reduce(2)


def local_contrast(image: Image.Image, radius: int = 4, gain: float = 3.0) -> Image.Image:
    """Each pixel minus the mean of its ``radius`` neighbourhood, times ``gain``, around 128.

    Wins: glare (a bright blob's slow gradient is subtracted away), dim and low-contrast screens
    (12-40 grey levels become ~40-120), uneven light. Costs: one box blur and one subtract,
    ~0.2 ms on a 200x200 crop, ~0.05 ms on its :func:`half`. ``radius`` should be 1-3
    modules: a larger one keeps the glare, a smaller one erases the modules' insides.
    """
    from PIL import ImageChops, ImageFilter

    background = image.filter(ImageFilter.BoxBlur(radius))
    return ImageChops.subtract(image, background, scale=1 / gain, offset=128)


def stretch(image: Image.Image, cutoff: float = 1.0) -> Image.Image:
    """Autocontrast: the darkest ``cutoff`` % become black and the brightest white.

    Wins: low contrast when the crop is mostly code (with zxing-cpp's fixed-threshold
    binarizer, which then splits at mid-grey). Costs: a histogram and a lookup table, ~0.07 ms
    on a 200x200 crop (``ImageOps.autocontrast`` does the same at twice the cost).
    """
    histogram = image.histogram()
    cut = image.width * image.height * cutoff / 100
    lo, seen = 0, 0
    while lo < 255 and seen + histogram[lo] <= cut:
        seen += histogram[lo]
        lo += 1
    hi, seen = 255, 0
    while hi > 0 and seen + histogram[hi] <= cut:
        seen += histogram[hi]
        hi -= 1
    if hi <= lo:
        return image
    k = 255 / (hi - lo)
    ramp = [round((v - lo) * k) for v in range(lo, hi + 1)]
    return image.point([0] * lo + ramp + [255] * (255 - hi))


def smooth(image: Image.Image, radius: float = 1.0) -> Image.Image:
    """A box blur of ``radius`` pixels. Wins: heavy sensor noise (sigma ≥ 10) on modules ≥ 3 px,
    where zxing-cpp's binarizer otherwise sees speckle. Costs: ~0.15 ms on a 200x200 crop;
    blurs small modules."""
    from PIL import ImageFilter

    return image.filter(ImageFilter.BoxBlur(radius))


def upscale(image: Image.Image, factor: int = 2) -> Image.Image:
    """Bicubic enlargement. Wins: small codes (1.3-2.2 px per module) that zxing-cpp's finder
    cannot resolve. Costs: ~0.7 ms for a 200x200 crop, and ``factor``² the pixels for the next
    step: on small crops only."""
    from PIL import Image

    size = (image.width * factor, image.height * factor)
    return image.resize(size, Image.Resampling.BICUBIC)


def sharpen(image: Image.Image, radius: float = 2.0, percent: int = 150) -> Image.Image:
    """Unsharp mask. Wins: small and slightly out-of-focus codes (the module edges steepen;
    before :func:`upscale`, which would otherwise smear them). Costs: a Gaussian blur,
    ~0.3 ms on a 200x200 crop; amplifies noise."""
    from PIL import ImageFilter

    return image.filter(ImageFilter.UnsharpMask(radius, percent, 0))


def _gradient(image: Image.Image) -> Image.Image:
    """|∂x| + |∂y| between neighbouring pixels (one pixel narrower and shorter)."""
    from PIL import ImageChops

    w, h = image.size
    core = image.crop((0, 0, w - 1, h - 1))
    dx = ImageChops.difference(core, image.crop((1, 0, w, h - 1)))
    dy = ImageChops.difference(core, image.crop((0, 1, w - 1, h)))
    return ImageChops.add(dx, dy)


def _median(image: Image.Image) -> int:
    histogram = image.histogram()
    half_count, seen = (image.width * image.height) / 2, 0
    for value, count in enumerate(histogram):
        seen += count
        if seen >= half_count:
            return value
    return 255


@dataclass(frozen=True)
class Region:
    """A candidate region: its box in the full frame and how busy it is (larger: more)."""

    box: Box
    score: int


@dataclass(frozen=True)
class Activity:
    """A map of where the frame is busy with fine detail, in cells of :data:`CELL` px.

    Made by :func:`activity`. A cell is *busy* at ``threshold`` when its fine gradient (pixel
    to pixel) stands above the frame's median (the noise floor) by more than ``threshold``
    times twice its coarse gradient (cell to cell) plus the floor: a QR code's modules make
    much fine detail and little coarse change, the edge of a hand or of a shadow the opposite,
    a wall neither. Contrast cancels out, so a dim code is found as well as a bright one.
    """

    fine: Image.Image  # mean |gradient| per cell
    coarse: Image.Image  # |gradient| between the cells' means
    floor: int  # the median of ``fine``: noise and texture of the background

    def excess(self, threshold: float) -> bytes:
        """Per cell (row by row), how far it is above the busy line at ``threshold`` (0: not
        busy)."""
        from PIL import ImageChops

        # busy ⟺ fine > 2·threshold·coarse + floor + threshold·(floor + 1)
        offset = round(self.floor + threshold * (self.floor + 1))
        line = ImageChops.add(self.coarse, self.coarse, scale=1 / threshold, offset=offset)
        return ImageChops.subtract(self.fine, line).tobytes()

    def any_busy(self, threshold: float) -> bool:
        """Whether any cell is busy: ``False`` for a wall, a hand, an empty counter. ``True``
        too when the floor itself is :data:`BUSY_FLOOR` or more: a code that fills most of
        the frame raises the median it is measured against."""
        return self.floor >= BUSY_FLOOR or bool(self.excess(threshold).strip(b"\0"))

    def regions(self, threshold: float, limit: int = 2) -> list[Region]:
        """Clusters of busy cells (4-neighbours), the busiest first, at most ``limit``."""
        w, h = self.fine.size
        return _clusters(self.excess(threshold), w, h)[:limit]


def activity(small: Image.Image, scale: int = 4) -> Activity:
    """The :class:`Activity` of a frame from ``small``, the frame reduced ``scale`` times.

    Costs ~0.15 ms for a 640x480 frame at ``scale`` 4 (its 160x120 reduction, ~0.07 ms more):
    a few Pillow operations. :meth:`Activity.regions` then costs ~0.1 ms of Python on the runs
    of busy cells, :meth:`Activity.any_busy` ~0.01 ms.
    """
    step = CELL // scale
    coarse = _gradient(small.reduce(step))
    w, h = coarse.size
    fine = _gradient(small).reduce(step).crop((0, 0, w, h))
    return Activity(fine, coarse, _median(fine))


def _clusters(excess: bytes, w: int, h: int) -> list[Region]:
    """Connected runs of non-zero cells (4-neighbours), as regions, the busiest first.

    Row by row: each run of busy cells joins the clusters of the runs it touches in the row
    above (union-find over runs; a sweep over both rows' runs, which are in order)."""
    parent: list[int] = []
    spans: list[list[int]] = []  # per run: x0, y0, x1, y1, score
    above: list[tuple[int, int, int]] = []  # the previous row's runs: start, end, index

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = i = parent[parent[i]]
        return i

    for y in range(h):
        row = excess[y * w : (y + 1) * w]
        here: list[tuple[int, int, int]] = []
        k = 0
        for match in _RUNS.finditer(row):
            a, b = match.span()
            index = len(parent)
            parent.append(index)
            spans.append([a, y, b, y + 1, sum(match.group())])
            while k < len(above) and above[k][1] <= a:  # ends before this run starts
                k += 1
            j = k
            while j < len(above) and above[j][0] < b:  # overlaps this run
                r1, r2 = root(index), root(above[j][2])
                if r1 != r2:
                    parent[max(r1, r2)] = min(r1, r2)
                j += 1
            here.append((a, b, index))
        above = here
    clusters: dict[int, list[int]] = {}
    for index, span in enumerate(spans):
        r = root(index)
        c = clusters.get(r)
        if c is None:
            clusters[r] = span
        else:
            c[0], c[1] = min(c[0], span[0]), min(c[1], span[1])
            c[2], c[3] = max(c[2], span[2]), max(c[3], span[3])
            c[4] += span[4]
    regions = [
        Region((x0 * CELL, y0 * CELL, x1 * CELL, y1 * CELL), score)
        for x0, y0, x1, y1, score in clusters.values()
    ]
    regions.sort(key=lambda r: r.score, reverse=True)
    return regions


def expand(box: Box, size: tuple[int, int], margin: float = 0.25, minimum: int = 64) -> Box:
    """``box`` grown by ``margin`` of its size on each side (the quiet zone and a module
    half-cut by the cell grid), at least ``minimum`` px square, clipped to ``size``."""
    x0, y0, x1, y1 = box
    mx = max(margin * (x1 - x0), (minimum - (x1 - x0)) / 2)
    my = max(margin * (y1 - y0), (minimum - (y1 - y0)) / 2)
    w, h = size
    return (
        max(0, int(x0 - mx)),
        max(0, int(y0 - my)),
        min(w, int(x1 + mx + 1)),
        min(h, int(y1 + my + 1)),
    )
