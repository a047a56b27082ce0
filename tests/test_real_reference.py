"""benchmarks/real_reference.py: real-vs-real SWD and the detection rate of real images, on a folder made here."""

import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image

from animejax.metrics import swd
from tests.conftest import REPO, subprocess_env


def test_real_reference_scores_the_last_images_against_the_first(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(40, 16, 16, 3), dtype=np.uint8)
    images[20:] //= 2  # The last half darker: far from the first half.
    folder = tmp_path / "faces"
    folder.mkdir()
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{i:03d}.png")
    env = {**subprocess_env(), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    script = os.path.join(REPO, "benchmarks", "real_reference.py")
    args = [sys.executable, script, f"--data={folder}", "--image_size=16", "--count=20"]
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout)
    expected = swd.swd(images[20:], images[:20])  # PNGs at their own size: decoded unchanged.
    assert out["swd20_real_vs_real/mean"] == expected["swd/mean"] > 0
    too_many = subprocess.run([*args[:-1], "--count=30"], env=env, capture_output=True, text=True, timeout=300)
    assert too_many.returncode != 0 and "needs twice as many" in too_many.stderr
