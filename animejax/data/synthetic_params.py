"""The random parameters of one synthetic anime face: every choice `synthetic` makes, and no drawing.

`sample_face(rng)` draws all of a face's random numbers, in a fixed order, and
returns them as a plain dict that `synthetic_draw.draw_face` rasterizes. The
values are resolution-free, so one dict gives the same face at every size.

Coordinates: `scale`, `cx` and `cy` place the head in [0, 1] image
coordinates; everything else is in the head's local frame (x to the right,
y down, origin at the centre of the head, 1.0 = head radius). Colours are RGB
float arrays in [0, 1]. The keys, by face part:

* placement: `scale` (head radius), `cx`, `cy` (head centre);
* colours: `hair`, `eye`, `skin`, `clothes`, background `bg_top`,
  `bg_bottom` and `bg_gradient` (top-to-bottom gradient, else flat `bg_top`);
* face outline, an egg narrowing towards the chin: `face_w`, `face_top`,
  `chin`, `chin_taper`;
* eyes: `eye_x`, `eye_y`, `eye_rx`, `eye_ry`, `eye_tilt`, `highlights` (1 or
  2), `pupil` (fraction of the iris), `brow_lift`;
* nose and mouth: `nose_y`, `mouth_y`, `mouth_style` (0 line, 1 smile,
  2 open), `mouth_w`, `blush` (opacity, 0 for none);
* hair cap and fringe: `cap_rx`, `cap_ry`, `fringe_style` (0 pointed,
  1 parted, 2 blunt, 3 swept), `fringe` (a strand row from `_strands` plus
  `base`, `curve`, `part_x`, `part_depth`, `side`), shine marks `shine`,
  `shine_angles`, `shine_lengths`, `shine_radius`, and `ribbon`,
  `ribbon_colour`, `ribbon_side`;
* hanging hair: side `locks`, `lock_len`, `lock_w`, `lock_x`, and the hair
  behind the head `back_len`, `back_w`, `back_flare`, `back` (a strand row).

The order of the draws is part of the dataset: changing it (or any range)
changes every face, and needs a new `synthetic.RENDERER_VERSION`.
"""

from __future__ import annotations

import colorsys

import numpy as np

# Typical anime hair colours (RGB in [0, 1]): black, brown, dark brown, blonde,
# pink, blue, silver, red, purple, green, orange, light blue.
_HAIR_PALETTE = np.array(
    [
        (0.16, 0.15, 0.20),
        (0.50, 0.32, 0.20),
        (0.34, 0.22, 0.16),
        (0.97, 0.86, 0.52),
        (0.98, 0.64, 0.76),
        (0.30, 0.45, 0.85),
        (0.84, 0.86, 0.92),
        (0.80, 0.22, 0.22),
        (0.58, 0.42, 0.82),
        (0.36, 0.72, 0.48),
        (0.96, 0.56, 0.26),
        (0.55, 0.78, 0.96),
    ]
)
# Eye (iris) colours: blue, green, red, purple, amber, brown, pink, teal, grey.
_EYE_PALETTE = np.array(
    [
        (0.22, 0.45, 0.90),
        (0.22, 0.65, 0.35),
        (0.85, 0.18, 0.20),
        (0.55, 0.30, 0.80),
        (0.92, 0.62, 0.15),
        (0.52, 0.32, 0.18),
        (0.92, 0.40, 0.62),
        (0.15, 0.62, 0.65),
        (0.50, 0.52, 0.60),
    ]
)
_SKIN_LIGHT = np.array((1.00, 0.94, 0.88))
_SKIN_WARM = np.array((0.98, 0.84, 0.74))


def _hsv(rng: np.random.Generator, sat: tuple[float, float], val: tuple[float, float]) -> np.ndarray:
    """A colour with uniform hue and saturation/value in the given ranges."""
    hue = rng.uniform()
    return np.array(colorsys.hsv_to_rgb(hue, rng.uniform(*sat), rng.uniform(*val)))


def _jitter(rng: np.random.Generator, colour: np.ndarray, amount: float) -> np.ndarray:
    """Colour with a random brightness scale and per-channel noise."""
    colour = colour * rng.uniform(1 - amount, 1 + amount) + rng.normal(0.0, amount * 0.5, 3)
    return np.clip(colour, 0.0, 1.0)


def _strands(rng: np.random.Generator, count: int, left: float, right: float) -> dict:
    """Edges, tip positions (fraction of each strand's span) and lengths of a row of hair strands."""
    edges = np.linspace(left, right, count + 1)
    edges[1:-1] += rng.uniform(-0.25, 0.25, count - 1) * (right - left) / count
    return {
        "edges": edges,
        "tips": rng.uniform(0.35, 0.65, count),
        "lengths": rng.uniform(0.0, 1.0, count),
        "power": rng.uniform(1.2, 2.0),
    }


def _sample_placement(rng: np.random.Generator) -> dict:
    """Where the head sits in the image, in [0, 1] image coordinates."""
    return {
        "scale": rng.uniform(0.33, 0.40),  # head radius; the face is 2 * face_w * scale wide (57-78%)
        "cx": 0.5 + rng.uniform(-0.04, 0.04),
        "cy": 0.47 + rng.uniform(-0.04, 0.04),
    }


def _sample_colours(rng: np.random.Generator) -> dict:
    """Hair, eye, skin, background and clothes colours."""
    p: dict = {}
    p["hair"] = _jitter(rng, _HAIR_PALETTE[rng.integers(len(_HAIR_PALETTE))], 0.08)
    p["eye"] = _jitter(rng, _EYE_PALETTE[rng.integers(len(_EYE_PALETTE))], 0.10)
    skin = _SKIN_LIGHT + rng.uniform(0.0, 1.0) * (_SKIN_WARM - _SKIN_LIGHT) + rng.normal(0, 0.01, 3)
    p["skin"] = np.clip(skin, 0.0, 1.0)
    p["bg_top"] = _hsv(rng, (0.05, 0.45), (0.70, 1.00))
    p["bg_bottom"] = _hsv(rng, (0.05, 0.45), (0.70, 1.00))
    p["bg_gradient"] = bool(rng.uniform() < 0.5)
    p["clothes"] = _hsv(rng, (0.15, 0.80), (0.30, 0.95))
    return p


def _sample_outline(rng: np.random.Generator) -> dict:
    """The face outline: an egg, narrower towards the chin by `chin_taper`."""
    return {
        "face_w": rng.uniform(0.86, 0.98),
        "face_top": rng.uniform(0.92, 1.00),
        "chin": rng.uniform(0.92, 1.06),
        "chin_taper": rng.uniform(0.10, 0.50),
    }


def _sample_eyes(rng: np.random.Generator) -> dict:
    """Position, size, tilt, highlights and pupil of both eyes, and the eyebrows' lift."""
    p: dict = {}
    p["eye_x"] = rng.uniform(0.38, 0.46)
    p["eye_y"] = rng.uniform(0.24, 0.32)
    p["eye_rx"] = rng.uniform(0.18, 0.24)
    p["eye_ry"] = p["eye_rx"] * rng.uniform(1.10, 1.35)
    p["eye_tilt"] = rng.uniform(-0.12, 0.15)  # outer corners up when positive
    p["highlights"] = 1 + int(rng.uniform() < 0.7)
    p["pupil"] = rng.uniform(0.30, 0.45)
    p["brow_lift"] = rng.uniform(0.0, 0.1)
    return p


def _sample_mouth(rng: np.random.Generator) -> dict:
    """Nose, mouth and blush."""
    p: dict = {}
    p["nose_y"] = rng.uniform(0.52, 0.58)
    p["mouth_y"] = rng.uniform(0.70, 0.76)
    p["mouth_style"] = int(rng.integers(3))  # 0 line, 1 smile, 2 open
    p["mouth_w"] = rng.uniform(0.06, 0.11)
    p["blush"] = rng.uniform(0.25, 0.55) if rng.uniform() < 0.6 else 0.0
    return p


def _sample_fringe(rng: np.random.Generator, style: int) -> dict:
    """The row of strands ending the hair cap over the forehead, shaped by `style` (see `fringe_style`)."""
    fringe = _strands(rng, int(rng.integers(5, 9)), -0.95, 0.95)
    fringe["base"] = rng.uniform(-0.50, -0.32)
    fringe["curve"] = rng.uniform(0.10, 0.30)
    fringe["part_x"] = rng.uniform(-0.30, 0.30)
    fringe["part_depth"] = rng.uniform(0.20, 0.40)
    fringe["side"] = 1.0 if rng.uniform() < 0.5 else -1.0
    if style == 2:  # blunt: a near-straight cut at brow height with tiny points
        fringe["base"] += 0.30
        fringe["lengths"] = 0.03 + 0.05 * fringe["lengths"]
    else:
        fringe["lengths"] = 0.22 + 0.24 * fringe["lengths"]
    if style == 3:  # swept to one side: tips lean that way, strands longer there
        fringe["tips"] = 0.5 + 0.3 * fringe["side"] + 0.1 * (fringe["tips"] - 0.5)
        centres = 0.5 * (fringe["edges"][1:] + fringe["edges"][:-1])
        fringe["lengths"] *= 0.8 + 0.3 * fringe["side"] * centres
    if style == 1:  # parted: strands point away from the parting
        centres = 0.5 * (fringe["edges"][1:] + fringe["edges"][:-1])
        fringe["tips"] = np.where(centres < fringe["part_x"], 0.3, 0.7) + 0.1 * (fringe["tips"] - 0.5)
    return fringe


def _sample_cap(rng: np.random.Generator) -> dict:
    """The hair cap (top of the head) with its fringe, shine marks and optional ribbon."""
    p: dict = {}
    p["cap_rx"] = rng.uniform(1.08, 1.20)
    p["cap_ry"] = rng.uniform(1.12, 1.25)
    p["fringe_style"] = int(rng.integers(4))  # 0 pointed, 1 parted, 2 blunt, 3 swept
    p["fringe"] = _sample_fringe(rng, p["fringe_style"])
    p["shine"] = rng.uniform(0.35, 0.7)  # opacity of the shine marks on the cap
    count = int(rng.integers(5, 9))
    p["shine_angles"] = np.linspace(-0.9, 0.9, count) + rng.uniform(-0.08, 0.08, count)
    p["shine_lengths"] = rng.uniform(0.10, 0.22, count)
    p["shine_radius"] = rng.uniform(0.62, 0.74)
    p["ribbon"] = bool(rng.uniform() < 0.3)
    p["ribbon_colour"] = _hsv(rng, (0.5, 0.9), (0.7, 1.0))
    p["ribbon_side"] = 1.0 if rng.uniform() < 0.5 else -1.0
    return p


def _sample_hanging_hair(rng: np.random.Generator) -> dict:
    """Side locks hanging in front of the face, and hair behind the head."""
    p: dict = {}
    p["locks"] = bool(rng.uniform() < 0.8)
    p["lock_len"] = rng.uniform(0.55, 1.10)
    p["lock_w"] = rng.uniform(0.10, 0.17)
    p["lock_x"] = rng.uniform(0.84, 0.96)
    long_hair = rng.uniform() < 0.65
    p["back_len"] = rng.uniform(1.0, 2.6) if long_hair else rng.uniform(0.45, 0.85)
    p["back_w"] = rng.uniform(1.10, 1.30)
    p["back_flare"] = rng.uniform(0.0, 0.18)
    back = _strands(rng, int(rng.integers(4, 8)), -p["back_w"] - 0.4, p["back_w"] + 0.4)
    back["lengths"] = 0.10 + 0.25 * back["lengths"]
    p["back"] = back
    return p


# The face parts in the order they draw from the generator (part of the dataset, like every range above).
_PARTS = (
    _sample_placement,
    _sample_colours,
    _sample_outline,
    _sample_eyes,
    _sample_mouth,
    _sample_cap,
    _sample_hanging_hair,
)


def sample_face(rng: np.random.Generator) -> dict:
    """Draws every random choice of one face (the keys and units are in this module's docstring).

    Args:
      rng: the face's own generator; all of its draws happen here, in a fixed order.

    Returns:
      The parameter dict for `synthetic_draw.draw_face`; nothing in it depends
      on the output resolution.
    """
    p: dict = {}
    for part in _PARTS:
        p.update(part(rng))
    return p
