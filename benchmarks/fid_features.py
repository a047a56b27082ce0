"""FID feature extraction throughput: animejax's jitted Flax Inception against pytorch-fid, same run, same weights.

Both networks get the same images (uint8 faces of `--image_size` px, from `../shared/data/anime_faces_96` when
present, else the built-in synthetic set) and do the same work per image: bilinear resize to 299 (pytorch-fid's
`F.interpolate`, align_corners=False), scaling to [-1, 1], and the FID Inception-v3 up to the 2048-d pool3
features. pytorch-fid's network gets seeded random weights (the released file cannot be downloaded on our
machines; speed does not depend on the values), and animejax gets the same weights through its torch-free
converter, so the features are also compared. Timings exclude JAX compilation and the first torch batch, and
report images/s and the ratio animejax / pytorch-fid.

  python benchmarks/fid_features.py --num_images=10000 --batch_size=250      # on a GPU
  python benchmarks/fid_features.py --num_images=256 --batch_size=32         # on a 2-core CPU
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_FACES = os.path.join(os.path.dirname(REPO), "shared", "data", "anime_faces_96")
sys.path.insert(0, REPO)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num_images", type=int, default=10_000)
    parser.add_argument("--batch_size", type=int, default=250)
    parser.add_argument("--image_size", type=int, default=64, help="Side of the input images before the resize.")
    parser.add_argument("--device", default="auto", help="torch device: auto (cuda if available), cpu or cuda.")
    parser.add_argument("--xla_defaults_off", action="store_true", help="Skip animejax's default XLA flags.")
    return parser.parse_args(argv)


def load_images(count: int, image_size: int) -> tuple[np.ndarray, str]:
    """uint8 [count, S, S, 3] faces (repeated if the set is smaller), and where they came from."""
    from animejax.data import cache, sources, synthetic

    if os.path.isdir(SHARED_FACES):
        source, where = sources.ImageFolder(SHARED_FACES, image_size), "shared real faces"
        source = sources.ImageFolder(SHARED_FACES, image_size, source.paths[: min(count, 2_000)])
    else:
        source, where = synthetic.SyntheticFaces(min(count, 2_000), image_size), "synthetic faces"
    images = np.asarray(cache.cached_images(source, os.path.join(tempfile.gettempdir(), "animejax_bench_cache")))
    return np.resize(images, (count, *images.shape[1:])), where


def torch_network(device: str):
    """pytorch-fid's pool3 network with seeded random weights, and its state dict under the released file's names.

    pytorch-fid builds torchvision's Inception3, swaps in its FID blocks, then loads the released weights with
    `load_state_dict_from_url`; that call is handed the network's own state dict instead, so nothing is
    downloaded, and the Inception3 object is kept for its torchvision parameter names.
    """
    import torch
    from pytorch_fid import inception as fid_inception

    built = []
    original_build = fid_inception._inception_v3
    fid_inception._inception_v3 = lambda *a, **k: built.append(original_build(*a, **k)) or built[-1]
    fid_inception.load_state_dict_from_url = lambda *a, **k: built[-1].state_dict()
    model = fid_inception.InceptionV3([3], resize_input=True, normalize_input=True, use_fid_inception=True)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # He-scaled random weights keep activations O(1), like the real network's.
        for layer in built[-1].modules():
            if isinstance(layer, torch.nn.Conv2d):
                fan_in = layer.weight[0].numel()
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator) * (2.0 / fan_in) ** 0.5)
            elif isinstance(layer, torch.nn.BatchNorm2d):
                layer.running_var.copy_(torch.rand(layer.running_var.shape, generator=generator) + 0.5)
    state = {name: tensor.detach().cpu().numpy() for name, tensor in built[-1].state_dict().items()}
    return model.eval().to(device), state


def time_torch(model, images: np.ndarray, batch_size: int, device: str) -> tuple[float, np.ndarray]:
    import torch

    def run(batch):
        x = torch.from_numpy(batch).to(device).permute(0, 3, 1, 2).float() / 255.0
        with torch.no_grad():
            return model(x)[0].squeeze(-1).squeeze(-1)

    first = run(images[:batch_size]).cpu().numpy()  # Warm-up (cuDNN autotune, allocations).
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for begin in range(0, len(images), batch_size):
        out = run(images[begin : begin + batch_size])
    out.cpu()
    return len(images) / (time.perf_counter() - start), first


def time_jax(state_dict: dict, images: np.ndarray, batch_size: int) -> tuple[float, np.ndarray]:
    import jax
    import jax.numpy as jnp

    from animejax.metrics import inception, resize
    from animejax.pretrained import inception as pretrained_inception

    module = inception.FIDInceptionV3()
    variables = jax.device_put(pretrained_inception.convert_to_flax(state_dict))

    @jax.jit
    def features(variables, batch):
        x = batch.astype(jnp.float32) / 127.5 - 1.0
        return module.apply(variables, resize.resize_for_inception(x, "pytorch_fid"))

    first = np.asarray(features(variables, images[:batch_size]))  # Compiles.
    start = time.perf_counter()
    for begin in range(0, len(images), batch_size):
        out = features(variables, images[begin : begin + batch_size])
    out.block_until_ready()
    return len(images) / (time.perf_counter() - start), first


def main(argv=None) -> None:
    args = parse_args(argv)
    if not args.xla_defaults_off:  # Measure what `animejax --mode=eval` runs.
        from animejax import xla_flags

        xla_flags.set_defaults()
    import jax
    import torch

    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    if args.num_images % args.batch_size:
        raise SystemExit("--num_images must be a multiple of --batch_size (both sides then run full batches).")
    images, where = load_images(args.num_images, args.image_size)
    model, state_dict = torch_network(device)
    torch_rate, torch_first = time_torch(model, images, args.batch_size, device)
    jax_rate, jax_first = time_jax(state_dict, images, args.batch_size)
    scale = np.abs(torch_first).max()
    print(f"# FID features, {args.num_images} images of {args.image_size} px ({where}), batch {args.batch_size}")
    print(
        f"date {datetime.date.today()} | {platform.machine()} | load {os.getloadavg()[0]:.1f} | "
        f"jax {jax.__version__} on {jax.devices()[0].platform} | torch {torch.__version__} on {device} | "
        f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}"
    )
    print(f"max |animejax - pytorch-fid| / max |features| = {np.abs(jax_first - torch_first).max() / scale:.2e}")
    print("| network | images/s |")
    print("|---|---|")
    print(f"| pytorch-fid InceptionV3 | {torch_rate:.1f} |")
    print(f"| animejax FIDInceptionV3 (jit) | {jax_rate:.1f} |")
    print(f"ratio animejax / pytorch-fid: {jax_rate / torch_rate:.2f}x")


if __name__ == "__main__":
    main()
