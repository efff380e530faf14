"""QR decoders behind one interface (:class:`~drivers.reader.base.Decoder`), chosen by name.

==========  ================================================================================
name        what
==========  ================================================================================
``zxing``   zxing-cpp as it comes (:func:`drivers.reader.decode.decode_image`)
``pyzbar``  zbar through pyzbar; needs the system's libzbar (``apt install libzbar0``)
``kiosk``   ours (:class:`KioskDecoder`): zxing-cpp, then the pre-processing passes that pay
            for themselves on hard frames, on crops around candidate regions, in a time budget
``auto``    the same as ``kiosk``
==========  ================================================================================

Decoding is CPU-bound and blocking: it runs in a worker thread. zxing-cpp, pyzbar and Pillow
are imported when a decoder is made or used, never when this module is imported (the daemon's
start-up time). ``kiosk bench qr`` measures them side by side (``kiosk.qrbench``).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from drivers.errors import DecoderUnavailable
from drivers.reader import preprocess as pp

if TYPE_CHECKING:
    from PIL import Image

    from drivers.reader.base import Decoder

NAMES: Final = ("zxing", "pyzbar", "kiosk", "auto")
INSTALL_ZBAR: Final = "apt install libzbar0"


# -- zxing-cpp --------------------------------------------------------------------------------


def _require_zxing() -> None:
    try:
        import zxingcpp  # noqa: F401
    except ImportError as exc:  # a dependency of the project: only a broken install
        raise DecoderUnavailable(f"zxing-cpp cannot be imported ({exc}): uv sync") from exc


@dataclass(frozen=True)
class _Read:
    texts: list[str]
    boxes: list[pp.Box]  # QR codes zxing-cpp found but could not decode (``errors=True``)


def _zxing(
    image: Image.Image,
    *,
    invert: bool,
    downscale: bool = True,
    fixed_threshold: bool = False,
    errors: bool = False,
) -> _Read:
    """zxing-cpp on ``image`` (mode ``L``), QR codes only.

    ``invert`` also tries the image inverted (light-on-dark codes): zxing-cpp then scans twice,
    even when the first scan found the code. ``errors`` also returns where it found a code it
    could not decode: a candidate region for the pre-processing passes.
    """
    import zxingcpp

    texts: list[str] = []
    boxes: list[pp.Box] = []
    for barcode in zxingcpp.read_barcodes(
        image,
        formats=zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode),
        try_rotate=False,  # QR codes are found at any angle anyway: this is for 1D codes
        try_invert=invert,
        try_downscale=downscale,
        binarizer=(
            zxingcpp.Binarizer.FixedThreshold
            if fixed_threshold
            else zxingcpp.Binarizer.LocalAverage
        ),
        return_errors=errors,
    ):
        if barcode.valid:
            text = str(barcode.text)
            if text not in texts:
                texts.append(text)
        else:
            p = barcode.position
            xs = (p.top_left.x, p.top_right.x, p.bottom_left.x, p.bottom_right.x)
            ys = (p.top_left.y, p.top_right.y, p.bottom_left.y, p.bottom_right.y)
            boxes.append((min(xs), min(ys), max(xs), max(ys)))
    return _Read(texts, boxes)


class ZxingDecoder:
    """zxing-cpp as it comes: QR codes only, the frame in grey, its default options."""

    name = "zxing"

    def __init__(self) -> None:
        _require_zxing()  # here rather than on the first frame

    def decode(self, image: Image.Image) -> list[str]:
        from drivers.reader.decode import decode_image

        return decode_image(image)


# -- pyzbar -------------------------------------------------------------------------------------


def _load_pyzbar() -> Callable[[Image.Image], list[str]]:
    """pyzbar's QR decoder. Raises ``ImportError`` or ``OSError`` when pyzbar or the system's
    libzbar cannot be loaded (pyzbar loads libzbar when it is imported)."""
    from pyzbar import pyzbar

    symbols = [pyzbar.ZBarSymbol.QRCODE]

    def decode(image: Image.Image) -> list[str]:
        texts: list[str] = []
        for symbol in pyzbar.decode(image, symbols=symbols):
            text = bytes(symbol.data).decode("utf-8", errors="replace")
            if text not in texts:
                texts.append(text)
        return texts

    return decode


class PyzbarDecoder:
    """zbar through pyzbar: QR codes only, the frame in grey.

    Raises :class:`DecoderUnavailable` when pyzbar or the system's libzbar cannot be loaded.
    """

    name = "pyzbar"

    def __init__(self) -> None:
        try:
            self._decode = _load_pyzbar()
        except (ImportError, OSError) as exc:
            raise DecoderUnavailable(
                f"the pyzbar decoder needs the system's libzbar ({exc}): {INSTALL_ZBAR}, "
                "or use the zxing or kiosk decoder"
            ) from exc

    def decode(self, image: Image.Image) -> list[str]:
        return self._decode(pp.gray(image))


# -- ours -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pass:
    """One attempt on a crop: a pre-processing, then zxing-cpp with some options."""

    name: str
    prepare: Callable[[Image.Image], Image.Image]
    fixed_threshold: bool = False
    invert: bool = False
    max_side: int = 10_000  # skipped on larger crops (where it would cost too much)


def _half_contrast(crop: Image.Image) -> Image.Image:
    return pp.local_contrast(pp.half(crop), 4, 3.0)


#: Tried on every candidate region; a region where none of them sees even a broken QR code is
#: given up (an empty frame's text or hand stops here).
PROBES: Final = (
    Pass("crop", lambda c: c, invert=True),
    Pass("half+contrast", _half_contrast, invert=True),
)
#: Tried, in this order, on regions where a probe or the first scan saw a QR code.
PASSES: Final = (
    Pass("smooth+contrast", lambda c: pp.local_contrast(pp.smooth(c), 8, 3.0)),
    Pass("contrast3", lambda c: pp.local_contrast(c, 3, 4.0)),
    Pass("half+stretch", lambda c: pp.stretch(pp.half(c)), fixed_threshold=True),
    Pass("contrast2", lambda c: pp.local_contrast(c, 2, 4.0)),
    Pass("sharpen+upscale", lambda c: pp.upscale(pp.sharpen(c, 1, 200)), max_side=240),
)


class KioskDecoder:
    """Ours: the pipeline measured best with ``kiosk bench qr`` (``kiosk.qrbench``).

    1. *Gate*: the :func:`~drivers.reader.preprocess.activity` map of the frame reduced 4x
       (~0.15 ms). No cell busy at ``gate``: nothing code-like (a wall, a hand) → ``[]``.
    2. *Scan*: zxing-cpp on the whole frame, normal polarity, no downscaled pass (cheaper than
       zxing-cpp's defaults, which always scan a second time for inverted codes); on a noisy
       frame (activity floor ≥ ``noisy``) on the frame at half size instead, which halves the
       noise and costs a third. Most frames end here. zxing-cpp also reports the codes it
       found but could not decode.
    3. *Regions*: those codes (up to ``errors``), then the ``busy`` busiest clusters of the
       activity map at ``threshold``, each grown by a margin.
    4. Per region, the :data:`PROBES` (both polarities: dark-mode screens), then, only if a
       scan saw a QR code there, the :data:`PASSES`.

    zbar (pyzbar) as a second opinion on the regions was measured and left out: +0.3 to
    +0.9 pp on the hard corpus for +0.5 ms per hard frame and +2 ms per empty frame.

    No pass starts once the frame has cost ``budget_ms``: on a Pi 4 (5-8x slower than the
    development machine) give it about the camera's frame period, e.g. ``budget_ms=30``.
    ``wins`` counts the frames each step read (``"scan"``, ``"half scan"``, or a pass).
    """

    name = "kiosk"

    def __init__(
        self,
        *,
        budget_ms: float = 6.0,
        probes: Sequence[Pass] = PROBES,
        passes: Sequence[Pass] = PASSES,
        gate: float | None = 0.7,
        threshold: float = 0.2,
        busy: int = 2,
        errors: int = 2,
        noisy: int = 5,
    ) -> None:
        _require_zxing()
        self.budget_s = budget_ms / 1000
        self.probes = tuple(probes)
        self.passes = tuple(passes)
        self.gate = gate
        self.threshold = threshold
        self.busy = busy
        self.errors = errors
        self.noisy = noisy
        self.wins: Counter[str] = Counter()

    def decode(self, image: Image.Image) -> list[str]:
        texts, won = self.explain(image)
        if won:
            self.wins[won] += 1
        return texts

    def explain(self, image: Image.Image) -> tuple[list[str], str]:
        """The texts in ``image`` and the name of the step that read them (``""``: none)."""
        deadline = time.perf_counter() + self.budget_s
        frame = pp.gray(image)
        activity = pp.activity(frame.reduce(4), 4)
        if self.gate is not None and not activity.any_busy(self.gate):
            return [], ""
        if activity.floor >= self.noisy:
            step, scale, first = "half scan", 2, _scan(pp.half(frame))
        else:
            step, scale, first = "scan", 1, _scan(frame)
        if first.texts:
            return first.texts, step
        found = [(scale * a, scale * b, scale * c, scale * d) for a, b, c, d in first.boxes]
        tried: set[pp.Box] = set()
        for box, seen in self._candidates(found[: self.errors], activity):
            region = pp.expand(box, frame.size)
            if region not in tried:
                tried.add(region)
                texts, won = self._try(frame.crop(region), seen, deadline)
                if texts or time.perf_counter() > deadline:
                    return texts, won
        return [], ""

    def _candidates(
        self, found: list[pp.Box], activity: pp.Activity
    ) -> Iterator[tuple[pp.Box, bool]]:
        """Regions to try, and whether zxing-cpp saw a QR code there. The busy regions are
        only clustered if the codes zxing-cpp found could not be read."""
        for box in found:
            yield box, True
        for region in activity.regions(self.threshold, self.busy):
            yield region.box, False

    def _try(self, crop: Image.Image, seen: bool, deadline: float) -> tuple[list[str], str]:
        """The probes on ``crop``, then the passes if a QR code was ``seen`` there."""
        for i, p in enumerate(self.probes + self.passes):
            probing = i < len(self.probes)
            if not (probing or seen) or time.perf_counter() > deadline:
                break
            if max(crop.size) > p.max_side:
                continue
            read = _zxing(
                p.prepare(crop), invert=p.invert, fixed_threshold=p.fixed_threshold, errors=probing
            )
            if read.texts:
                return read.texts, p.name
            seen = seen or bool(read.boxes)
        return [], ""


def _scan(image: Image.Image) -> _Read:
    """The first scan of a frame: one polarity, no downscaled pass, and the codes found but
    not decoded."""
    return _zxing(image, invert=False, downscale=False, errors=True)


# -- choosing -----------------------------------------------------------------------------------


def make_decoder(name: str, *, budget_ms: float | None = None) -> Decoder:
    """The decoder called ``name`` (one of :data:`NAMES`). ``budget_ms`` is the kiosk
    decoder's time budget per frame (see :class:`KioskDecoder`).

    Raises :class:`DecoderUnavailable` if it cannot run here, ``ValueError`` for an unknown
    name.
    """
    if name == "zxing":
        return ZxingDecoder()
    if name == "pyzbar":
        return PyzbarDecoder()
    if name in ("kiosk", "auto"):
        return KioskDecoder() if budget_ms is None else KioskDecoder(budget_ms=budget_ms)
    raise ValueError(f"unknown QR decoder {name!r}: use one of {', '.join(NAMES)}")


def available_decoders() -> dict[str, str | None]:
    """Each decoder's name → ``None`` if it can run here, else why not (and what to do)."""
    found: dict[str, str | None] = {}
    for name in NAMES:
        try:
            make_decoder(name)
        except DecoderUnavailable as exc:
            found[name] = str(exc)
        else:
            found[name] = None
    return found
