"""Train-state pytrees: what a checkpoint holds and a train step carries."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import optax


@flax.struct.dataclass
class TrainState:
    """One network with its optimizer and EMA.

    Attributes:
      step: int32 scalar, number of optimizer steps taken.
      params: the network's parameters.
      ema_params: exponential moving average of `params`, used for sampling.
      opt_state: optax state.
      rng: uint32 [2] root PRNG key of the run; step keys are folded from it.
    """

    step: jax.Array
    params: Any
    ema_params: Any
    opt_state: optax.OptState
    rng: jax.Array


def ema_update(ema_params: Any, params: Any, decay: float) -> Any:
    """ema <- decay * ema + (1 - decay) * params, leaf by leaf."""
    return jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, ema_params, params)
