"""Named PRNG streams: every key or seed a run draws outside its train steps comes from `config.seed` and a name.

A stream is the seed's root key folded with a fixed hash of its name, so streams never collide (as
`seed + 1`, `seed + 2` offsets of one run would with another run's seed) and adding one changes no other.
The train state's own key (model initialisation, per-step keys) is `jax.random.PRNGKey(config.seed)`.
"""

from __future__ import annotations

import zlib

import jax

# The streams a run uses, by purpose.
PREVIEW = "preview"  # The fixed noise of the training grids (the same every time: they show progress).
SAMPLE = "sample"  # --mode=sample.
EVAL = "eval"  # --mode=eval's generated images.
TRAINING_EVAL = "training_eval"  # In-training evaluations (the same samples at every evaluation).
SAMPLE_DATA = "sample_data"  # The order of the training images --mode=sample reads (latent statistics, pairs).
UPSCALE = "upscale"  # --mode=upscale's samples of another run (upscale.from_run).
EVAL_DATA = "eval_data"  # The order of the training images --mode=eval scores the method's own terms on.


def _name_hash(name: str) -> int:
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


def stream_key(seed: int, name: str) -> jax.Array:
    """The PRNG key of stream `name` for a run with `seed`."""
    return jax.random.fold_in(jax.random.PRNGKey(seed), _name_hash(name))


def stream_seed(seed: int, name: str) -> int:
    """An integer seed (for host-side shuffles) of stream `name` for a run with `seed`."""
    return (seed * 1_000_003 + _name_hash(name)) % 2**31
