"""StyleGAN3's train step in eager PyTorch, the twin of animejax's `StyleGAN3Method` step, for the JAX / torch
step-time comparison of `python benchmarks/stylegan3_step.py --torch`.

`TorchRunner3` is benchmarks/stylegan2_step.py's `TorchRunner` (its phases, Adams with the lazy-regularisation
correction, StyleGAN2's discriminator, D-input pipeline, w_avg and generator EMA) with the generator of
tests/reference/torch_stylegan3.py (NVlabs' networks_stylegan3.py; StyleGAN3-T or -R as the config's
`model.arch`), holding the JAX initial parameters and buffers (the input's frequencies and phases, each layer's
magnitude EMA). Per step, as animejax/methods/stylegan3.py and the reference's StyleGAN2Loss with StyleGAN3's
settings:
  Gmain  z -> mapping -> ws -> synthesis (no noise inputs; the EMAs read, not moved) -> D(blur(fake));
         mean softplus(-logits); Adam step (D frozen).
  Dmain  fresh no-grad fakes of the updated G from the pass that moves every layer's magnitude EMA (the
         reference's update_emas=True); mean softplus(D(blur(fake))) + softplus(-D(blur(real))); Adam step.
  Dreg   every r1_interval steps: R1 through the blur, times r1_gamma / 2 * r1_interval; Adam step.
  then   w_avg lerped toward the Gmain batch's mean w; G_ema's parameters lerped toward G's, G's buffers
         copied into G_ema (as the reference's training loop; the JAX state shares one set of buffers).
The blur is StyleGAN3-R's fading Gaussian of D's inputs (stylegan.blur_init_sigma, blur_fade_kimg); -T has none.
The StyleGAN3 configs run no path length and no style mixing; set in a config, both would run as in StyleGAN2.

`make_torch_runners(config, images_nhwc)` -> (jax_run, torch_run, jax_step), the contract of
stylegan2_step.make_runners. Before returning it checks that the frameworks' parameter counts are equal and that
the copied networks compute the same functions (`parity`, kept as `torch_run.__self__.parity`).
"""

from __future__ import annotations

import copy
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stylegan2_step  # noqa: E402

PARITY_LIMIT = stylegan2_step.PARITY_LIMIT


class TorchRunner3(stylegan2_step.TorchRunner):
    """The StyleGAN3 step of animejax.methods.stylegan3 in eager PyTorch (see the module docstring)."""

    def __init__(self, config, images_nchw, method, jax_state):
        super().__init__(config, images_nchw, method, jax_state)
        # The reference copies every buffer of G into G_ema after each step; only the magnitude EMAs change.
        self.ema_buffers, self.g_buffers = list(self.g_ema.buffers()), list(self.g.buffers())
        self.parity: dict[str, float] = {}

    def build_generator(self, method, jax_state):
        """The float32 torch StyleGAN3 generator holding the JAX state's parameters and buffers."""
        import jax

        from tests.reference import torch_stylegan3

        g = torch_stylegan3.torch_generator_like(method.generator_net).float()
        g_params, buffers = jax.device_get((jax_state.g_params, jax_state.g_buffers))
        torch_stylegan3.load_flax_params(g, g_params, buffers["buffers"], buffers["magnitude_ema"])
        return g

    def map(self, z):
        """z [B, z_dim] -> w [B, w_dim] (the reference's mapping returns w repeated num_ws times)."""
        return self.g.mapping(z)[:, 0]

    def synthesis(self, ws):
        """ws [B, num_ws, w_dim] -> images [B, 3, S, S]; the magnitude EMAs are read, not moved."""
        return self.g.synthesis(ws)

    def fakes_for_d(self, count: int):
        """Dmain's fakes, from the pass that moves each layer's magnitude EMA (update_emas=True)."""
        return self.g.synthesis(self.training_ws(count)[0], update_emas=True)

    def update_ema(self, beta: float) -> None:
        """G_ema's parameters lerped toward G's by 1 - beta; G's buffers copied into G_ema."""
        super().update_ema(beta)
        self.torch._foreach_copy_(self.ema_buffers, self.g_buffers)


def parity(config, jax_runner: stylegan2_step.JaxRunner, torch_runner: TorchRunner3) -> dict[str, float]:
    """max |JAX - torch| / max |torch| in float32 on both sides, from the copied initial weights.

    G(z) (mapping and synthesis, EMAs read); G(z) in the pass that moves the magnitude EMAs (the image, and the
    EMA steps: max over layers of |JAX new - torch new| / max |torch new - old|); D's logits and the per-image
    R1 penalties on the reals through D's input pipeline at step 0 (StyleGAN3-R's blur at its initial sigma).
    Runs before the first step (the JAX state is donated); moves nothing in either runner.
    """
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch

    from animejax import methods
    from animejax.models import stylegan3 as networks

    if torch_runner.step or jax_runner.step:
        raise ValueError("parity needs the initial states: run it before the first step")
    config32 = copy.deepcopy(config)
    config32.model.dtype = "float32"
    method = methods.get_method(config32)
    state = jax.device_get(jax_runner.state)
    g, d = torch_runner.g, torch_runner.d
    device = next(g.parameters()).device
    count = min(4, config.train.batch_size)
    rng = np.random.default_rng(1)
    z = rng.normal(size=(count, config.model.z_dim)).astype(np.float32)
    real = jax.device_get(jax_runner.jax_step.images["image"])[:count].astype(np.float32) / 127.5 - 1.0

    def to_torch(x):
        return torch.from_numpy(np.array(x, np.float32)).to(device)  # A writable C-ordered copy.

    def difference(ours, theirs):
        ours, theirs = np.asarray(ours, np.float64), theirs.detach().cpu().double().numpy()
        if ours.ndim == 4:
            theirs = theirs.transpose(0, 2, 3, 1)
        return float(np.abs(ours - theirs).max() / np.abs(theirs).max())

    @jax.jit
    def jax_side(g_params, g_buffers, d_params, z, real):
        w = method.map(g_params, z)
        ws = jnp.broadcast_to(w[:, None], (z.shape[0], method.num_ws, method.w_dim))
        moved, updates = method.generator_net.apply(
            {"params": g_params, **g_buffers},
            ws,
            update_emas=True,
            method=networks.Generator.synthesize,
            mutable=["magnitude_ema"],
        )
        step, key, p = jnp.zeros((), jnp.int32), jax.random.PRNGKey(0), jnp.zeros(())
        return {
            "G": method.synthesis(g_params, g_buffers, ws, key),
            "G moved": moved,
            "EMAs": updates["magnitude_ema"]["synthesis"],
            "D": method.discriminator(d_params, method.augment(real, key, p, step)),
            "r1": method.r1_penalty(d_params, real, key, p, step),
        }

    ours = jax.device_get(jax_side(state.g_params, state.g_buffers, state.d_params, z, real))
    out = {}
    with torch.no_grad():
        out["G(z)"] = difference(ours["G"], g.synthesis(g.mapping(to_torch(z))))
        twin = copy.deepcopy(g)  # Its EMAs move; the runner's stay.
        out["G(z) moving the EMAs"] = difference(
            ours["G moved"], twin.synthesis(twin.mapping(to_torch(z)), update_emas=True)
        )
        names = g.synthesis.layer_names
        old = np.array([float(getattr(g.synthesis, n).magnitude_ema) for n in names], np.float64)
        new = np.array([float(getattr(twin.synthesis, n).magnitude_ema) for n in names], np.float64)
        ours_new = np.array([float(ours["EMAs"][n]["magnitude_ema"]) for n in names], np.float64)
        out["magnitude EMA steps"] = float(np.abs(ours_new - new).max() / np.abs(new - old).max())
        del twin
        out["D(real)"] = difference(ours["D"], d(torch_runner.d_input(to_torch(real.transpose(0, 3, 1, 2)))))
    x = to_torch(real.transpose(0, 3, 1, 2)).requires_grad_(True)
    (grads,) = torch.autograd.grad(d(torch_runner.d_input(x)).sum(), x)
    out["R1 per image"] = difference(ours["r1"], grads.square().sum(dim=(1, 2, 3)))
    for p in list(g.parameters()) + list(d.parameters()):
        p.grad = None
    return out


def make_torch_runners(config, images_nhwc):
    """The animejax StyleGAN3 step and its PyTorch twin from the same initial weights, for other scripts.

    Args:
      config: a stylegan3 config (configs/stylegan3.py, T or R by `model.arch`; `stylegan.augment` must be
        "none": the torch side has no ADA; `model.dtype` "bfloat16" makes torch_run use torch.autocast(bfloat16)).
      images_nhwc: uint8 numpy [B, S, S, 3], the batch every step of both frameworks trains on.

    Returns:
      (jax_run, torch_run, jax_step) as stylegan2_step.make_runners: jax_run(steps) and torch_run(steps) run that
      many train steps and return seconds; their `__self__` are a `stylegan2_step.JaxRunner` (the step compiled
      here) and a `TorchRunner3` whose `.parity` holds the checks of `parity` (relative differences).

    Raises:
      ValueError: not a stylegan3 config, augment is not "none", the parameter counts differ, or a parity check
        exceeds PARITY_LIMIT (a bug, not rounding).
    """
    if config.method != "stylegan3":
        raise ValueError(f"make_torch_runners needs a stylegan3 config, got method {config.method!r}")
    jax_run, torch_run, jax_step = stylegan2_step.make_runners(config, images_nhwc, runner_class=TorchRunner3)
    torch_runner = torch_run.__self__
    torch_runner.parity = parity(config, jax_run.__self__, torch_runner)
    bad = {k: v for k, v in torch_runner.parity.items() if not v <= PARITY_LIMIT}
    if bad:
        raise ValueError(f"the JAX and torch networks differ (limit {PARITY_LIMIT}): {bad}")
    return jax_run, torch_run, jax_step
