"""What every method shares: the one-network train state, EMA with warm-up, the optimizer step, module apply."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
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


def ema_update(ema_params: Any, params: Any, decay: float | jax.Array) -> Any:
    """ema <- decay * ema + (1 - decay) * params, leaf by leaf."""
    return jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, ema_params, params)


def ema_decay(step: jax.Array, decay: float, warmup: bool) -> jax.Array:
    """The EMA decay after `step` updates: `decay`, or min(decay, (1 + step) / (10 + step)) with warm-up.

    The warm-up (as in TensorFlow's ExponentialMovingAverage with num_updates) lets the EMA follow the
    network while it changes fast at the start, instead of averaging in its random initialisation.
    """
    if not warmup:
        return jnp.asarray(decay, jnp.float32)
    step = jnp.asarray(step).astype(jnp.float32)
    return jnp.minimum(decay, (1.0 + step) / (10.0 + step))


def optimizer_step(tx: optax.GradientTransformation, grads: Any, opt_state: Any, params: Any) -> tuple[Any, Any]:
    """One optax update: returns (new params, new optimizer state)."""
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state


def apply_module(
    module: nn.Module, params: Any, stats: Any, inputs: jax.Array, train: bool, rngs: dict | None = None, **kwargs
) -> tuple[Any, Any]:
    """Applies `module` to `inputs`; returns (outputs, stats).

    Args:
      module: a flax module called as `module(inputs, train=train, **kwargs)`.
      params: its 'params' collection.
      stats: its 'batch_stats' collection ({} when it has none); updated and returned when training.
      inputs: the module's first argument.
      train: training mode (batch statistics, dropout, power iterations).
      rngs: PRNG keys by collection name (e.g. {"noise": key, "dropout": key}) for layers that draw.
      **kwargs: further keyword arguments of the module's call.
    """
    variables = {"params": params, **({"batch_stats": stats} if stats else {})}
    if train and stats:
        outputs, updates = module.apply(variables, inputs, train=True, rngs=rngs, mutable=["batch_stats"], **kwargs)
        return outputs, updates["batch_stats"]
    return module.apply(variables, inputs, train=train, rngs=rngs, **kwargs), stats


def split_variables(variables: dict) -> tuple[Any, Any]:
    """A module's init output -> (params, batch_stats or {})."""
    return variables["params"], variables.get("batch_stats", {})
