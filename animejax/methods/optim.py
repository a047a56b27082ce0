"""Optimizers and learning-rate schedules built from `config.optim`."""

from __future__ import annotations

import ml_collections
import optax

from animejax.errors import ConfigError


def learning_rate_schedule(optim: ml_collections.ConfigDict, num_steps: int) -> optax.Schedule:
    """Linear warm-up, then constant or cosine decay to zero at `num_steps`."""
    if optim.schedule == "constant":
        decay = optax.constant_schedule(optim.learning_rate)
    elif optim.schedule == "cosine":
        decay = optax.cosine_decay_schedule(optim.learning_rate, max(num_steps - optim.warmup_steps, 1))
    else:
        raise ConfigError(f"Unknown optim.schedule {optim.schedule!r}; choose constant or cosine.")
    if not optim.warmup_steps:
        return decay
    warmup = optax.linear_schedule(0.0, optim.learning_rate, optim.warmup_steps)
    return optax.join_schedules([warmup, decay], [optim.warmup_steps])


def make_optimizer(optim: ml_collections.ConfigDict, num_steps: int) -> optax.GradientTransformation:
    """Adam or AdamW with the configured schedule and optional gradient clipping."""
    schedule = learning_rate_schedule(optim, num_steps)
    if optim.name == "adam":
        tx = optax.adam(schedule, b1=optim.b1, b2=optim.b2)
    elif optim.name == "adamw":
        tx = optax.adamw(schedule, b1=optim.b1, b2=optim.b2, weight_decay=optim.weight_decay)
    else:
        raise ConfigError(f"Unknown optim.name {optim.name!r}; choose adam or adamw.")
    if optim.grad_clip_norm:
        tx = optax.chain(optax.clip_by_global_norm(optim.grad_clip_norm), tx)
    return tx
