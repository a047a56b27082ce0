"""What a training run on 8 devices must share with the same run on 1, and why the tolerances are what they are.

A data-parallel step differs from the one-device step only in the order of floating-point sums (the batch is
reduced across devices), so after each step:

1. the metrics (losses, D outputs, gradient norms) agree to METRIC_RTOL;
2. the gradients agree to GRADIENT_RTOL of the network's largest gradient. They are read from Adam's first
   moment mu, a positive combination of the gradients so far (after one step mu = (1 - b1) g); the scale is the
   network's, not each tensor's, because rounding in a sum is relative to its terms, not to its result;
3. every parameter agrees to rtol/atol plus what Adam can make of gradient differences that small. Adam divides
   by sqrt(v) + eps, so on an element whose gradient is itself rounding noise (a bias that a batch norm
   downstream cancels has a true gradient of 0 and a float32 one of about 1e-12, summed in a device-dependent
   order; a near-zero kernel gradient on some CPUs) a 1e-12 difference becomes a step of up to the learning
   rate. The allowance per element is lr * updates * min(ADAM_STEP_CAP, ADAM_SENSITIVITY * delta / (sqrt(v_hat)
   + eps)), with delta the gradient tolerance of (2) and v_hat the one-device run's bias-corrected second moment:
   negligible where the gradient stands well above the noise, two full Adam steps where it is noise. Across
   steps, each update's term at its own v_hat also counts (the larger sum wins): a gradient that was noise in an
   earlier update keeps its allowance after it grows. No parameter is skipped by name. The EMA of parameters gets
   the allowance of the last step.

Measured on an AMD EPYC, 2 steps of every GAN method (where a per-tensor rtol of 1e-5 failed on one generator
kernel element): gradients agree to 6e-8 to 1.6e-6 of the network's largest, and the worst parameter difference
is 0.57 of its tolerance (it would be 270x a plain rtol/atol of 1e-5/1e-6 without the Adam allowance).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np
import optax

METRIC_RTOL, METRIC_ATOL = 1e-5, 1e-6
GRADIENT_RTOL = 1e-5
PARAM_RTOL, PARAM_ATOL = 1e-5, 1e-6
ADAM_EPS = 1e-8  # optax.adam's default, which every animejax optimizer uses.
# |d(m/sqrt(v))| <= (|dm| + |m| |d sqrt(v)| / sqrt(v)) / sqrt(v): about 3 |dg| / sqrt(v) in the first steps.
ADAM_SENSITIVITY = 3.0
# Adam's step in the first updates is at most about 1.25 lr per element, in either run: 2.5 lr apart.
ADAM_STEP_CAP = 2.5


@dataclasses.dataclass(frozen=True)
class Network:
    """Where one network's tensors sit in a train state.

    Attributes:
      params: the state field of its parameters.
      opt_state: the state field of its optax Adam state.
      learning_rate: its (constant) learning rate.
      b1, b2: its Adam decays.
      ema: the state field of its parameters' EMA, or None.
    """

    params: str
    opt_state: str
    learning_rate: float
    b1: float
    b2: float
    ema: str | None = None


def _leaves(tree):
    return [(jax.tree_util.keystr(path), np.asarray(leaf, np.float64)) for path, leaf in _with_path(tree)]


def _with_path(tree):
    return jax.tree_util.tree_leaves_with_path(tree)


def _gradient_tolerance(mu_1, b1: float) -> float:
    """The absolute gradient tolerance delta of a network: GRADIENT_RTOL of its largest first moment, in g units."""
    largest = max((float(np.abs(np.asarray(m)).max()) for m in jax.tree.leaves(mu_1)), default=0.0)
    return GRADIENT_RTOL * largest / (1.0 - b1)


def adam_state(opt_state) -> optax.ScaleByAdamState:
    """The one Adam state (count, mu, nu) inside an optax chain's state."""
    (found,) = [
        x
        for x in jax.tree.leaves(opt_state, is_leaf=lambda x: isinstance(x, optax.ScaleByAdamState))
        if isinstance(x, optax.ScaleByAdamState)
    ]
    return found


def adam_allowance(opt_state_1, network: Network, previous=None) -> tuple[int, Any]:
    """(updates, per-element extra parameter tolerance) of this state (see the module docstring); the tolerance is
    a tree shaped like the parameters.

    `previous` is what this returned for the same run's earlier state, if any. The allowance is then the larger
    of all updates at this state's v_hat and the earlier allowance plus the new updates at this v_hat: an element
    whose gradient was rounding noise in an earlier update and is large now keeps what that update allowed (its
    step then moved by up to the learning rate; seen on an Intel Xeon in SRGAN's critic).
    """
    adam = adam_state(opt_state_1)
    mu, nu, updates = adam.mu, adam.nu, int(adam.count)
    delta = _gradient_tolerance(mu, network.b1)
    correction = 1.0 - network.b2**updates
    if updates == 0:  # A network no step has updated yet (SRGAN's D in the pixel phase): no allowance.
        return updates, jax.tree.map(lambda v: np.zeros(np.shape(v)), nu)

    def per_update(v):
        root = np.sqrt(np.asarray(v, np.float64) / correction)
        return network.learning_rate * np.minimum(ADAM_STEP_CAP, ADAM_SENSITIVITY * delta / (root + ADAM_EPS))

    at_latest = jax.tree.map(lambda v: updates * per_update(v), nu)
    if previous is None:
        return updates, at_latest
    earlier_updates, earlier = previous
    return updates, jax.tree.map(
        lambda latest, old, v: np.maximum(latest, old + (updates - earlier_updates) * per_update(v)),
        at_latest,
        earlier,
        nu,
    )


def _assert_close(actual, expected, extra, what: str) -> None:
    for (name, b), (_, a), (_, allowance) in zip(_leaves(actual), _leaves(expected), _leaves(extra)):
        tolerance = PARAM_RTOL * np.abs(a) + PARAM_ATOL + allowance
        bad = np.abs(b - a) > tolerance
        if bad.any():
            index = np.unravel_index(np.argmax(np.abs(b - a) - tolerance), a.shape)
            raise AssertionError(
                f"{what}{name}: {int(bad.sum())} of {a.size} elements differ beyond tolerance; worst at {index}: "
                f"{b[index]!r} vs {a[index]!r} (tolerance {tolerance[index]:.3g}, "
                f"Adam allowance {allowance[index]:.3g})"
            )


def assert_metrics_agree(history_1: list[dict], history_8: list[dict]) -> None:
    """Per-step metrics of the two runs agree to METRIC_RTOL."""
    for step, (metrics_1, metrics_8) in enumerate(zip(history_1, history_8), start=1):
        assert metrics_1.keys() == metrics_8.keys()
        for key in metrics_1:
            np.testing.assert_allclose(
                metrics_8[key], metrics_1[key], rtol=METRIC_RTOL, atol=METRIC_ATOL, err_msg=f"step {step} {key}"
            )


def assert_networks_agree(state_1, state_8, networks: list[Network], step: int, previous=None) -> dict:
    """Gradients (Adam's first moments), parameters and EMAs of each network agree; see the module docstring.

    `previous` is what the call for the run's earlier state returned; returns each network's (updates, allowance)
    for the next call.
    """
    previous = previous or {}
    allowances = {}
    for network in networks:
        opt_1, opt_8 = getattr(state_1, network.opt_state), getattr(state_8, network.opt_state)
        if not jax.tree.leaves(opt_1):  # An absent network (e.g. no encoder): {} state.
            continue
        mu_1, mu_8 = adam_state(opt_1).mu, adam_state(opt_8).mu
        delta_mu = _gradient_tolerance(mu_1, network.b1) * (1.0 - network.b1)
        for (name, a), (_, b) in zip(_leaves(mu_1), _leaves(mu_8)):
            worst = float(np.abs(b - a).max()) if a.size else 0.0
            assert worst <= delta_mu, (
                f"step {step} {network.opt_state} mu{name}: differs by {worst:.3g} > {delta_mu:.3g}"
            )
        allowances[network.params] = adam_allowance(opt_1, network, previous.get(network.params))
        allowance = allowances[network.params][1]
        params_1, params_8 = getattr(state_1, network.params), getattr(state_8, network.params)
        _assert_close(params_8, params_1, allowance, f"step {step} {network.params}")
        if network.ema:
            _assert_close(getattr(state_8, network.ema), getattr(state_1, network.ema), allowance, f"step {step} ema")
    return allowances


def run_on_one_and_eight(init_and_step, config, steps: int, seed: int = 0):
    """Runs `steps` train steps on 1 device and on 8 from the same state, batches and keys.

    Args:
      init_and_step: tests.test_train.init_and_step (passed in to keep this module free of test imports).
      config: the method's config.
      steps: train steps per run.
      seed: step i uses jax.random.PRNGKey(seed + i).

    Returns:
      [(history, states)] for 1 and 8 devices: per-step metrics and host copies of the states.
    """
    from animejax import sharding

    runs = []
    for devices in (1, 8):
        _, state, step, dataset, shardings = init_and_step(config, devices)
        history, states = [], []
        for i in range(steps):
            state, metrics = step(state, sharding.global_batch(dataset[i], shardings), jax.random.PRNGKey(seed + i))
            history.append(metrics)
            states.append(jax.device_get(state))
        runs.append((jax.device_get(history), states))
    return runs


def assert_runs_agree(runs, networks: list[Network]) -> None:
    """The two runs of `run_on_one_and_eight` agree step by step (metrics, gradients, parameters)."""
    (history_1, states_1), (history_8, states_8) = runs
    assert_metrics_agree(history_1, history_8)
    allowances = None
    for step, (state_1, state_8) in enumerate(zip(states_1, states_8), start=1):
        allowances = assert_networks_agree(state_1, state_8, networks, step, allowances)
