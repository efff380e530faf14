"""``kiosk bench qr``: which QR decoder reads more phone screens, and at what cost per frame.

A **seeded corpus** of 640x480 grayscale frames that look like a phone screen held to the
kiosk's camera is generated in memory (nothing is written to disk), frame by frame, each from
its own ``random.Random`` seeded by ``(seed, index)``: the same seed gives the same frames.
Frames come in **slices**, one kind of trouble each on top of mild everyday variation:

================  ===========================================================================
slice             what the customer does
================  ===========================================================================
``easy``          holds the phone fairly straight, at a good distance, in good light
``small``         holds it far away: 1.3-2.2 pixels per QR module
``rotated``       holds it at any angle in the camera's plane
``perspective``   tilts it 25-50° away from the camera
``blur``          shakes (motion blur) or holds it out of focus (Gaussian blur)
``noise``         in a dim kiosk: the sensor's gain makes noise of sigma 8-20 grey levels
``low_contrast``  screen brightness turned down: 12-40 grey levels between dark and light
``glare``         a ceiling light reflects on the glass: a blob or band over the code
``inverted``      dark mode: a light code on a dark screen
``empty``         no code: a screen of text, a hand, an empty wall
================  ===========================================================================

Payloads are the kiosk's real kinds (``kiosk.router``): PayBy tokenUrls, 28-digit Paysera
reservation codes, ``EVP`` + 12 digits and 6-digit OTPs. A frame is read correctly when the
decoder returns exactly its payload; a wrong payload, or anything read on an empty frame, is a
failure.

The runner decodes every frame with every available backend (raw zxing-cpp, raw pyzbar, the
kiosk's own pipeline) and times ``decode`` alone with :func:`time.perf_counter`. It prints, per
slice and backend, the share read and the milliseconds per frame, then the *hard corpus* (every
slice but ``easy`` and ``empty``) and a check against the targets::

    hard: kiosk ≥ zxing + 10 pp; kiosk ≥ pyzbar in every slice (and, for information,
    ≥ zxing in every slice); time on the hard corpus ≤ 2x zxing and ≤ 10 ms per frame;
    empty frames cheaper than frames with a code (kiosk).

The targets are for the development machine; a Pi 4 is about 5-8x slower.
"""

from __future__ import annotations

import hashlib
import math
import random
import string
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from PIL import Image, ImageDraw

    from drivers.reader.base import Decoder

_Box = tuple[int, int, int, int]  # left, top, right, bottom

WIDTH: Final = 640
HEIGHT: Final = 480
SLICES: Final = (
    "easy",
    "small",
    "rotated",
    "perspective",
    "blur",
    "noise",
    "low_contrast",
    "glare",
    "inverted",
    "empty",
)
HARD: Final = tuple(s for s in SLICES if s not in ("easy", "empty"))
BACKENDS: Final = ("zxing", "pyzbar", "kiosk")
DEFAULT_FRAMES: Final = 400
DEFAULT_SEED: Final = 1

# Targets on the development machine (see the module docstring).
MIN_GAIN_PP: Final = 10.0
MAX_TIME_RATIO: Final = 2.0
MAX_MS_PER_FRAME: Final = 10.0

_FOCAL: Final = 700.0  # focal length of the simulated camera, in pixels (about 49° across)


@dataclass(frozen=True)
class Frame:
    """One frame of the corpus: its slice, the payload it carries (``None`` if empty)."""

    index: int
    slice: str
    payload: str | None
    box: _Box | None  # where the code is, quiet zone included, in pixels of the frame
    image: Image.Image = field(repr=False, compare=False)


# -- payloads -------------------------------------------------------------------------------


def make_payload(rng: random.Random) -> str:
    """A payload of one of the kinds a customer shows the kiosk (``kiosk.router``)."""
    kind = rng.randrange(4)
    if kind == 0:
        ft = "".join(rng.choice("0123456789abcdef") for _ in range(32))
        t = 1_700_000_000_000 + rng.randrange(100_000_000_000)
        return f"https://checkout.payby.com/pay-page/main?BIZ_TYPE=202&ft={ft}&t={t}"
    if kind == 1:
        return "".join(rng.choice(string.digits) for _ in range(28))
    if kind == 2:
        return "EVP" + "".join(rng.choice(string.digits) for _ in range(12))
    return "".join(rng.choice(string.digits) for _ in range(6))


# -- geometry -------------------------------------------------------------------------------


def _solve(a: list[list[float]], b: list[float]) -> list[float]:
    """Solves ``a · x = b`` by Gaussian elimination with partial pivoting (8x8 here)."""
    n = len(b)
    m = [[*row, rhs] for row, rhs in zip(a, b, strict=True)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(m[r][col]))
        m[col], m[pivot] = m[pivot], m[col]
        for r in range(n):
            if r != col and m[r][col] != 0.0:
                k = m[r][col] / m[col][col]
                m[r] = [x - k * y for x, y in zip(m[r], m[col], strict=True)]
    return [m[i][n] / m[i][i] for i in range(n)]


def perspective_coeffs(
    dst: Sequence[tuple[float, float]], src: Sequence[tuple[float, float]]
) -> tuple[float, ...]:
    """The 8 coefficients of ``Image.transform(..., PERSPECTIVE)`` that map the 4 output points
    ``dst`` onto the 4 input points ``src`` (Pillow maps output to input)."""
    rows: list[list[float]] = []
    rhs: list[float] = []
    for (x, y), (u, v) in zip(dst, src, strict=True):
        rows.append([x, y, 1.0, 0.0, 0.0, 0.0, -u * x, -u * y])
        rhs.append(u)
        rows.append([0.0, 0.0, 0.0, x, y, 1.0, -v * x, -v * y])
        rhs.append(v)
    return tuple(_solve(rows, rhs))


@dataclass(frozen=True)
class Pose:
    """Where the phone is: angles in degrees, ``distance`` in phone-image pixels."""

    roll: float
    pitch: float
    yaw: float
    distance: float

    def project(self, points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
        """Pinhole projection of points of the phone's plane (origin at its centre)."""
        cr, sr = math.cos(math.radians(self.roll)), math.sin(math.radians(self.roll))
        cp, sp = math.cos(math.radians(self.pitch)), math.sin(math.radians(self.pitch))
        cy, sy = math.cos(math.radians(self.yaw)), math.sin(math.radians(self.yaw))
        out = []
        for x0, y0 in points:
            x1, y1 = cr * x0 - sr * y0, sr * x0 + cr * y0  # roll, in the phone's plane
            y2, z2 = cp * y1, sp * y1  # pitch, about the x axis
            x3, z3 = cy * x1 + sy * z2, -sy * x1 + cy * z2  # yaw, about the y axis
            z = self.distance + z3
            out.append((_FOCAL * x3 / z, _FOCAL * y2 / z))
        return out


# -- drawing ------------------------------------------------------------------------------


def _qr_image(payload: str, module: int, border: int, dark: int, light: int) -> Image.Image:
    import segno
    from PIL import Image

    qr = segno.make_qr(payload)
    rows = list(qr.matrix_iter(scale=1, border=border))
    n = len(rows)
    data = bytes(dark if bit else light for row in rows for bit in row)
    small = Image.frombytes("L", (n, n), data)
    return small.resize((n * module, n * module), Image.Resampling.NEAREST)


def _text_lines(
    draw: ImageDraw.ImageDraw, rng: random.Random, box: _Box, ink: int, line_h: int
) -> None:
    """Grey "words" on lines: what a screen of text looks like to a camera."""
    x0, y0, x1, y1 = box
    y = y0
    while y + line_h <= y1:
        x = x0 + rng.randrange(max(1, line_h))
        while x < x1 - line_h:
            w = rng.randrange(line_h, 5 * line_h)
            draw.rectangle((x, y, min(x + w, x1), y + int(line_h * 0.6)), fill=ink)
            x += w + max(2, line_h // 2)
        y += int(line_h * rng.uniform(1.4, 2.2))


@dataclass(frozen=True)
class _Screen:
    background: int
    dark: int
    light: int


def _screen_colours(rng: random.Random, slice_: str) -> _Screen:
    if slice_ == "inverted":  # dark mode: a light code on a dark screen
        bg = rng.randrange(10, 45)
        return _Screen(bg, rng.randrange(170, 240), bg)
    bg = rng.choice((rng.randrange(225, 256), rng.randrange(170, 225), rng.randrange(110, 170)))
    return _Screen(bg, rng.randrange(0, 40), bg)


def _phone(
    rng: random.Random, payload: str | None, module: int, colours: _Screen
) -> tuple[Image.Image, _Box]:
    """A phone (bezel, screen, UI clutter) showing ``payload``; the code's box in the image."""
    from PIL import Image, ImageDraw

    border = rng.choice((2, 3, 4))
    if payload is not None:
        code = _qr_image(payload, module, border, colours.dark, colours.light)
    else:  # something else on the screen, of a similar size
        side = module * rng.randrange(25, 45)
        code = Image.new("L", (side, side), colours.background)
    side = code.width
    sw = int(side * rng.uniform(1.1, 1.5))
    sh = int(sw * rng.uniform(1.9, 2.15))
    screen = Image.new("L", (sw, sh), colours.background)
    draw = ImageDraw.Draw(screen)
    ink = colours.dark if colours.background > 100 else min(255, colours.background + 150)
    qx, qy = (sw - side) // 2, int(sh * rng.uniform(0.3, 0.42))
    line = max(6, sw // 18)
    _text_lines(draw, rng, (sw // 12, line, sw - sw // 12, qy - line), ink, line)
    _text_lines(draw, rng, (sw // 12, qy + side + line, sw - sw // 12, sh - 4 * line), ink, line)
    button = rng.randrange(60, 200)
    draw.rounded_rectangle(
        (sw // 8, sh - 3 * line, sw - sw // 8, sh - line), radius=line // 2, fill=button
    )
    if payload is None:
        _empty_screen_content(rng, draw, (qx, qy, qx + side, qy + side), ink, module)
    else:
        screen.paste(code, (qx, qy))
    bezel = max(3, sw // 25)
    phone = Image.new("L", (sw + 2 * bezel, sh + 2 * bezel), 0)
    mask = Image.new("L", phone.size, 0)
    ImageDraw.Draw(mask).rounded_rectangle(
        (0, 0, phone.width - 1, phone.height - 1), radius=sw // 9, fill=255
    )
    ImageDraw.Draw(phone).rectangle((0, 0, phone.width, phone.height), fill=rng.randrange(5, 45))
    phone.paste(screen, (bezel, bezel))
    phone.putalpha(mask)
    box = (qx + bezel, qy + bezel, qx + bezel + side, qy + bezel + side)
    return phone, box


def _empty_screen_content(
    rng: random.Random, draw: ImageDraw.ImageDraw, box: _Box, ink: int, module: int
) -> None:
    """What a phone shows instead of a code: more text, a photo-like blob, an icon grid."""
    x0, y0, x1, y1 = box
    kind = rng.randrange(3)
    if kind == 0:
        _text_lines(draw, rng, box, ink, max(6, module * 3))
    elif kind == 1:
        for _ in range(rng.randrange(3, 8)):
            cx, cy = rng.uniform(x0, x1), rng.uniform(y0, y1)
            r = rng.uniform(0.1, 0.35) * (x1 - x0)
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=rng.randrange(256))
    else:
        n = rng.randrange(3, 6)
        step = (x1 - x0) / n
        for i in range(n):
            for j in range(n):
                cell = (x0 + i * step + step * 0.15, y0 + j * step + step * 0.15)
                draw.rounded_rectangle(
                    (*cell, cell[0] + step * 0.7, cell[1] + step * 0.7),
                    radius=step * 0.15,
                    fill=rng.randrange(256),
                )


def _background(rng: random.Random) -> Image.Image:
    """The kiosk's surroundings: a lit wall and a few blurred shapes."""
    from PIL import Image, ImageDraw, ImageFilter

    lo, hi = rng.randrange(20, 120), rng.randrange(120, 230)
    ramp = Image.linear_gradient("L").rotate(rng.uniform(0, 360), Image.Resampling.BILINEAR)
    ramp = ramp.resize((WIDTH, HEIGHT)).point(lambda v: lo + (hi - lo) * v // 255)
    draw = ImageDraw.Draw(ramp)
    for _ in range(rng.randrange(1, 5)):
        x, y = rng.randrange(WIDTH), rng.randrange(HEIGHT)
        w, h = rng.randrange(40, 300), rng.randrange(40, 300)
        shape = draw.rectangle if rng.random() < 0.5 else draw.ellipse
        shape((x, y, x + w, y + h), fill=rng.randrange(256))
    return ramp.filter(ImageFilter.GaussianBlur(rng.uniform(1.0, 4.0)))


def _hand(rng: random.Random, frame: Image.Image) -> None:
    """A hand in front of the camera (palm and fingers, in skin grey)."""
    from PIL import ImageDraw

    draw = ImageDraw.Draw(frame)
    tone = rng.randrange(90, 200)
    cx, cy = rng.uniform(150, 490), rng.uniform(200, 420)
    r = rng.uniform(80, 160)
    draw.ellipse((cx - r, cy - r * 0.8, cx + r, cy + r * 1.2), fill=tone)
    for k in range(4):
        fx = cx - r * 0.8 + k * r * 0.5
        draw.rounded_rectangle(
            (fx, cy - r * 2.2, fx + r * 0.35, cy),
            radius=r * 0.17,
            fill=tone + rng.randrange(-15, 15),
        )


# -- the camera -----------------------------------------------------------------------------


def _add_noise(rng: random.Random, frame: Image.Image, sigma: float) -> Image.Image:
    """Adds zero-mean sensor noise of about ``sigma`` grey levels (sum of two uniforms)."""
    from PIL import Image, ImageChops

    if sigma <= 0:
        return frame
    half = sigma * math.sqrt(6) / 2  # two uniforms on ±half sum to sigma = half·√(2/3)
    lut = [max(0, min(255, round(128 + (v - 127.5) * half / 127.5))) for v in range(256)]
    out = frame
    for _ in range(2):
        noise = Image.frombytes("L", frame.size, rng.randbytes(frame.width * frame.height))
        out = ImageChops.add(out, noise.point(lut), offset=-128)
    return out


def _motion_blur(frame: Image.Image, length: float, angle: float) -> Image.Image:
    """Averages copies of ``frame`` shifted along a line of ``length`` pixels (a shaky hand)."""
    from PIL import Image

    steps = max(2, math.ceil(length))
    dx, dy = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    out = frame
    for i in range(1, steps + 1):
        t = (i / steps - 0.5) * length
        shifted = frame.transform(
            frame.size,
            Image.Transform.AFFINE,
            (1, 0, t * dx, 0, 1, t * dy),
            Image.Resampling.BILINEAR,
        )
        out = Image.blend(out, shifted, 1 / (i + 1))
    return out


def _glare(rng: random.Random, frame: Image.Image, box: tuple[float, float, float, float]) -> None:
    """A reflection over part of the code: a soft blob or band that washes the screen out."""
    from PIL import Image, ImageDraw, ImageFilter

    x0, y0, x1, y1 = box
    size = max(x1 - x0, y1 - y0)
    layer = Image.new("L", frame.size, 0)
    draw = ImageDraw.Draw(layer)
    peak = rng.randrange(150, 235)
    if rng.random() < 0.6:
        cx, cy = rng.uniform(x0, x1), rng.uniform(y0, y1)
        rx, ry = size * rng.uniform(0.12, 0.3), size * rng.uniform(0.12, 0.3)
        draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=peak)
    else:
        angle = math.radians(rng.uniform(0, 180))
        cx, cy = rng.uniform(x0, x1), rng.uniform(y0, y1)
        w = size * rng.uniform(0.06, 0.18)
        dx, dy = math.cos(angle) * 2 * size, math.sin(angle) * 2 * size
        nx, ny = -math.sin(angle) * w, math.cos(angle) * w
        pts = [(cx - dx - nx, cy - dy - ny), (cx + dx - nx, cy + dy - ny)]
        pts += [(cx + dx + nx, cy + dy + ny), (cx - dx + nx, cy - dy + ny)]
        draw.polygon(pts, fill=peak)
    layer = layer.filter(ImageFilter.GaussianBlur(size * rng.uniform(0.04, 0.12)))
    frame.paste(Image.new("L", frame.size, 255), mask=layer)


def _moire(rng: random.Random, frame: Image.Image, mask: Image.Image) -> Image.Image:
    """Faint stripes where the screen's pixel grid beats against the sensor's."""
    from PIL import Image, ImageChops

    period = rng.uniform(2.5, 6.0)
    amp = rng.uniform(3, 8)
    row = bytes(round(128 + amp * math.sin(2 * math.pi * y / period)) for y in range(HEIGHT * 2))
    stripes = Image.frombytes("L", (1, HEIGHT * 2), row).resize((WIDTH * 2, HEIGHT * 2))
    stripes = stripes.rotate(rng.uniform(-30, 30), Image.Resampling.BILINEAR)
    stripes = stripes.crop((WIDTH // 2, HEIGHT // 2, WIDTH // 2 + WIDTH, HEIGHT // 2 + HEIGHT))
    return Image.composite(ImageChops.add(frame, stripes, offset=-128), frame, mask)


@dataclass
class _Shot:
    """The knobs of one frame, drawn from the slice's ranges."""

    module_px: float = 4.0  # pixels per module in the frame
    roll: float = 0.0
    pitch: float = 0.0
    yaw: float = 0.0
    gauss: float = 0.6  # optical blur (Gaussian radius, px)
    motion: float = 0.0  # motion blur length (px)
    noise: float = 2.0  # sigma of the sensor noise (grey levels)
    span: tuple[int, int] = (0, 255)  # output levels of black and white
    glare: bool = False
    moire: bool = False


def _shot(rng: random.Random, slice_: str) -> _Shot:
    u = rng.uniform
    shot = _Shot(
        module_px=u(2.8, 6.0),
        roll=u(-15, 15),
        pitch=u(-12, 12),
        yaw=u(-12, 12),
        gauss=u(0.4, 0.9),
        noise=u(1.0, 4.0),
        span=(rng.randrange(0, 30), rng.randrange(200, 256)),
        moire=rng.random() < 0.2,
    )
    if slice_ == "small":
        shot.module_px = u(1.3, 2.2)
    elif slice_ == "rotated":
        shot.roll = u(0, 360)
    elif slice_ == "perspective":
        tilt, direction = u(25, 50), u(0, 2 * math.pi)
        shot.pitch, shot.yaw = tilt * math.cos(direction), tilt * math.sin(direction)
        shot.module_px = u(2.8, 5.0)
    elif slice_ == "blur":
        if rng.random() < 0.5:
            shot.gauss = shot.module_px * u(0.45, 0.8)
        else:
            shot.motion = shot.module_px * u(1.2, 2.4)
    elif slice_ == "noise":
        shot.noise = u(8, 20)
        low = rng.randrange(10, 60)
        shot.span = (low, low + rng.randrange(90, 170))
    elif slice_ == "low_contrast":
        low = rng.randrange(5, 90)
        shot.span = (low, low + rng.randrange(12, 40))
        shot.noise = u(1.0, 3.0)
    elif slice_ == "glare":
        shot.glare = True
    return shot


def _place(
    rng: random.Random, phone: Image.Image, code: _Box, shot: _Shot, src_module: int
) -> tuple[tuple[float, ...], tuple[float, float, float, float]]:
    """Where the phone lands in the frame: the perspective coefficients and the code's box.

    The phone is posed (roll, pitch, yaw) at the distance that gives ``shot.module_px`` pixels
    per module, then moved so that the whole code is in the frame.
    """
    pose = Pose(shot.roll, shot.pitch, shot.yaw, _FOCAL * src_module / shot.module_px)
    cx, cy = phone.width / 2, phone.height / 2
    corners = [(0.0, 0.0), (phone.width, 0.0), (phone.width, phone.height), (0.0, phone.height)]
    x0, y0, x1, y1 = code
    projected = pose.project([(x - cx, y - cy) for x, y in corners])
    code_corners = pose.project(
        [(x - cx, y - cy) for x, y in ((x0, y0), (x1, y0), (x1, y1), (x0, y1))]
    )
    xs, ys = [p[0] for p in code_corners], [p[1] for p in code_corners]
    margin = 12
    lo_x, hi_x = margin - min(xs), WIDTH - margin - max(xs)
    lo_y, hi_y = margin - min(ys), HEIGHT - margin - max(ys)
    ox = rng.uniform(lo_x, hi_x) if lo_x < hi_x else (lo_x + hi_x) / 2
    oy = rng.uniform(lo_y, hi_y) if lo_y < hi_y else (lo_y + hi_y) / 2
    dst = [(x + ox, y + oy) for x, y in projected]
    box = (min(xs) + ox, min(ys) + oy, max(xs) + ox, max(ys) + oy)
    return perspective_coeffs(dst, corners), box


def make_frame(seed: int, index: int, slice_: str) -> Frame:
    """Frame ``index`` of the corpus of ``seed``, of the given slice (deterministic)."""
    from PIL import Image, ImageFilter

    rng = random.Random(f"kiosk-qr:{seed}:{index}")
    shot = _shot(rng, slice_)
    frame = _background(rng)
    payload: str | None = None
    empty_kind = rng.randrange(3) if slice_ == "empty" else -1  # 0 phone, 1 hand, 2 wall
    code_box = (0.0, 0.0, 0.0, 0.0)
    phone_mask = Image.new("L", frame.size, 0)
    if empty_kind in (-1, 0):
        payload = make_payload(rng) if slice_ != "empty" else None
        src_module = max(2, round(shot.module_px * 2))  # drawn at about twice the final size
        phone, code = _phone(rng, payload, src_module, _screen_colours(rng, slice_))
        coeffs, code_box = _place(rng, phone, code, shot, src_module)
        warped = phone.transform(
            frame.size, Image.Transform.PERSPECTIVE, coeffs, Image.Resampling.BICUBIC
        )
        phone_mask = warped.getchannel("A")
        if rng.random() < 0.3:  # the hand that holds it, behind the phone
            _hand(rng, frame)
        frame.paste(warped.convert("L"), mask=phone_mask)
    elif empty_kind == 1:
        _hand(rng, frame)
    if shot.glare:
        _glare(rng, frame, code_box)
    if shot.moire:
        frame = _moire(rng, frame, phone_mask)
    lo, hi = shot.span
    frame = frame.point(lambda v: lo + (hi - lo) * v // 255)
    if shot.motion > 0:
        frame = _motion_blur(frame, shot.motion, rng.uniform(0, 180))
    frame = frame.filter(ImageFilter.GaussianBlur(shot.gauss))
    frame = _add_noise(rng, frame, shot.noise)
    box = None
    if payload is not None:
        x0, y0, x1, y1 = code_box
        box = (math.floor(x0), math.floor(y0), math.ceil(x1), math.ceil(y1))
    return Frame(index, slice_, payload, box, frame)


def corpus(frames: int, seed: int) -> Iterator[Frame]:
    """``frames`` frames, the slices taking turns, generated lazily and deterministically."""
    for index in range(frames):
        yield make_frame(seed, index, SLICES[index % len(SLICES)])


def digest(frame: Frame) -> str:
    """A SHA-256 of the frame's pixels and labels (the corpus is the same when these are)."""
    h = hashlib.sha256(frame.image.tobytes())
    h.update(f"{frame.slice}|{frame.payload}|{frame.box}".encode())
    return h.hexdigest()


# -- the runner ---------------------------------------------------------------------------


@dataclass
class Tally:
    """One backend's results: per slice, frames read correctly, misread, and seconds spent."""

    read: Counter[str] = field(default_factory=Counter)
    wrong: Counter[str] = field(default_factory=Counter)
    seconds: dict[str, float] = field(default_factory=dict)
    times: list[float] = field(default_factory=list)

    def add(self, frame: Frame, texts: list[str], seconds: float) -> None:
        expected = [] if frame.payload is None else [frame.payload]
        if texts == expected:
            self.read[frame.slice] += 1
        elif texts:
            self.wrong[frame.slice] += 1
        self.seconds[frame.slice] = self.seconds.get(frame.slice, 0.0) + seconds
        self.times.append(seconds)


@dataclass
class Results:
    """What :func:`measure` found: per backend a :class:`Tally`, or why it is unavailable."""

    frames: int
    seed: int
    count: Counter[str] = field(default_factory=Counter)
    tallies: dict[str, Tally] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)
    wins: dict[str, int] = field(default_factory=dict)  # the kiosk decoder's winning passes

    def share(self, backend: str, slices: Sequence[str]) -> float:
        """Percentage of the frames of ``slices`` that ``backend`` read correctly."""
        n = sum(self.count[s] for s in slices)
        return 100 * sum(self.tallies[backend].read[s] for s in slices) / n if n else 0.0

    def ms(self, backend: str, slices: Sequence[str]) -> float:
        """Milliseconds per frame of ``backend`` over the frames of ``slices``."""
        n = sum(self.count[s] for s in slices)
        seconds = self.tallies[backend].seconds
        return 1000 * sum(seconds.get(s, 0.0) for s in slices) / n if n else 0.0


def _backends() -> tuple[dict[str, Decoder], dict[str, str]]:
    from drivers.errors import DecoderUnavailable
    from drivers.reader.decoders import make_decoder

    decoders: dict[str, Decoder] = {}
    unavailable: dict[str, str] = {}
    for name in BACKENDS:
        try:
            decoders[name] = make_decoder(name)
        except DecoderUnavailable as exc:
            unavailable[name] = str(exc)
    return decoders, unavailable


def measure(frames: int, seed: int, decoders: dict[str, Decoder] | None = None) -> Results:
    """Generates the corpus frame by frame and decodes each frame with every backend, in turn
    (the order rotates from frame to frame); only ``decode`` is timed."""
    from PIL import Image

    unavailable: dict[str, str] = {}
    if decoders is None:
        decoders, unavailable = _backends()
    results = Results(frames, seed, unavailable=unavailable)
    results.tallies = {name: Tally() for name in decoders}
    warm = Image.new("L", (WIDTH, HEIGHT), 128)
    for decoder in decoders.values():  # first calls load libraries and allocate
        decoder.decode(warm)
    names = list(decoders)
    if not names:
        return results
    for frame in corpus(frames, seed):
        results.count[frame.slice] += 1
        k = frame.index % len(names)
        for name in names[k:] + names[:k]:
            start = time.perf_counter()
            texts = decoders[name].decode(frame.image)
            results.tallies[name].add(frame, texts, time.perf_counter() - start)
    kiosk = decoders.get("kiosk")
    wins = getattr(kiosk, "wins", None)
    if isinstance(wins, dict):
        results.wins = dict(wins)
    return results


@dataclass(frozen=True)
class Check:
    ok: bool | None  # None: could not be checked (a backend is unavailable)
    text: str

    def line(self) -> str:
        mark = {True: "ok  ", False: "FAIL", None: "skip"}[self.ok]
        return f"  [{mark}] {self.text}"


def checks(r: Results) -> list[Check]:
    """The targets of the issue, checked on ``r`` (see the module docstring)."""
    out: list[Check] = []
    have = r.tallies
    if "kiosk" not in have or "zxing" not in have:
        return [Check(None, "kiosk and zxing are both needed for the checks")]
    hard_k, hard_z = r.share("kiosk", HARD), r.share("zxing", HARD)
    out.append(
        Check(
            hard_k >= hard_z + MIN_GAIN_PP,
            f"hard corpus: kiosk {hard_k:.1f}% ≥ zxing {hard_z:.1f}% + {MIN_GAIN_PP:.0f} pp",
        )
    )
    present = [s for s in SLICES if r.count[s]]
    if "pyzbar" in have:
        behind = [s for s in present if r.share("kiosk", [s]) < r.share("pyzbar", [s])]
        margin = min(present, key=lambda s: r.share("kiosk", [s]) - r.share("pyzbar", [s]))
        detail = ", ".join(behind) if behind else f"closest: {margin}"
        out.append(Check(not behind, f"every slice: kiosk ≥ pyzbar ({detail})"))
    else:
        out.append(Check(None, f"every slice: kiosk ≥ pyzbar ({r.unavailable.get('pyzbar')})"))
    behind_z = [s for s in present if r.share("kiosk", [s]) < r.share("zxing", [s])]
    out.append(
        Check(
            not behind_z,
            "every slice: kiosk ≥ zxing ("
            + (", ".join(behind_z) if behind_z else "never fewer")
            + ")",
        )
    )
    t_k, t_z = r.ms("kiosk", HARD), r.ms("zxing", HARD)
    out.append(
        Check(
            t_k <= MAX_TIME_RATIO * t_z,
            f"time, hard corpus: kiosk {t_k:.2f} ms ≤ {MAX_TIME_RATIO:.0f} x zxing {t_z:.2f} ms",
        )
    )
    everything = [s for s in SLICES if s != "empty"]
    worst = max(r.ms("kiosk", HARD), r.ms("kiosk", everything), r.ms("kiosk", ["empty"]))
    out.append(
        Check(
            worst <= MAX_MS_PER_FRAME,
            f"time per 640x480 frame: kiosk {worst:.2f} ms ≤ {MAX_MS_PER_FRAME:.0f} ms",
        )
    )
    if r.count["empty"]:
        t_empty, t_code = r.ms("kiosk", ["empty"]), r.ms("kiosk", everything)
        out.append(
            Check(
                t_empty < t_code,
                f"empty frames cheaper: kiosk {t_empty:.2f} ms < {t_code:.2f} ms with a code",
            )
        )
    return out


def table(r: Results) -> list[str]:
    """The side-by-side table: per slice and backend, share read and ms per frame."""
    names = list(r.tallies)
    head = f"{'slice':<14}{'frames':>7}" + "".join(f" | {n:>17}" for n in names)
    sub = f"{'':<21}" + "".join(f" | {'read':>7} {'ms/frame':>9}" for _ in names)
    lines = [head, sub, "-" * len(head)]

    def row(label: str, slices: Sequence[str], shares: bool = True) -> str:
        n = sum(r.count[s] for s in slices)
        cells = []
        for name in names:
            share = f"{r.share(name, slices):6.1f}%" if shares else f"{'':>7}"
            cells.append(f" | {share} {r.ms(name, slices):9.2f}")
        return f"{label:<14}{n:>7}" + "".join(cells)

    for s in SLICES:
        if r.count[s]:
            lines.append(row(s, [s]))
    lines.append("-" * len(head))
    lines.append(row("hard corpus", HARD))
    lines.append(row("with a code", [s for s in SLICES if s != "empty"], shares=False))
    lines.append(row("empty", ["empty"], shares=False))
    worst = "".join(f" | {'':>7} {1000 * max(r.tallies[n].times, default=0.0):9.2f}" for n in names)
    lines.append(f"{'worst frame':<21}{worst}")
    wrong = "".join(f" | {sum(r.tallies[n].wrong.values()):>7} {'':>9}" for n in names)
    lines.append(f"{'misreads':<21}{wrong}")
    return lines


def run_qr_bench(
    frames: int = DEFAULT_FRAMES, seed: int = DEFAULT_SEED, out: Callable[[str], None] = print
) -> int:
    """``kiosk bench qr``: measures and prints the table and the checks. Returns 0 (a
    benchmark reports; it does not fail)."""
    started = time.perf_counter()
    r = measure(frames, seed)
    out(f"kiosk bench qr: {frames} frames of {WIDTH}x{HEIGHT}, seed {seed} (decode time only)")
    out("  zxing: zxing-cpp as it comes; pyzbar: zbar as it comes; kiosk: ours (auto)")
    for name, why in r.unavailable.items():
        out(f"  {name}: unavailable: {why}")
    out("")
    for line in table(r):
        out(line)
    if r.wins:
        passes = ", ".join(f"{k} {v}" for k, v in sorted(r.wins.items(), key=lambda kv: -kv[1]))
        out(f"kiosk: frames read by each step: {passes}")
    out("")
    out("checks (targets on the development machine; a Pi 4 is 5-8x slower):")
    for check in checks(r):
        out(check.line())
    out(f"({time.perf_counter() - started:.1f} s in all)")
    return 0
