"""Rasterizing one synthetic anime face: signed-distance shapes painted onto a supersampled canvas.

`draw_face(params, image_size)` turns a parameter dict from
`synthetic_params.sample_face` into pixels and draws no random numbers. Shapes
are signed-distance fields in the head's local frame (x to the right, y down,
1.0 = head radius), evaluated on a supersampled grid with soft one-pixel edges
and box-downsampled, which gives antialiased images with numpy alone. Parts are
painted back to front: background, hair behind the head, body and face, eyes,
nose and mouth, then the front hair.

Any change to what this draws needs a new `synthetic.RENDERER_VERSION`.
"""

from __future__ import annotations

import math

import numpy as np

# Fixed colours (RGB in [0, 1]) of the parts that do not vary from face to face.
_WHITE = np.array((0.99, 0.99, 1.00))
_LASH = np.array((0.13, 0.09, 0.10))
_MOUTH = np.array((0.62, 0.26, 0.28))
_TONGUE = np.array((0.95, 0.55, 0.55))
_BLUSH = np.array((1.00, 0.50, 0.55))


def _strand_profile(x: np.ndarray, strands: dict) -> np.ndarray:
    """How far each strand hangs at x: 0 at the gaps between strands, its length at its tip."""
    edges, tips, lengths = strands["edges"], strands["tips"], strands["lengths"]
    index = np.clip(np.searchsorted(edges, x) - 1, 0, len(tips) - 1)
    left, right = edges[index], edges[index + 1]
    tip = left + tips[index] * (right - left)
    u = np.where(x < tip, (x - left) / (tip - left), (right - x) / (right - tip))
    u = np.clip(u, 0.0, 1.0)
    return lengths[index] * u ** strands["power"]


def _ellipse(x, y, cx, cy, rx, ry, angle=0.0):
    """Approximate signed distance to an ellipse (negative inside)."""
    dx, dy = x - cx, y - cy
    if angle:
        c, s = math.cos(angle), math.sin(angle)
        dx, dy = c * dx + s * dy, c * dy - s * dx
    u, v = dx / rx, dy / ry
    grad = 2.0 * np.sqrt((u / rx) ** 2 + (v / ry) ** 2) + 1e-6
    return (u * u + v * v - 1.0) / grad


def _circle(x, y, cx, cy, r):
    """Exact signed distance to a circle."""
    return np.sqrt((x - cx) ** 2 + (y - cy) ** 2) - r


def _lens(x, y, top, bottom, half_width):
    """Signed distance to a pointed lens (intersection of two discs) between two tip points."""
    (x0, y0), (x1, y1) = top, bottom
    mx, my = 0.5 * (x0 + x1), 0.5 * (y0 + y1)
    chord = 0.5 * math.hypot(x1 - x0, y1 - y0)
    radius = (chord * chord + half_width * half_width) / (2.0 * half_width)
    nx, ny = (y1 - y0) / (2 * chord), -(x1 - x0) / (2 * chord)
    off = radius - half_width
    return np.maximum(
        _circle(x, y, mx + off * nx, my + off * ny, radius), _circle(x, y, mx - off * nx, my - off * ny, radius)
    )


def _below(x, y, height):
    """Signed distance to the region above the curve y = height(x) (negative above; y points down)."""
    h = height(x[0])
    slope = np.gradient(h, x[0]) if h.size > 1 else np.zeros_like(h)
    return (y - h[None, :]) / np.sqrt(1.0 + slope * slope)[None, :]


class _Canvas:
    """A supersampled float image addressed in the face's local coordinates."""

    def __init__(self, image_size: int, supersample: int, cx: float, cy: float, scale: float):
        n = image_size * supersample
        grid = (np.arange(n, dtype=np.float32) + 0.5) / n
        self.size, self.supersample = image_size, supersample
        self.xs = (grid - cx) / scale
        self.ys = (grid - cy) / scale
        self.px = 1.0 / (n * scale)  # one supersampled pixel in local units
        self.image = np.empty((n, n, 3), np.float32)

    def paint(self, box, distance, colour, opacity: float = 1.0) -> None:
        """Blends `colour` over the shape `distance(x, y) < 0` inside box = (x0, y0, x1, y1)."""
        margin = 2 * self.px
        i0, i1 = np.searchsorted(self.ys, (box[1] - margin, box[3] + margin))
        j0, j1 = np.searchsorted(self.xs, (box[0] - margin, box[2] + margin))
        if i1 <= i0 or j1 <= j0:
            return
        x, y = self.xs[None, j0:j1], self.ys[i0:i1, None]
        alpha = np.asarray(distance(x, y), np.float32) * np.float32(-1.0 / self.px)
        alpha += np.float32(0.5)
        np.clip(alpha, 0.0, 1.0, out=alpha)
        if opacity != 1.0:
            alpha *= np.float32(opacity)
        if callable(colour):
            colour = colour(x, y)
        region = self.image[i0:i1, j0:j1]
        change = np.asarray(colour, np.float32) - region
        change *= alpha[..., None]
        region += change

    def result(self) -> np.ndarray:
        """Box-downsamples to image_size and converts to uint8."""
        s, k = self.size, self.supersample
        image = self.image.reshape(s, k, s, k, 3).mean(axis=(1, 3)) if k > 1 else self.image
        return np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _supersample(image_size: int) -> int:
    """Supersampling factor: enough for smooth edges, cheap at large sizes."""
    return max(1, min(4, round(192 / image_size)))


_CAP_CY = -0.05  # centre of the hair cap, a little above the head centre


def _face_distance(p: dict, x, y, shift: float = 0.0):
    """Signed distance to the face outline: an egg narrowing towards the chin, moved down by `shift`."""
    a, top, chin, taper = p["face_w"], p["face_top"], p["chin"], p["chin_taper"]
    y = y - shift
    lower = y > 0
    b = np.where(lower, chin, top)
    g = np.where(lower, np.maximum(1.0 - taper * y / chin, 0.05), 1.0)
    ag = a * g
    f = (x / ag) ** 2 + (y / b) ** 2 - 1.0
    dg = np.where(lower, -taper / chin, 0.0)
    fx = 2 * x / ag**2
    fy = 2 * y / b**2 - 2 * x * x * dg / (a * a * g**3)
    return f / (np.sqrt(fx * fx + fy * fy) + 1e-6)


def _fringe_line(p: dict, x: np.ndarray) -> np.ndarray:
    """Height of the lower edge of the fringe at each x (y points down)."""
    fringe = p["fringe"]
    base = fringe["base"] + fringe["curve"] * x * x
    if p["fringe_style"] == 1:
        base = base - fringe["part_depth"] * np.maximum(0.0, 1.0 - np.abs(x - fringe["part_x"]) / 0.35)
    return base + _strand_profile(x, fringe)


def _neck_distance(x, y):
    return np.maximum(np.abs(x) - 0.27, 0.5 - y)


def _draw_background(canvas: _Canvas, p: dict) -> None:
    if p["bg_gradient"]:
        t = np.clip((canvas.ys - canvas.ys[0]) / (canvas.ys[-1] - canvas.ys[0]), 0, 1)[:, None, None]
        canvas.image[:] = p["bg_top"] + t * (p["bg_bottom"] - p["bg_top"])
    else:
        canvas.image[:] = p["bg_top"]


def _draw_back_hair(canvas: _Canvas, p: dict) -> None:
    """Hair behind the head: the cap's ellipse plus a body hanging to `back_len` in pointed strands."""
    back_w, flare, back_len = p["back_w"], p["back_flare"], p["back_len"]
    back_tip = back_len + float(np.max(p["back"]["lengths"]))

    def distance(x, y):
        body = np.maximum(
            (np.abs(x) - (back_w + flare * y)) / math.sqrt(1 + flare * flare),
            _below(x, y, lambda xx: back_len + _strand_profile(xx, p["back"])),
        )
        body = np.maximum(body, -0.2 - y)
        return np.minimum(body, _ellipse(x, y, 0.0, _CAP_CY, p["cap_rx"] - 0.02, p["cap_ry"] - 0.02))

    width = back_w + flare * max(back_tip, 0) + 0.1
    canvas.paint((-width, -1.4, width, back_tip), distance, p["hair"] * 0.72)


def _draw_body_and_face(canvas: _Canvas, p: dict) -> None:
    """Clothes, neck, the chin's shadow, the face and the fringe's shadow on the forehead."""
    skin, a, top, chin = p["skin"], p["face_w"], p["face_top"], p["chin"]
    canvas.paint((-2.2, 1.15, 2.2, 10.0), lambda x, y: _ellipse(x, y, 0.0, 1.95, 1.7, 0.75), p["clothes"])
    canvas.paint((-0.3, 0.45, 0.3, 10.0), _neck_distance, skin * 0.94)
    canvas.paint(
        (-0.3, 0.45, 0.3, chin + 0.2),
        lambda x, y: np.maximum(_neck_distance(x, y), _face_distance(p, x, y, 0.12)),
        skin * 0.8,
    )
    canvas.paint((-a - 0.05, -top - 0.05, a + 0.05, chin + 0.05), lambda x, y: _face_distance(p, x, y), skin)
    canvas.paint(
        (-a, -top, a, 0.5),
        lambda x, y: np.maximum(_below(x, y, lambda xx: _fringe_line(p, xx) + 0.07), _face_distance(p, x, y)),
        skin * 0.86,
        0.7,
    )
    if p["blush"] > 0:
        for side in (-1.0, 1.0):
            cx = side * (p["eye_x"] + 0.1)
            canvas.paint((cx - 0.2, 0.45, cx + 0.2, 0.65), _ellipse_fn(cx, 0.55, 0.14, 0.045), _BLUSH, p["blush"])


def _ellipse_fn(cx, cy, rx, ry, angle=0.0):
    """The distance function of one ellipse, for `_Canvas.paint`."""
    return lambda x, y: _ellipse(x, y, cx, cy, rx, ry, angle)


def _circle_fn(cx, cy, r):
    """The distance function of one circle, for `_Canvas.paint`."""
    return lambda x, y: _circle(x, y, cx, cy, r)


def _draw_eye(canvas: _Canvas, p: dict, side: float) -> None:
    """One big anime eye (side -1 = left, +1 = right) and its eyebrow."""
    ey, rx, ry = p["eye_y"], p["eye_rx"], p["eye_ry"]
    cx, tilt = side * p["eye_x"], -side * p["eye_tilt"]
    iris_rx, iris_ry, icy = rx * 0.80, ry * 0.90, ey + 0.08 * ry
    colour = p["eye"]
    box = (cx - 1.4 * rx, ey - 1.5 * ry, cx + 1.4 * rx, ey + 1.2 * ry)
    sclera = _ellipse_fn(cx, ey, rx, ry, tilt)

    def iris_colour(x, y):
        t = np.clip((y - (icy - iris_ry)) / (2 * iris_ry), 0, 1)[..., None]
        return colour * 0.45 + t * (np.clip(colour * 1.15 + 0.12, 0, 1) - colour * 0.45)

    canvas.paint(box, sclera, _WHITE)
    canvas.paint(box, lambda x, y: np.maximum(_ellipse(x, y, cx, icy, iris_rx, iris_ry), sclera(x, y)), iris_colour)
    pupil = p["pupil"]
    canvas.paint(box, _ellipse_fn(cx, icy + 0.05 * ry, iris_rx * pupil, iris_ry * pupil * 1.2), colour * 0.18)

    # Upper lash line: a crescent over the top of the eye, with a flick at the outer corner.
    def lash(x, y):
        crescent = np.maximum(_ellipse(x, y, cx, ey - 0.12 * ry, rx * 1.12, ry * 1.07, tilt), -sclera(x, y) - 0.004)
        return np.maximum(crescent, y - (ey - 0.05 * ry))

    canvas.paint(box, lash, _LASH)
    canvas.paint(box, _ellipse_fn(cx + side * rx, ey - 0.45 * ry, 0.2 * rx, 0.06, side * 0.5), _LASH)
    canvas.paint(box, _ellipse_fn(cx + side * 0.3 * rx, ey + ry, 0.35 * rx, 0.012), _LASH, 0.6)  # lower lash

    # White highlights, lit from the upper left on both eyes.
    canvas.paint(box, _circle_fn(cx - 0.35 * iris_rx, icy - 0.4 * iris_ry, 0.3 * iris_rx), _WHITE)
    if p["highlights"] == 2:
        canvas.paint(box, _circle_fn(cx + 0.35 * iris_rx, icy + 0.45 * iris_ry, 0.14 * iris_rx), _WHITE)

    # Eyebrow: a thin lens above the eye, often half hidden by the fringe.
    by = ey - ry * 1.55 - p["brow_lift"]
    inner, outer = (cx - side * 0.9 * rx, by + 0.03), (cx + side * rx, by + 0.02 * side)
    canvas.paint(
        (cx - 1.2 * rx, by - 0.1, cx + 1.2 * rx, by + 0.1),
        lambda x, y: _lens(x, y, inner, outer, 0.02),
        p["hair"] * 0.5,
    )


def _draw_nose_and_mouth(canvas: _Canvas, p: dict) -> None:
    ny, my, mw = p["nose_y"], p["mouth_y"], p["mouth_w"]
    canvas.paint((-0.1, ny - 0.1, 0.1, ny + 0.1), _ellipse_fn(0.02, ny, 0.022, 0.014), p["skin"] * 0.72)
    box = (-mw - 0.05, my - 0.1, mw + 0.05, my + 0.12)
    if p["mouth_style"] == 0:  # a short line
        canvas.paint(box, _ellipse_fn(0.0, my, mw * 0.8, 0.014), _MOUTH)
    elif p["mouth_style"] == 1:  # a smile: the lower part of a thin ring
        canvas.paint(
            box,
            lambda x, y: np.maximum(np.abs(_ellipse(x, y, 0.0, my - 0.03, mw, 0.05)) - 0.011, my - 0.01 - y),
            _MOUTH,
        )
    else:  # open: a half ellipse with a tongue

        def mouth(x, y):
            return np.maximum(_ellipse(x, y, 0.0, my, mw * 0.8, 0.07), my - y)

        canvas.paint(box, mouth, _MOUTH)
        canvas.paint(
            box, lambda x, y: np.maximum(_ellipse(x, y, 0.0, my + 0.065, mw * 0.5, 0.035), mouth(x, y)), _TONGUE
        )


def _draw_front_hair(canvas: _Canvas, p: dict) -> None:
    """Side locks, the cap with its fringe, shine strokes and an optional ribbon."""
    hair, cap_rx, cap_ry = p["hair"], p["cap_rx"], p["cap_ry"]
    if p["locks"]:
        for side in (-1.0, 1.0):
            lx = side * p["lock_x"]
            top, bottom = (lx + side * 0.05, -0.5), (lx - side * 0.04, -0.2 + p["lock_len"] * 1.1)
            canvas.paint(
                (lx - 0.3, -0.6, lx + 0.3, bottom[1] + 0.05),
                lambda x, y, top=top, bottom=bottom: _lens(x, y, top, bottom, p["lock_w"]),
                hair,
            )

    def cap(x, y):
        return np.maximum(_ellipse(x, y, 0.0, _CAP_CY, cap_rx, cap_ry), _below(x, y, lambda xx: _fringe_line(p, xx)))

    def cap_colour(x, y):
        t = np.clip((y + cap_ry) / (cap_ry + 0.2), 0, 1)[..., None]
        return hair * (1.08 - 0.18 * t)

    canvas.paint((-cap_rx, _CAP_CY - cap_ry, cap_rx, 0.6), cap, cap_colour)

    # Shine: short pointed strokes along an arc, each pointing away from the crown.
    light, radius = np.clip(hair * 1.15 + 0.18, 0, 1), p["shine_radius"]
    for angle, length in zip(p["shine_angles"], p["shine_lengths"], strict=True):
        sx, sy = math.sin(angle), -math.cos(angle)
        mx, my = cap_rx * radius * sx, _CAP_CY + cap_ry * radius * sy
        outer = (mx + 0.5 * length * sx, my + 0.5 * length * sy)
        inner = (mx - 0.5 * length * sx, my - 0.5 * length * sy)
        canvas.paint(
            (mx - 0.15, my - 0.15, mx + 0.15, my + 0.15),
            lambda x, y, outer=outer, inner=inner: _lens(x, y, outer, inner, 0.035),
            light,
            p["shine"],
        )

    if p["ribbon"]:  # two loops and a knot on one side of the head
        bx, by = p["ribbon_side"] * 0.72, -0.78
        box = (bx - 0.4, by - 0.3, bx + 0.4, by + 0.3)
        for wing in (-1.0, 1.0):
            canvas.paint(
                box, _ellipse_fn(bx + wing * 0.15, by + wing * 0.03, 0.16, 0.09, wing * 0.35), p["ribbon_colour"]
            )
        canvas.paint(box, _circle_fn(bx, by, 0.06), p["ribbon_colour"] * 0.75)


def draw_face(p: dict, image_size: int) -> np.ndarray:
    """Rasterizes the parameters from `synthetic_params.sample_face` at one resolution, back to front.

    Args:
      p: one face's parameter dict.
      image_size: side of the output square, in pixels.

    Returns:
      uint8 [image_size, image_size, 3].
    """
    canvas = _Canvas(image_size, _supersample(image_size), p["cx"], p["cy"], p["scale"])
    _draw_background(canvas, p)
    _draw_back_hair(canvas, p)
    _draw_body_and_face(canvas, p)
    _draw_eye(canvas, p, -1.0)
    _draw_eye(canvas, p, 1.0)
    _draw_nose_and_mouth(canvas, p)
    _draw_front_hair(canvas, p)
    return canvas.result()
