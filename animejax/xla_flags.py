"""Default XLA flags, set before JAX starts (by the command line and the benchmarks).

XLA:CPU in jaxlib 0.10 hands convolutions to YNNPACK, which is slow on their weight gradients; XLA's Eigen path
is 1.7x faster on the VAE step and 2.2x on the FID Inception (BENCHMARKS.md). Only the jaxlib versions where
this experimental flag was measured get it, and a value the user put in XLA_FLAGS wins.
"""

import os

CPU_CONVOLUTION_FLAG = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"


def set_defaults() -> None:
    """Adds the flag above to XLA_FLAGS; call before the first JAX computation."""
    from jaxlib import version as jaxlib_version  # Light: does not start a backend.

    current = os.environ.get("XLA_FLAGS", "")
    if jaxlib_version.__version__.startswith("0.10.") and "ynn_fusion_type" not in current:
        os.environ["XLA_FLAGS"] = f"{current} {CPU_CONVOLUTION_FLAG}".strip()
