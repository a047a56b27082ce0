"""Start-up time of the command line with XLA's persistent compilation cache cold, warm and off.

Each config trains `--steps` steps three times, each in a fresh workdir: with an empty cache folder (cold: it
compiles and stores), with the same folder again (warm: it loads), and with `--compilation_cache=none`. The
wall time of the whole process and the compile time the log says the cache saved are reported per run.

    python benchmarks/compilation_cache.py --configs=vae:quick,ddpm:quick,stylegan2:quick
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SAVED = re.compile(r"from the compilation cache in .* \(([0-9.]+) s of compiling saved\)")


def train_once(config: str, steps: int, cache: str, workdir: str, data_cache: str) -> tuple[float, float]:
    """Trains `steps` steps in a new process; returns its wall seconds and the compile seconds the cache saved."""
    command = [
        sys.executable,
        "-m",
        "animejax.main",
        f"--config={config}",
        f"--workdir={workdir}",
        f"--compilation_cache={cache}",
        f"--config.train.num_steps={steps}",
        f"--config.data.cache_dir={data_cache}",
        "--config.data.num_images=512",
        "--config.train.sample_every=100000",
        "--config.eval.every_steps=0",
    ]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return wall, sum(float(seconds) for seconds in _SAVED.findall(done.stderr))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default="vae:quick,ddpm:quick,stylegan2:quick")
    parser.add_argument("--steps", type=int, default=2)
    args = parser.parse_args()

    print("| config | cold cache (s) | warm cache (s) | saved compiling (s) | cache off (s) |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="animejax_cache_bench_") as root:
        data_cache = os.path.join(root, "data")
        for config in args.configs.split(","):
            cache = os.path.join(root, "xla_" + config.replace(":", "_"))
            runs = {}
            # An untimed first run builds the decode cache and warms the OS's file cache for the three timed ones.
            for name, setting in (("warmup", "none"), ("cold", cache), ("warm", cache), ("off", "none")):
                runs[name] = train_once(config, args.steps, setting, os.path.join(root, f"{config}_{name}"), data_cache)
            (cold, _), (warm, saved), (off, _) = runs["cold"], runs["warm"], runs["off"]
            print(f"| {config} | {cold:.1f} | {warm:.1f} | {saved:.1f} | {off:.1f} |", flush=True)


if __name__ == "__main__":
    main()
