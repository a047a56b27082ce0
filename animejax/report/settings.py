"""The config of `--mode=compare` (main.py passes it as `--config` when none is given).

`eval` is the shared evaluation: every field of the base eval group except the in-training ones
(`runs.PER_RUN_EVAL_FIELDS`) replaces the run's own value, so all runs are scored with the same metrics,
sample counts, feature-network files and reference settings; method-specific eval fields (a diffusion run's
`eval.sampler`) stay the run's. `seed` keys every run's samples alike; `mesh.num_devices` is where they run.
Override any field with `--config.eval.num_images=...`, `--config.compare.grid_size=...`.
"""

import ml_collections

from animejax import config_defaults


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0  # Keys the evaluation samples, the method's own terms' data order and the grids of every run.
    config.eval = config_defaults.eval_group()
    config.mesh = ml_collections.ConfigDict({"num_devices": 0})  # 0: every device; otherwise the first n.
    config.compare = compare = ml_collections.ConfigDict()
    compare.grid_size = 8  # The fixed-seed sample grid of each model is grid_size x grid_size.
    compare.method_grids = True  # Also the method's own `--mode=sample` grids (VAE: N(0, I) and data latents).
    compare.timing_batches = 3  # Batches of eval.batch_size timed for sampling images/s (after one to compile).
    return config
