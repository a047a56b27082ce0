"""SRGAN throughput: animejax's two train-step phases and its 4x upscaling against the same networks in PyTorch.

Three measurements, each JAX against torch in the same process on the same batch of high-resolution (HR) uint8
images, in images per second:

  pixel step        SRResNet pre-training, `srgan.pretrain_steps` > 0 at step 0: HR to [-1, 1], antialiased
                    bicubic downsampling by `model.scale`, rounded to 8-bit levels (the LR input), G(lr) with
                    batch statistics, pixel MSE against HR, Adam step on G; metrics loss, PSNR and G's gradient
                    norm.
  adversarial step  the same LR input; G(lr) computed once; D's step on the non-saturating loss
                    softplus(-D(HR)) + softplus(D(G(lr) detached)), Adam on D; then G's step against the updated
                    D: pixel_weight * MSE + adversarial_weight * softplus(-D(G(lr))) (+ tv_weight * total
                    variation when set), Adam on G; D's batch-norm statistics updated by all three D passes as
                    in the JAX method; metrics as the JAX step's (losses, D(real), D(fake), gradient norms).
                    `srgan.content_loss` is "pixel" on both sides (no VGG weights needed).
  upscale           G in eval mode (running statistics) on a batch of LR images made once beforehand:
                    `jax.jit(method.upscale)` against torch `no_grad` eval; `--upscale_steps` calls per timing.

JAX: the train steps are `common.CompiledSteps` (the loop's `make_train_step`, state donated, replicated/data
shardings on a 1-device mesh, the per-step key from a jitted `fold_in`), one per phase, each compiled ahead of
time for a fresh state: the pixel one from a config with `srgan.pretrain_steps` >= 1, the adversarial one with
`srgan.pretrain_steps = 0`, so `method.phase(0)` picks it. Upscaling is `jax.jit(method.upscale)` compiled ahead
of time on the LR batch (made on device by `method.low_resolution`).

PyTorch: tests/reference/torch_srgan.py's TorchSRResNet and TorchDiscriminator (NCHW, eager), started from the
JAX initial weights (`load_flax_variables`); the LR input made with torch.nn.functional.interpolate(
mode="bicubic", antialias=True, align_corners=False) and the same 8-bit rounding, inside the timed step as on the
JAX side; Adam with the config's learning rates and betas, eps 1e-8 (optax's defaults); D's parameters frozen
(requires_grad False) during G's backward pass, which JAX never differentiates for D either.

Before timing a parity check runs both frameworks in float32 from the copied weights: the LR downsampling
(before rounding, and how many 8-bit levels differ), G(lr) in eval and train mode on the same LR, D(HR) logits
with batch and with running statistics, printed as max |JAX - torch| / max |torch|; the parameter counts must
be equal. `--dtype=bfloat16` sets the JAX model.dtype and runs torch under torch.autocast(bfloat16). On CUDA
torch runs on the GPU (torch.set_default_device, cudnn.benchmark). Timings alternate JAX and torch for each
measurement, `--repeats` times; medians; ratio = JAX img/s / torch img/s.

    python benchmarks/srgan_step.py --threads=2                       # :quick, 24 -> 96 px, batch 16
    python benchmarks/srgan_step.py --steps=5 --repeats=5 --wait_idle=120 --append=BENCHMARKS.md
    python benchmarks/srgan_step.py --variant= --batch_size=16 --dtype=bfloat16   # 64 -> 256 px, 16 blocks: a GPU

For another script: `make_runners(config, images_nhwc, measurement)` -> (jax_run, torch_run, jax_step) for
measurement "pixel", "adversarial" or "upscale"; see its docstring.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import os
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import CompiledSteps, JaxStep, pin_threads  # noqa: E402
from vae_step import CpuMeter, machine, wait_idle  # noqa: E402

MEASUREMENTS = ("pixel", "adversarial", "upscale")
PARITY_LIMIT = 0.05  # A relative difference above this is a bug, not rounding (TF32 on GPUs stays ~1e-3).


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", default="quick", help="configs/srgan.py variant: quick, cpu, 8x, '' (256 px).")
    parser.add_argument("--image_size", type=int, default=0, help="Override data.image_size (the HR side).")
    parser.add_argument("--channels", type=int, default=0, help="Override model.channels (G's width).")
    parser.add_argument("--num_blocks", type=int, default=0, help="Override model.num_blocks (G's residual blocks).")
    parser.add_argument("--d_channels", type=int, default=0, help="Override model.d_channels (D's first width).")
    parser.add_argument("--batch_size", type=int, default=0, help="Default: the config's.")
    parser.add_argument("--steps", type=int, default=5, help="Timed train steps per repeat and measurement.")
    parser.add_argument("--upscale_steps", type=int, default=0, help="Timed upscale calls per repeat; 0: --steps.")
    parser.add_argument("--warmup", type=int, default=2, help="Untimed steps (calls) of each measurement first.")
    parser.add_argument("--repeats", type=int, default=3, help="Alternating JAX/torch timings; medians reported.")
    parser.add_argument("--threads", type=int, default=0, help="CPU cores for both frameworks; 0 for all.")
    parser.add_argument("--dtype", default="float32", help="JAX model.dtype (float32, bfloat16); torch autocast.")
    parser.add_argument(
        "--wait_idle",
        type=float,
        default=0.0,
        help="Before each repeat, wait up to this many seconds for other processes to use < 0.2 cores.",
    )
    parser.add_argument("--append", default="", help="Markdown file to append the results section to.")
    parser.add_argument(
        "--xla_defaults", type=int, default=1, help="1: animejax's default XLA flags, as the command line sets them."
    )
    return parser.parse_args(argv)


def load_config(args: argparse.Namespace):
    """configs/srgan.py's variant with the size overrides, pixel content loss and the JAX dtype."""
    from animejax.configs import srgan

    config = srgan.get_config(args.variant)
    if args.image_size:
        config.data.image_size = args.image_size
    for field in ("channels", "num_blocks", "d_channels"):
        if getattr(args, field):
            config.model[field] = getattr(args, field)
    if args.batch_size:
        config.train.batch_size = args.batch_size
    config.model.dtype = args.dtype
    config.srgan.content_loss = "pixel"  # The torch side has no VGG19.
    config.srgan.crop_size = 0  # Whole images: the torch side draws no crops.
    config.mesh.num_devices = 1
    return config


def phase_config(config, measurement: str):
    """`config` with `srgan.pretrain_steps` putting step 0 in the measurement's phase (upscale: unchanged)."""
    config = copy.deepcopy(config)
    if measurement == "pixel":
        config.srgan.pretrain_steps = max(config.srgan.pretrain_steps, 1)
    elif measurement == "adversarial":
        config.srgan.pretrain_steps = 0
    return config


def check_config(config) -> None:
    """Raises ValueError for settings the torch side does not reproduce."""
    srgan, model = config.srgan, config.model
    if srgan.content_loss != "pixel":
        raise ValueError(f"srgan.content_loss must be 'pixel' (the torch side has no VGG), got {srgan.content_loss!r}")
    if srgan.crop_size not in (0, config.data.image_size):
        raise ValueError(f"srgan.crop_size must be 0 (the torch side draws no crops), got {srgan.crop_size}")
    if config.data.image_size % model.scale:
        raise ValueError(f"data.image_size={config.data.image_size} is not divisible by model.scale={model.scale}")
    for name in ("optim", "optim_d"):
        optim = config[name]
        if optim.name != "adam" or optim.schedule != "constant" or optim.warmup_steps or optim.grad_clip_norm:
            raise ValueError(f"config.{name} must be plain Adam at a constant rate for the torch side, got {optim}")


# --- JAX: the loop's steps and the jitted upscaling --------------------------------------------------------------


def _param_counts(jax, state) -> dict[str, int]:
    leaves = jax.tree.leaves
    return {"G": sum(x.size for x in leaves(state.g_params)), "D": sum(x.size for x in leaves(state.d_params))}


class JaxRunner(CompiledSteps):
    """A phase's step as the loop builds it (`CompiledSteps`: compiled ahead of time, from its initial state)."""

    def __init__(self, config, images_nhwc, measurement: str):
        super().__init__(config, images_nhwc)
        phase = self.method.phase(0)
        if phase != measurement:
            raise ValueError(f"the {measurement} runner's step 0 is in phase {phase!r}")
        self.measurement = measurement

    def param_counts(self) -> dict[str, int]:
        return _param_counts(self.jax, self.state)


class JaxUpscaler:
    """`jax.jit(method.upscale)` compiled ahead of time for a fresh state and the batch's LR images.

    Attributes: jax_step (`common.JaxStep`, whose step is never run), method, state, low (the LR batch on the
    device), compiled, compile_s, step (calls made), metrics (the last output's mean and range).
    """

    def __init__(self, config, images_nhwc):
        import jax

        from animejax.methods.base import model_batch

        self.jax = jax
        self.jax_step = JaxStep(config, images_nhwc)
        self.method, self.state = self.jax_step.method, self.jax_step.state
        method = self.method
        self.low = jax.jit(lambda batch: method.low_resolution(model_batch(batch)["image"]))(self.jax_step.images)
        start = time.perf_counter()
        self.compiled = jax.jit(method.upscale).lower(self.state, self.low).compile()
        self.compile_s = time.perf_counter() - start
        self.step, self.metrics = 0, None

    def run(self, steps: int) -> float:
        """`steps` upscalings of the LR batch; returns their seconds, device work included."""
        jax = self.jax
        jax.block_until_ready((self.state, self.low))
        start = time.perf_counter()
        out = None
        for _ in range(steps):
            out = self.compiled(self.state, self.low)
        jax.block_until_ready(out)
        elapsed = time.perf_counter() - start
        self.step += steps
        if out is not None:
            self.metrics = {"mean": out.mean(), "min": out.min(), "max": out.max()}
        return elapsed

    def param_counts(self) -> dict[str, int]:
        return _param_counts(self.jax, self.state)

    def peak_bytes(self) -> int | None:
        stats = self.jax.devices()[0].memory_stats()
        return None if stats is None else stats.get("peak_bytes_in_use")


# --- PyTorch: the same networks and steps ---------------------------------------------------------------------


def torch_low_resolution(high, scale: int):
    """The LR input of HR [B, 3, H, W] in [-1, 1]: antialiased bicubic by `scale`, rounded to 8-bit levels.

    animejax.data.degrade.downsample then pipeline.quantize, in torch.
    """
    import torch

    size = (high.shape[-2] // scale, high.shape[-1] // scale)
    down = torch.nn.functional.interpolate(high, size=size, mode="bicubic", antialias=True, align_corners=False)
    return torch.round((down.clamp(-1.0, 1.0) + 1.0) * 127.5) / 127.5 - 1.0


def torch_networks(config, jax_state):
    """(G, D): TorchSRResNet and TorchDiscriminator of the config's sizes holding the JAX state's variables."""
    import jax

    from tests.reference import torch_srgan

    model = config.model
    g = torch_srgan.TorchSRResNet(model.scale, model.channels, model.num_blocks).float()
    d = torch_srgan.TorchDiscriminator(model.d_channels).float()
    g_params, g_stats, d_params, d_stats = jax.device_get(
        (jax_state.g_params, jax_state.g_batch_stats, jax_state.d_params, jax_state.d_batch_stats)
    )
    torch_srgan.load_flax_variables(g, {"params": g_params, "batch_stats": g_stats})
    torch_srgan.load_flax_variables(d, {"params": d_params, "batch_stats": d_stats})
    return g, d


class _TorchBase:
    """Shared by the torch runners: networks from the JAX state, the HR batch in [-1, 1], autocast, counts."""

    def __init__(self, config, images_nchw, jax_state):
        import torch

        self.torch = torch
        torch.manual_seed(config.seed)
        self.g, self.d = torch_networks(config, jax_state)
        self.scale = config.model.scale
        self.images = images_nchw  # uint8 [B, 3, S, S] on torch's device.
        self.device = images_nchw.device
        self.bf16 = config.model.dtype == "bfloat16"
        self.step, self.metrics = 0, {}

    def autocast(self):
        torch = self.torch
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize(self.device)

    def param_counts(self) -> dict[str, int]:
        return {"G": sum(p.numel() for p in self.g.parameters()), "D": sum(p.numel() for p in self.d.parameters())}

    def peak_bytes(self) -> int | None:
        torch = self.torch
        return torch.cuda.max_memory_allocated(self.device) if self.device.type == "cuda" else None


class TorchTrainer(_TorchBase):
    """animejax.methods.srgan's pixel or adversarial step in eager PyTorch (see the module docstring)."""

    def __init__(self, config, images_nchw, jax_state, phase: str):
        super().__init__(config, images_nchw, jax_state)
        torch = self.torch
        if phase not in ("pixel", "adversarial"):
            raise ValueError(f"phase must be pixel or adversarial, got {phase!r}")
        self.phase = phase
        srgan = config.srgan
        self.pixel_weight, self.adversarial_weight, self.tv_weight = (
            srgan.pixel_weight,
            srgan.adversarial_weight,
            srgan.tv_weight,
        )

        def adam(params, optim):
            return torch.optim.Adam(params, lr=optim.learning_rate, betas=(optim.b1, optim.b2), eps=1e-8)

        self.g.train()
        self.d.train()
        self.g_params, self.d_params = list(self.g.parameters()), list(self.d.parameters())
        self.opt_g = adam(self.g_params, config.optim)
        self.opt_d = adam(self.d_params, config.optim_d)

    def _norm(self, params):
        torch = self.torch
        return torch.linalg.vector_norm(torch.stack(torch._foreach_norm([p.grad for p in params])))

    @staticmethod
    def _psnr(mse):
        return 10.0 * (4.0 / mse.clamp_min(1e-12)).log10()

    def pixel_step(self, low, high) -> dict:
        upscaled = self.g(low)
        mse = (upscaled.float() - high).square().mean()
        self.opt_g.zero_grad(set_to_none=True)
        mse.backward()
        norm = self._norm(self.g_params)
        self.opt_g.step()
        mse = mse.detach()
        return {"loss_g": mse, "loss_pixel": mse, "psnr": self._psnr(mse), "grad_norm_g": norm}

    def adversarial_step(self, low, high) -> dict:
        torch = self.torch
        softplus = torch.nn.functional.softplus
        upscaled = self.g(low).float()

        real_logits = self.d(high).float()
        fake_logits = self.d(upscaled.detach()).float()
        loss_d = (softplus(-real_logits) + softplus(fake_logits)).mean()
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        norm_d = self._norm(self.d_params)
        self.opt_d.step()

        self.d.requires_grad_(False)  # G's step differentiates D's input only, as the JAX step.
        pixel = (upscaled - high).square().mean()
        adversarial = softplus(-self.d(upscaled).float()).mean()
        loss_g = self.pixel_weight * pixel + self.adversarial_weight * adversarial
        if self.tv_weight:
            tv = (upscaled[:, :, 1:] - upscaled[:, :, :-1]).square().mean()
            tv = tv + (upscaled[:, :, :, 1:] - upscaled[:, :, :, :-1]).square().mean()
            loss_g = loss_g + self.tv_weight * tv
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        norm_g = self._norm(self.g_params)
        self.opt_g.step()
        self.d.requires_grad_(True)
        pixel = pixel.detach()
        return {
            "loss_g": loss_g.detach(),
            "loss_pixel": pixel,
            "psnr": self._psnr(pixel),
            "grad_norm_g": norm_g,
            "loss_d": loss_d.detach(),
            "d_real": torch.sigmoid(real_logits.detach()).mean(),
            "d_fake": torch.sigmoid(fake_logits.detach()).mean(),
            "grad_norm_d": norm_d,
            "loss_g_adversarial": adversarial.detach(),
        }

    def train_step(self) -> dict:
        high = self.images.float() / 127.5 - 1.0
        low = torch_low_resolution(high, self.scale)
        step = self.pixel_step if self.phase == "pixel" else self.adversarial_step
        return step(low, high)

    def run(self, steps: int) -> float:
        """`steps` steps (under bf16 autocast for a bfloat16 config); returns seconds, device work included."""
        start = time.perf_counter()
        with self.autocast():
            for _ in range(steps):
                self.metrics = self.train_step()
                self.step += 1
        self.synchronize()
        if self.metrics:
            float(self.metrics["loss_g"])
        return time.perf_counter() - start


class TorchUpscaler(_TorchBase):
    """G in eval mode under torch.no_grad on the LR version of the batch (made once, outside the timings)."""

    def __init__(self, config, images_nchw, jax_state):
        super().__init__(config, images_nchw, jax_state)
        self.g.eval().requires_grad_(False)
        with self.torch.no_grad():
            self.low = torch_low_resolution(self.images.float() / 127.5 - 1.0, self.scale)

    def run(self, steps: int) -> float:
        """`steps` upscalings of the LR batch; returns seconds, device work included."""
        torch = self.torch
        start = time.perf_counter()
        out = None
        with torch.no_grad(), self.autocast():
            for _ in range(steps):
                out = self.g(self.low)
        self.synchronize()
        elapsed = time.perf_counter() - start
        self.step += steps
        if out is not None:
            out = out.float()
            self.metrics = {"mean": out.mean(), "min": out.min(), "max": out.max()}
        return elapsed


def make_runners(config, images_nhwc, measurement: str = "pixel"):
    """One of the SRGAN measurements: the animejax side and its PyTorch twin from the same initial weights.

    Args:
      config: an srgan config with `srgan.content_loss = "pixel"`, `srgan.crop_size = 0` and plain constant-rate
        Adam optimizers (`load_config` sets the first two); `srgan.pretrain_steps` is set here for the phase;
        `model.dtype` "bfloat16" makes torch_run use torch.autocast(bfloat16) by itself.
      images_nhwc: uint8 numpy [B, S, S, 3], the HR batch every step (or the LR version every upscaling) uses.
      measurement: "pixel" (the pre-training step), "adversarial" (D step then G step) or "upscale" (eval-mode
        G on the LR batch).

    Returns:
      (jax_run, torch_run, jax_step): jax_run(steps) and torch_run(steps) run that many steps (upscalings of the
      batch) and return seconds (device work included); images/s = steps * B / seconds. jax_step is the
      `common.JaxStep` (for "upscale" one whose train step is never run). The runners are the bound `run` of a
      `JaxRunner` or `JaxUpscaler` and a `TorchTrainer` or `TorchUpscaler` (`jax_run.__self__`,
      `torch_run.__self__`): `.compiled` (JAX, the AOT-compiled function, for cost analysis), `.compile_s`,
      `.param_counts()`, `.peak_bytes()` (JAX: the device's peak_bytes_in_use; torch:
      torch.cuda.max_memory_allocated since the last reset; None where unavailable), `.metrics` (of the last
      step or output). The JAX function is compiled here. Torch builds on its default device and the images are
      copied there; torch's global settings (TF32, cudnn.benchmark) are left as they are.

    Raises:
      ValueError: an unknown measurement, a setting the torch side lacks (check_config), or parameter counts that
        differ between the frameworks.
    """
    import numpy as np
    import torch

    if measurement not in MEASUREMENTS:
        raise ValueError(f"measurement must be one of {MEASUREMENTS}, got {measurement!r}")
    if REPO not in sys.path:
        sys.path.insert(0, REPO)
    config = phase_config(config, measurement)
    check_config(config)
    images_nchw = torch.from_numpy(np.ascontiguousarray(np.asarray(images_nhwc).transpose(0, 3, 1, 2)))
    images_nchw = images_nchw.to(torch.get_default_device())
    if measurement == "upscale":
        jax_runner = JaxUpscaler(config, images_nhwc)
        torch_runner = TorchUpscaler(config, images_nchw, jax_runner.state)
    else:
        jax_runner = JaxRunner(config, images_nhwc, measurement)
        torch_runner = TorchTrainer(config, images_nchw, jax_runner.state, measurement)
    counts = jax_runner.param_counts(), torch_runner.param_counts()
    if counts[0] != counts[1]:
        raise ValueError(f"parameter counts differ: JAX {counts[0]} vs torch {counts[1]}")
    return jax_runner.run, torch_runner.run, jax_runner.jax_step


# --- parity -----------------------------------------------------------------------------------------------------


def parity(config, jax_runner, torch_runner) -> tuple[dict[str, float], tuple[int, int]]:
    """max |JAX - torch| / max |torch| in float32 on both sides, from the initial (copied) weights.

    The LR downsampling before rounding; G(lr) with running and with batch statistics on the same (JAX) LR
    images; D(HR) logits with batch and with running statistics. Also returns (8-bit LR levels that differ,
    LR values): a value within float32 rounding of a half level may round either way. Must run before the
    runners' first step (the JAX state is donated); the torch modules are copied, not changed.
    """
    import jax
    import numpy as np
    import torch

    from animejax import methods
    from animejax.data import degrade, pipeline

    config32 = copy.deepcopy(config)
    config32.model.dtype = "float32"
    method = methods.get_method(config32)
    scale = config.model.scale
    state = jax.device_get(jax_runner.state)
    count = min(4, config.train.batch_size)
    high = jax.device_get(jax_runner.jax_step.images["image"])[:count].astype(np.float32) / 127.5 - 1.0
    device = next(torch_runner.g.parameters()).device

    @jax.jit
    def jax_side(state, high):
        down = degrade.downsample(high, scale)
        low = pipeline.quantize(down)
        g, d = state.g_params, state.d_params
        return {
            "down": down,
            "low": low,
            "G eval": method.generator(g, state.g_batch_stats, low, False)[0],
            "G train": method.generator(g, state.g_batch_stats, low, True)[0],
            "D train": method.discriminator(d, state.d_batch_stats, high, True)[0],
            "D eval": method.discriminator(d, state.d_batch_stats, high, False)[0],
        }

    ours = jax.device_get(jax_side(state, high))

    def nchw(x):
        return torch.from_numpy(np.ascontiguousarray(np.asarray(x, np.float32).transpose(0, 3, 1, 2))).to(device)

    def difference(a, b):
        a, b = np.asarray(a, np.float64), b.detach().cpu().double().numpy()
        if a.ndim == 4:
            b = b.transpose(0, 2, 3, 1)
        return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))

    g, d = copy.deepcopy(torch_runner.g).float(), copy.deepcopy(torch_runner.d).float()
    out = {}
    with torch.no_grad():
        high_t = nchw(high)
        size = (high_t.shape[-2] // scale, high_t.shape[-1] // scale)
        down = torch.nn.functional.interpolate(high_t, size=size, mode="bicubic", antialias=True, align_corners=False)
        out["LR bicubic"] = difference(ours["down"], down)
        low_t = torch_low_resolution(high_t, scale)
        levels = np.abs(np.asarray(ours["low"]) - low_t.cpu().numpy().transpose(0, 2, 3, 1)) > 0.5 / 127.5
        low = nchw(ours["low"])
        out["G(lr) running stats"] = difference(ours["G eval"], g.eval()(low))
        out["G(lr) batch stats"] = difference(ours["G train"], g.train()(low))  # Updates the copy's stats.
        out["D(HR) running stats"] = difference(ours["D eval"], d.eval()(high_t))
        out["D(HR) batch stats"] = difference(ours["D train"], d.train()(high_t))  # Updates the copy's stats.
    return out, (int(levels.sum()), int(levels.size))


# --- the run -----------------------------------------------------------------------------------------------------

LABELS = {"pixel": "pixel step", "adversarial": "adversarial step", "upscale": "upscale"}


def _mib(value: int | None) -> str:
    return "n/a" if value is None else f"{value / 2**20:,.0f} MiB"


def _finite(values) -> bool:
    import numpy as np

    return all(np.all(np.isfinite(np.asarray(x, np.float64))) for x in values)


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.steps < 1 or args.repeats < 1 or args.warmup < 0 or args.upscale_steps < 0:
        raise SystemExit("--steps and --repeats must be >= 1, --warmup and --upscale_steps >= 0.")
    threads = pin_threads(args.threads)
    sys.path.insert(0, REPO)
    if args.xla_defaults:
        from animejax import xla_flags

        xla_flags.set_defaults()
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.set_default_device(device)
    if device == "cuda":
        torch.backends.cudnn.benchmark = True
    import jax

    config = load_config(args)
    size, batch, scale = config.data.image_size, config.train.batch_size, config.model.scale
    steps = {"pixel": args.steps, "adversarial": args.steps, "upscale": args.upscale_steps or args.steps}
    images = np.random.default_rng(0).integers(0, 256, size=(batch, size, size, 3), dtype=np.uint8)

    print(
        f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d} {machine()}, {threads} thread(s); "
        f"jax {jax.__version__} ({jax.devices()[0].platform}), torch {torch.__version__} ({device}); "
        f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}; load {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    started = time.perf_counter()
    runners = {}
    for measurement in MEASUREMENTS:
        jax_run, torch_run, _ = make_runners(config, images, measurement)
        runners[measurement] = (jax_run.__self__, torch_run.__self__)
    setup_s = time.perf_counter() - started
    counts = runners["pixel"][0].param_counts()
    model, srgan = config.model, config.srgan
    compiles = ", ".join(f"{LABELS[m]} {runners[m][0].compile_s:.1f} s" for m in MEASUREMENTS)
    print(
        f"# configs/srgan.py:{args.variant} {size // scale} -> {size} px (x{scale}), batch {batch}, G channels "
        f"{model.channels} x {model.num_blocks} blocks, D channels {model.d_channels}; params G {counts['G']:,} / "
        f"D {counts['D']:,} (equal in both); JAX {args.dtype}; content loss pixel, adversarial weight "
        f"{srgan.adversarial_weight:g}; JAX init + compile {setup_s:.1f} s (compile {compiles})",
        flush=True,
    )
    start = time.perf_counter()
    checks, (levels, values) = parity(config, *runners["pixel"])
    print(
        "# parity (float32, copied weights), max |JAX - torch| / max |torch|: "
        + ", ".join(f"{k} {v:.1e}" for k, v in checks.items())
        + f"; LR 8-bit levels differing {levels} of {values} ({time.perf_counter() - start:.1f} s)",
        flush=True,
    )
    bad = {k: v for k, v in checks.items() if not v <= PARITY_LIMIT}
    if bad or levels > max(1, values // 1000):
        raise SystemExit(f"parity check failed (limit {PARITY_LIMIT}): {bad}; LR levels differing {levels}")

    start = time.perf_counter()
    for jax_runner, _ in runners.values():
        jax_runner.run(args.warmup)
    warmup_s = time.perf_counter() - start
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for _, torch_runner in runners.values():
        torch_runner.run(args.warmup)
    print(
        f"# warm-up {args.warmup} step(s) of each measurement (JAX {warmup_s:.1f} s); timed per repeat: "
        + ", ".join(f"{LABELS[m]} x{steps[m]}" for m in MEASUREMENTS),
        flush=True,
    )
    rates = {m: {"jax": [], "torch": []} for m in MEASUREMENTS}
    loads, others = [], []
    for repeat in range(args.repeats):
        if args.wait_idle:
            wait_idle(args.wait_idle)
        loads.append(os.getloadavg()[0])
        meter = CpuMeter()
        for m, (jax_runner, torch_runner) in runners.items():
            rates[m]["jax"].append(steps[m] * batch / jax_runner.run(steps[m]))
            rates[m]["torch"].append(steps[m] * batch / torch_runner.run(steps[m]))
        others.append(meter.others_cores())
        print(
            f"# repeat {repeat + 1}: "
            + "; ".join(
                f"{LABELS[m]} JAX {rates[m]['jax'][-1]:.2f} / torch {rates[m]['torch'][-1]:.2f} img/s"
                for m in MEASUREMENTS
            )
            + f"; load {loads[-1]:.2f}, others {others[-1]:.2f} cores",
            flush=True,
        )

    for m, (jax_runner, torch_runner) in runners.items():
        expected = args.warmup + args.repeats * steps[m]
        if jax_runner.step != expected or torch_runner.step != expected:
            raise SystemExit(f"{m}: steps JAX {jax_runner.step}, torch {torch_runner.step}, expected {expected}")
        jax_metrics = jax.device_get(jax_runner.metrics)
        torch_metrics = {k: float(v) for k, v in torch_runner.metrics.items()}
        if not _finite(jax.tree.leaves(jax_metrics)) or not _finite(torch_metrics.values()):
            raise SystemExit(f"{m}: non-finite metrics: JAX {jax_metrics}, torch {torch_metrics}")
        if m != "upscale" and ("train/loss_d" in jax_metrics) != (m == "adversarial"):
            raise SystemExit(f"{m}: the JAX step ran the wrong phase (metrics {sorted(jax_metrics)})")
    pixel_jax, pixel_torch = (jax.device_get(r.metrics) for r in runners["pixel"])
    adv_jax, adv_torch = (jax.device_get(r.metrics) for r in runners["adversarial"])
    print(
        f"# last steps: pixel JAX loss {float(pixel_jax['train/loss_g']):.4f}, torch "
        f"{float(pixel_torch['loss_g']):.4f}; adversarial JAX loss_g {float(adv_jax['train/loss_g']):.4f} "
        f"loss_d {float(adv_jax['train/loss_d']):.4f}, torch loss_g {float(adv_torch['loss_g']):.4f} "
        f"loss_d {float(adv_torch['loss_d']):.4f}",
        flush=True,
    )

    header = (
        "| measurement | variant | px (LR -> HR) | batch | dtype | params G / D | JAX img/s | torch img/s "
        "| JAX / torch | JAX compile s |"
    )
    rows = []
    for m in MEASUREMENTS:
        jax_ips, torch_ips = statistics.median(rates[m]["jax"]), statistics.median(rates[m]["torch"])
        label = f"upscale {scale}x (eval G)" if m == "upscale" else LABELS[m]
        rows.append(
            f"| {label} | srgan:{args.variant} | {size // scale} -> {size} | {batch} | {args.dtype} "
            f"| {counts['G']:,} / {counts['D']:,} | {jax_ips:.2f} | {torch_ips:.2f} | {jax_ips / torch_ips:.2f} "
            f"| {runners[m][0].compile_s:.1f} |"
        )
    table = "\n".join([header, "|" + "---|" * (header.count("|") - 1), *rows])
    print(table)
    jax_peak = runners["pixel"][0].peak_bytes()
    torch_peak = runners["pixel"][1].peak_bytes()
    print(
        f"# ratio = JAX img/s / torch img/s (medians of {args.repeats} alternating repeats); peak memory JAX / "
        f"torch {_mib(jax_peak)} / {_mib(torch_peak)}; 1-min load during timings {min(loads):.2f} to "
        f"{max(loads):.2f}, others' CPU {min(others):.2f} to {max(others):.2f} cores"
    )
    if args.append:
        command = "python benchmarks/srgan_step.py " + " ".join(argv)
        with open(args.append, "a") as f:
            f.write(
                f"\n### SRGAN train steps and upscaling, {datetime.date.today()}\n\n`{command}`; {machine()}, "
                f"{threads} thread(s), jax {jax.__version__}, torch {torch.__version__} ({device}), "
                f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}; 1-min load {min(loads):.2f} to {max(loads):.2f}, "
                f"others' CPU {min(others):.2f} to {max(others):.2f} cores. Content loss pixel (no VGG); medians "
                f"of {args.repeats} alternating repeats of "
                + ", ".join(f"{steps[m]} {LABELS[m]}s" for m in MEASUREMENTS)
                + "; peak memory JAX / torch "
                f"{_mib(jax_peak)} / {_mib(torch_peak)}. Parity (float32, copied weights): "
                + ", ".join(f"{k} {v:.1e}" for k, v in checks.items())
                + f".\n\n{table}\n"
            )


if __name__ == "__main__":
    main()
