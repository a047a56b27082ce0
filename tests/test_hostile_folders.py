"""Image folders as users have them: links, loops, special files and odd images; nothing may raise."""

import logging
import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from animejax.data import cache, sources


def _png(path, size=(12, 9), mode="RGB", seed=0):
    rng = np.random.default_rng(seed)
    if mode == "I;16":
        Image.fromarray(rng.integers(0, 65535, size=size[::-1], dtype=np.uint16)).save(path, format="PNG")
        return
    Image.fromarray(rng.integers(0, 256, size=(*size[::-1], 3), dtype=np.uint8)).convert(mode).save(path, format="PNG")


def _huge_png(path, side=200_000):
    """A valid 1x1 PNG whose header then claims side x side pixels (a decompression bomb to PIL)."""
    _png(path, (1, 1))
    data = bytearray(open(path, "rb").read())
    ihdr = data[12:29]  # b"IHDR" + 13 bytes.
    ihdr[4:12] = struct.pack(">II", side, side)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)) & 0xFFFFFFFF)
    open(path, "wb").write(bytes(data))


def _animated(path, fmt):
    frames = [Image.new("RGB", (10, 10), (i * 60, 0, 0)) for i in range(3)]
    frames[0].save(path, format=fmt, save_all=True, append_images=frames[1:], duration=50)


KINDS = {
    "rgb_png": lambda p, s: _png(p + ".png", seed=s),
    "jpeg": lambda p, s: Image.new("RGB", (20, 14), (s % 255, 80, 40)).save(p + ".jpg", format="JPEG"),
    "grey": lambda p, s: _png(p + ".png", mode="L", seed=s),
    "cmyk_jpeg": lambda p, s: Image.new("CMYK", (16, 16), (10, 20, 30, 40)).save(p + ".jpg", format="JPEG"),
    "png_16_bit": lambda p, s: _png(p + ".png", mode="I;16", seed=s),
    "one_pixel": lambda p, s: _png(p + ".png", size=(1, 1), seed=s),
    "rgba_webp": lambda p, s: Image.new("RGBA", (9, 13), (1, 2, 3, 128)).save(p + ".webp", format="WEBP"),
    "animated_webp": lambda p, s: _animated(p + ".webp", "WEBP"),
    "animated_gif_as_png": lambda p, s: _animated(p + ".png", "GIF"),  # Wrong extension, real image.
    "png_named_jpg": lambda p, s: _png(p + ".jpg", seed=s),
    "zero_bytes": lambda p, s: open(p + ".png", "wb").close(),
    "truncated_jpeg": lambda p, s: _truncated_jpeg(p + ".jpg"),
    "text_as_png": lambda p, s: open(p + ".png", "w").write("not an image"),
    "huge_dimensions": lambda p, s: _huge_png(p + ".png"),
    "gif_extension": lambda p, s: _animated(p + ".gif", "GIF"),  # Not an image extension: not listed.
}


def _truncated_jpeg(path):
    Image.new("RGB", (64, 64), (200, 10, 10)).save(path, format="JPEG")
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 3])


def _pil_accepts(path) -> bool:
    try:
        with Image.open(path) as image:
            image.load()
        return True
    except Exception:
        return False


def test_links_loops_and_special_files_are_skipped_and_named(tmp_path, caplog):
    root = tmp_path / "faces"
    (root / "sub").mkdir(parents=True)
    _png(str(root / "a.png"))
    _png(str(root / "sub" / "b.png"), seed=1)
    os.symlink(root / "missing.png", root / "dangling.png")
    os.symlink(root, root / "sub" / "loop")  # A folder link back to the top: visited once.
    os.symlink(root / "a.png", root / "sub" / "a_again.png")  # The same real file through a link.
    os.mkfifo(root / "pipe.png")
    if os.geteuid() != 0:  # Root reads any file, so this case only exists for other users.
        _png(str(root / "secret.png"), seed=2)
        os.chmod(root / "secret.png", 0)
    with caplog.at_level(logging.WARNING):
        folder = sources.ImageFolder(str(root), 8)
    assert folder.paths == [str(root / "a.png"), str(root / "sub" / "b.png")]
    reasons = dict(folder.skipped)
    assert reasons[str(root / "dangling.png")] == "broken link"
    assert reasons[str(root / "pipe.png")] == "not a regular file"
    assert reasons[str(root / "sub" / "loop")] == "a link to a folder already visited"
    assert reasons[str(root / "sub" / "a_again.png")] == "the same file as one listed before (a link)"
    if os.geteuid() != 0:
        assert reasons[str(root / "secret.png")] == "permission denied"
    assert f"skipped {len(folder.skipped)} entries" in caplog.text and "dangling.png (broken link)" in caplog.text
    again = sources.ImageFolder(str(root), 8)
    assert again.fingerprint() == folder.fingerprint() and cache.cache_key(again) == cache.cache_key(folder)
    images = cache.cached_images(folder, str(tmp_path / "cache"))
    assert images.shape == (2, 8, 8, 3)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fuzzed_hostile_trees_never_raise_and_keep_what_pil_loads(seed, tmp_path):
    """Random trees of every kind above (plus broken links and loops): nothing raises, and the images used are
    exactly the listed files that PIL's open-and-load accepts."""
    rng = np.random.default_rng(seed)
    root = tmp_path / "tree"
    folders = [root]
    for i in range(int(rng.integers(2, 5))):
        folders.append(folders[int(rng.integers(len(folders)))] / f"d{i}")
        folders[-1].mkdir(parents=True)
    names = list(KINDS)
    for i in range(40):
        kind = names[int(rng.integers(len(names)))]
        folder = folders[int(rng.integers(len(folders)))]
        KINDS[kind](str(folder / f"{i:02d}_{kind}"), i)
    _png(str(root / "always.png"))  # At least one good image.
    os.symlink(root / "nowhere.jpg", folders[-1] / "broken.jpg")
    os.symlink(root, folders[-1] / "up")
    folder = sources.ImageFolder(str(root), 16)
    expected = sum(_pil_accepts(path) for path in folder.paths)
    images = cache.cached_images(folder, str(tmp_path / "cache"), num_workers=2)
    assert len(images) == expected > 0
    assert images.dtype == np.uint8 and images.shape[1:] == (16, 16, 3)
    assert cache.corrupt_count(folder, str(tmp_path / "cache")) == len(folder.paths) - expected
