"""Every config default in one place: the base groups, the `:quick` and `:cpu` variants, the model families.

Groups: data, train (batch, steps, logging and checkpoint cadence), optim,
ema, sample, eval, checkpoint, mesh; GANs add `gan` and `optim_d`. A file
under `configs/` calls one family builder (`autoencoder_config`,
`gan_config`) and sets only what its model changes.
"""

import ml_collections

from animejax.errors import ConfigError


def base_config() -> ml_collections.ConfigDict:
    """Defaults shared by all models."""
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.method = ""  # Registry name in animejax.methods, set by each model config.

    config.data = data = ml_collections.ConfigDict()
    data.source = "synthetic"  # synthetic | folder | tfds
    data.path = ""  # Folder of images, or TFDS dataset name (e.g. "anime_faces").
    data.split = "train"  # TFDS split.
    data.tfds_data_dir = ""  # TFDS data_dir; empty for TFDS's default.
    data.image_size = 64
    data.num_images = 10_000  # Size of the synthetic set.
    data.synthetic_seed = 0
    data.random_flip = True
    # Images (the dataset's last) kept out of training for held-out evaluation (SRGAN's PSNR/SSIM); 0 = none.
    data.holdout_images = 0
    data.cache_dir = ""  # Decode cache; empty for ~/.cache/animejax/decoded.
    data.num_workers = 4  # Decoding threads for the cache build.
    data.loader_threads = 2  # Background threads that gather batches.
    data.prefetch = 4  # Batches prepared ahead of the device.

    config.train = train = ml_collections.ConfigDict()
    train.batch_size = 64  # Global batch over all devices and processes.
    train.num_steps = 20_000
    # Also stop once training has taken this many seconds over all sessions (0 = no limit): equal-compute
    # comparisons. Grids and in-training evaluations do not count; the run ends complete at that step.
    train.time_budget_s = 0.0
    train.log_every = 100
    train.sample_every = 1_000  # Sample/reconstruction grids (TensorBoard and PNG).
    train.checkpoint_every = 1_000
    # Start from another run's weights (its workdir, or <workdir>/checkpoints/<step>): fresh optimizer, step 0.
    train.init_from = ""

    config.optim = optim = ml_collections.ConfigDict()
    optim.name = "adam"  # adam | adamw
    optim.learning_rate = 2e-4
    optim.b1 = 0.9
    optim.b2 = 0.999
    optim.weight_decay = 0.0
    optim.warmup_steps = 0
    optim.schedule = "constant"  # constant | cosine
    optim.grad_clip_norm = 0.0  # 0 disables clipping.

    config.ema = ema = ml_collections.ConfigDict()
    ema.decay = 0.999

    config.sample = sample = ml_collections.ConfigDict()
    sample.grid_size = 8  # Grids are grid_size x grid_size images.
    sample.latent_stats_images = 2_048  # Training images used for latent mean/std.
    sample.num_interpolations = 8  # Rows of the interpolation grid.
    sample.interpolation_steps = 8
    sample.use_ema = True
    sample.num_individual = 1_000  # Single PNGs written by --mode=sample, for pytorch-fid, clean-fid and reports.

    config.eval = eval_group()

    config.checkpoint = ckpt = ml_collections.ConfigDict()
    ckpt.max_to_keep = 3

    config.mesh = mesh = ml_collections.ConfigDict()
    mesh.num_devices = 0  # 0 uses every device; otherwise the first n.
    return config


def eval_group() -> ml_collections.ConfigDict:
    """`config.eval`: sample-quality metrics, their budgets and files, and the in-training evaluation."""
    evaluation = ml_collections.ConfigDict()
    # --mode=eval: sample-quality metrics of the (EMA) generator against the configured dataset.
    evaluation.metrics = ("fid", "kid", "swd", "detection")
    evaluation.num_images = 50_000  # Generated images for FID/KID, as in the papers.
    evaluation.reference_images = 0  # Real images behind the FID reference statistics; 0 = the whole dataset.
    evaluation.batch_size = 250  # Global; split over the devices.
    evaluation.fid_resize = "pytorch_fid"  # pytorch_fid (bilinear, as pytorch-fid) | clean (clean-fid's antialias).
    evaluation.inception_path = ""  # Local pt_inception-2015-12-05-6726825d.pth; empty downloads it once.
    # fid_i2v / kid_i2v: Illustration2Vec features (GANime's anime FID), computed in the same pass as Inception's.
    evaluation.i2v_path = ""  # Local illust2vec_ver200.caffemodel; empty downloads it once (about 1 GB).
    evaluation.i2v_layer = "encode1"  # encode1 (i2v's extract_feature, GANime's FID) | encode1neuron (its sigmoid).
    evaluation.weights_cache_dir = ""  # Empty: $XDG_CACHE_HOME/animejax/weights (~/.cache/animejax/weights).
    evaluation.stats_cache_dir = ""  # Reference statistics; empty: ~/.cache/animejax/fid_stats.
    evaluation.reference_stats = ""  # An npz with mu/sigma (pytorch-fid's format) to use instead of the dataset's.
    evaluation.kid_num_images = 10_000  # Features per set kept for KID.
    evaluation.kid_subsets = 100
    evaluation.kid_subset_size = 1_000
    evaluation.swd_num_images = 10_000
    evaluation.detection_num_images = 1_000  # As the anime-face StyleGAN2 course benchmark (rate 0.697).
    evaluation.detector_path = ""  # Local lbpcascade_animeface.xml; empty downloads it once.
    evaluation.detector_scale_factor = 1.1
    evaluation.detector_min_neighbors = 3
    evaluation.detector_min_size = 24
    evaluation.detector_min_image_size = 64  # Smaller images are enlarged to this side (bicubic) before detection.
    # During training: metrics every `every_steps` (0 = never) on fewer samples, and a best checkpoint.
    evaluation.every_steps = 0
    evaluation.train_metrics = ("fid", "swd")
    evaluation.train_num_images = 10_000
    evaluation.best_metric = "fid"  # Lower is better; the best checkpoint is kept under workdir/best.
    # Reconstruction/loss evaluation on training images (autoencoder, VAE).
    evaluation.loss_num_images = 2_048
    return evaluation


def apply_quick(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The `:quick` variant's shared part: small images, few steps, runs on 2 CPU cores in minutes."""
    config.data.image_size = 32
    config.data.num_images = 2_048
    config.train.batch_size = 32
    config.train.num_steps = 300
    config.train.log_every = 50
    config.train.sample_every = 150
    config.train.checkpoint_every = 100
    config.sample.latent_stats_images = 512
    config.sample.num_individual = 64
    config.eval.loss_num_images = 256
    # Offline: only the metric that needs no downloaded weights (add fid, kid, detection with their files).
    config.eval.metrics = ("swd",)
    config.eval.num_images = 256
    config.eval.swd_num_images = 256
    config.eval.train_metrics = ("swd",)
    config.eval.train_num_images = 256
    config.eval.best_metric = "swd"
    return config


def apply_cpu(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The `:cpu` variant's shared part: the README's offline job, a few minutes on 2 CPU cores."""
    apply_quick(config)
    config.data.num_images = 10_000
    config.train.batch_size = 64
    config.train.num_steps = 2_000
    config.train.log_every = 100
    config.train.sample_every = 500
    config.train.checkpoint_every = 500
    config.sample.latent_stats_images = 2_048
    config.sample.num_individual = 256
    config.eval.num_images = config.eval.swd_num_images = 2_048
    config.eval.every_steps = 1_000
    config.eval.train_num_images = 1_024
    return config


def check_variant(variant: str, known: tuple[str, ...], path: str) -> None:
    """Raises a clear error for a `configs/x.py:variant` that the file does not define."""
    if variant and variant not in known:
        raise ConfigError(f"Unknown variant {variant!r} for {path}; choose one of {', '.join(known)} or none.")


def _apply_variant(config: ml_collections.ConfigDict, variant: str, sizes: dict[str, dict]) -> None:
    """Applies `:quick` or `:cpu` and that variant's model sizes (`sizes[variant]`, fields of config.model)."""
    if variant == "quick":
        apply_quick(config)
    elif variant == "cpu":
        apply_cpu(config)
    for field, value in sizes.get(variant, {}).items():
        config.model[field] = value


# --- autoencoders -------------------------------------------------------------------------------------------

AUTOENCODER_SIZES = {
    "quick": {"latent_dim": 32, "base_channels": 16, "max_channels": 64},
    "cpu": {"latent_dim": 64, "base_channels": 32, "max_channels": 128},
}


def autoencoder_config(method: str, variant: str, beta: float) -> ml_collections.ConfigDict:
    """The convolutional autoencoder (`method="autoencoder"`, beta 0) or VAE (`"vae"`) at 64 px."""
    config = base_config()
    config.method = method
    config.model = model = ml_collections.ConfigDict()
    model.arch = "conv"  # animejax.models.AUTOENCODER_ARCHS.
    model.latent_dim = 128
    model.base_channels = 32
    model.max_channels = 256
    model.upsample = "subpixel"  # subpixel | transpose | nearest
    model.reconstruction = "mse"  # mse | bce
    model.beta = beta  # Weight of the KL term (0 for the plain autoencoder).
    model.dtype = "float32"  # float32 | bfloat16 (bf16 activations and matmuls; float32 params, norms and loss).
    config.optim.learning_rate = 1e-3
    _apply_variant(config, variant, AUTOENCODER_SIZES)
    return config


# --- GANs ---------------------------------------------------------------------------------------------------


def _gan_groups(config: ml_collections.ConfigDict) -> None:
    """`config.gan` and `config.optim_d`, with DCGAN's optimizer (Adam 2e-4, b1 0.5) for G and D."""
    config.gan = gan = ml_collections.ConfigDict()
    gan.n_critic = 1  # Discriminator updates per generator update, all inside one train step.
    gan.gp_weight = 0.0  # WGAN-GP's lambda (10 in Gulrajani et al.); used by wgan_gp.
    gan.gp_gradient = "auto"  # How wgan_gp differentiates its penalty: auto | losses.PENALTY_GRADIENTS (all exact).
    gan.gp_batch_fraction = 1.0  # wgan_gp: penalise this leading fraction of each batch (< 1: an approximation).
    gan.gp_interval = 1  # wgan_gp: penalise every k-th step only, with weight k (lazy, as StyleGAN2's R1).
    gan.cycle_lambda = 0.0  # Weight of |E(G(z)) - z|_1 (mean over latent dims) in G's and E's loss.
    gan.cycle_image_lambda = 0.0  # Weight of |G(E(x)) - x|_1 (mean over pixels) on real images.
    gan.diffaugment = ""  # DiffAugment policy for D's inputs, e.g. "color,translation,cutout"; "" disables.
    gan.sample_batch_statistics = False  # Sample with batch statistics (PyTorch DCGAN's train-mode G) or EMA'd running.
    gan.stall_d_real_above = 0.95  # Stall warning: mean D(real) above this...
    gan.stall_d_fake_below = 0.05  # ...and mean D(fake) below this...
    gan.stall_patience = 10  # ...for this many consecutive log steps (0 disables).

    config.optim.learning_rate = 2e-4
    config.optim.b1 = 0.5
    config.optim.b2 = 0.999
    config.optim_d = ml_collections.ConfigDict(config.optim.to_dict())

    config.ema.decay = 0.999
    config.ema.warmup = True  # Decay min(decay, (1 + step) / (10 + step)): the EMA follows G early on.
    config.sample.interpolation = "slerp"  # slerp | lerp between latent pairs.


def dcgan_model_config() -> ml_collections.ConfigDict:
    """`config.model` of the DCGAN family at the paper's 64 px sizes (models/dcgan.py)."""
    model = ml_collections.ConfigDict()
    model.arch = "dcgan"  # animejax.models.GAN_ARCHS; every GAN method takes either family.
    model.latent_dim = 100
    model.g_channels = 64  # G's channels at S/2 (ngf); doubled per lower level.
    model.d_channels = 64  # D's channels at S/2 (ndf); doubled per lower level.
    model.upsample = "transpose"  # transpose (the paper) | subpixel (fast on XLA:CPU) | nearest.
    model.d_normalization = "batch"  # batch | layer | none (never on D's first level).
    model.init_std = 0.02  # Kernels ~ N(0, std), norm scales ~ N(1, std); 0 keeps Flax's initialisers.
    model.dtype = "float32"  # float32 | bfloat16 (bf16 activations and matmuls; float32 params, norms and loss).
    return model


def resdcgan_model_config() -> ml_collections.ConfigDict:
    """`config.model` of the residual family (models/resdcgan.py)."""
    model = ml_collections.ConfigDict()
    model.arch = "resdcgan"
    model.latent_dim = 128
    model.g_channels = 64  # G's channels at full resolution; doubled per lower level up to max_channels.
    model.d_channels = 64  # D's and E's channels at S/2; doubled per lower level up to max_channels.
    model.max_channels = 512
    model.upsample = "nearest"  # Up-sampling in G's residual main path: nearest | subpixel | transpose.
    model.d_normalization = "none"  # batch | layer | none.
    model.spectral_norm = True  # Spectral norm on every D convolution and its logit layer.
    model.init_std = 0.0  # Flax's initialisers.
    model.dtype = "float32"  # float32 | bfloat16 (bf16 activations and matmuls; float32 params, norms and loss).
    return model


GAN_MODELS = {"dcgan": dcgan_model_config, "resdcgan": resdcgan_model_config}
# `:cpu` uses sub-pixel up-sampling for DCGAN: its weight gradient is about 10x faster than a transposed
# convolution's on XLA:CPU (BENCHMARKS.md, "GAN train steps").
GAN_SIZES = {
    "dcgan": {
        "quick": {"g_channels": 16, "d_channels": 16},
        "cpu": {"g_channels": 32, "d_channels": 32, "upsample": "subpixel"},
    },
    "resdcgan": {
        "quick": {"latent_dim": 64, "g_channels": 16, "d_channels": 16, "max_channels": 64},
        "cpu": {"latent_dim": 128, "g_channels": 32, "d_channels": 32, "max_channels": 128},
    },
}


def gan_config(method: str, arch: str, variant: str) -> ml_collections.ConfigDict:
    """A GAN method's config: the base groups, the GAN groups, and the `arch` family's networks at 64 px."""
    config = base_config()
    config.method = method
    _gan_groups(config)
    config.model = GAN_MODELS[arch]()
    _apply_variant(config, variant, GAN_SIZES[arch])
    return config


# --- diffusion ----------------------------------------------------------------------------------------------

DIFFUSION_SIZES = {
    # A small UNet at 32 px: about 1.4M parameters, attention at 16x16 and 8x8.
    "quick": {
        "base_channels": 32,
        "channel_multipliers": (1, 2, 2),
        "num_res_blocks": 1,
        "attention_resolutions": (8,),
        "num_groups": 8,
    },
    "cpu": {
        "base_channels": 32,
        "channel_multipliers": (1, 2, 2),
        "num_res_blocks": 2,
        "attention_resolutions": (16, 8),
        "num_groups": 8,
    },
    # 128 px: one more level, attention at 16x16 and 8x8.
    "128": {"channel_multipliers": (1, 1, 2, 3, 4), "attention_resolutions": (16, 8)},
}


def diffusion_config(variant: str) -> ml_collections.ConfigDict:
    """DDPM (Ho et al. 2020) with an attention UNet at 64 px; `:128`, `:quick` and `:cpu` variants."""
    config = base_config()
    config.method = "ddpm"
    config.model = model = ml_collections.ConfigDict()
    model.arch = "unet"  # animejax.models.DENOISER_ARCHS.
    model.base_channels = 128
    model.channel_multipliers = (1, 2, 3, 4)  # Per level, from full resolution down (64, 32, 16, 8 at 64 px).
    model.num_res_blocks = 2
    model.attention_resolutions = (16,)  # Feature-map sizes (pixels) with self-attention.
    model.dropout = 0.1
    model.num_groups = 32
    model.num_heads = 1
    model.dtype = "float32"  # float32 | bfloat16 (bf16 activations and matmuls; float32 params, norms and loss).

    config.diffusion = diffusion = ml_collections.ConfigDict()
    diffusion.schedule = "linear"  # linear (1e-4 to 0.02) | cosine (Nichol and Dhariwal).
    diffusion.num_timesteps = 1000
    diffusion.target = "epsilon"  # epsilon | v | x0: what the network predicts.
    diffusion.min_snr_gamma = 0.0  # Min-SNR-gamma loss weighting (Hang et al.: 5); 0 is Ho et al.'s plain MSE.
    diffusion.clip_x0 = True  # Clip the predicted x0 to [-1, 1] while sampling.

    config.optim.learning_rate = 2e-4
    config.optim.warmup_steps = 5_000
    config.optim.grad_clip_norm = 1.0
    config.ema.decay = 0.9999
    config.ema.warmup = True
    config.sample.sampler = "ddim"  # Previews and --mode=sample: ddpm | ddim | dpm_solver++.
    config.sample.sampler_steps = 100
    config.sample.eta = 0.0  # DDIM's stochasticity (0: deterministic).
    config.sample.sampler_rows = "ddpm:1000,ddim:100,ddim:20,dpm_solver++:20,dpm_solver++:10"
    config.sample.strip_rows = 4  # Images in the noising and denoising strips...
    config.sample.strip_columns = 10  # ...and their points in time.
    config.eval.sampler = "dpm_solver++"  # What metrics score (in-training FID included): few steps.
    config.eval.sampler_steps = 25
    if variant == "128":
        config.data.image_size = 128
    _apply_variant(config, variant, DIFFUSION_SIZES)
    if variant in ("quick", "cpu"):
        config.optim.learning_rate = 1e-3
        config.optim.warmup_steps = 100
        config.ema.decay = 0.999
        config.model.dropout = 0.0
        config.sample.sampler_steps = 20
        config.sample.sampler_rows = "ddim:50,ddim:20,dpm_solver++:20,dpm_solver++:10"
        config.eval.batch_size = 64
    if variant == "quick":  # About a minute on 2 CPU cores (the UNet step is slower than the other models').
        config.train.batch_size, config.train.num_steps = 16, 100
        config.train.log_every, config.train.sample_every, config.train.checkpoint_every = 25, 50, 50
        config.sample.grid_size = 4
    return config


# --- StyleGAN2 ----------------------------------------------------------------------------------------------

STYLEGAN2_SIZES = {
    # 32 px, narrow: seconds per step on 2 CPU cores.
    "quick": {"z_dim": 64, "w_dim": 64, "mapping_layers": 2, "channel_base": 1024, "channel_max": 64},
    "cpu": {"z_dim": 128, "w_dim": 128, "mapping_layers": 4, "channel_base": 2048, "channel_max": 128},
}


def stylegan2_config(variant: str) -> ml_collections.ConfigDict:
    """StyleGAN2 (Karras et al. 2020) at 64 px with stylegan2-ada-pytorch's losses; `:256`, `:quick`, `:cpu`."""
    config = base_config()
    config.method = "stylegan2"
    config.model = model = ml_collections.ConfigDict()
    model.arch = "stylegan2"  # animejax.models: the StyleGAN2 generator and resnet discriminator.
    model.z_dim = 512
    model.w_dim = 512
    model.mapping_layers = 8
    model.mapping_lr_multiplier = 0.01
    model.channel_base = 16384  # Channels at resolution r: min(channel_base // r, channel_max).
    model.channel_max = 512
    model.mbstd_group_size = 4  # The batch on each device must be divisible by min(this, batch).
    model.dtype = "float32"  # float32 | bfloat16 (bf16 convolutions; float32 params, styles, epilogue and loss).

    config.stylegan = style = ml_collections.ConfigDict()
    # The reference's "auto" config scales gamma with resolution and batch: 0.0002 * S^2 / B.
    style.r1_gamma = 0.0002 * 64**2 / 64
    style.r1_interval = 16  # Lazy R1 every this many steps (0: never).
    style.pl_weight = 2.0
    style.pl_interval = 4  # Lazy path-length regularisation every this many steps (0: never).
    style.pl_batch_shrink = 2
    style.pl_decay = 0.01
    # How R1 and the path length are differentiated: auto | losses.PENALTY_GRADIENTS (all exact).
    style.penalty_gradient = "auto"
    style.style_mixing = 0.9  # Probability of a second z from a random layer on.
    style.w_avg_beta = 0.995
    style.ema_kimg = 64 * 10 / 32  # Generator EMA half-life in thousands of images (the reference's auto rule).
    style.ema_rampup = 0.05  # Half-life at most images seen * ema_rampup (0 disables the ramp-up).
    style.augment = "ada"  # ada | diffaugment | none
    style.ada_pipeline = "bgc"  # ADA transforms: b(lit), g(eometric), c(olour) (methods/ada.py).
    style.ada_target = 0.6  # Target of E[sign D(real)] (0: p stays at ada_p_init).
    style.ada_interval = 4
    style.ada_kimg = 500.0  # Images (thousands) for p to move from 0 to 1.
    style.ada_p_init = 0.0
    style.diffaugment = "color,translation,cutout"  # DiffAugment policy when augment = diffaugment.
    # Blur of D's inputs fading out over the first images (the reference's StyleGAN3-R setting; 0 disables).
    style.blur_init_sigma = 0.0
    style.blur_fade_kimg = 0.0

    config.optim.learning_rate = 0.0025
    config.optim.b1 = 0.0
    config.optim.b2 = 0.99
    config.optim.eps = 1e-8
    config.optim_d = ml_collections.ConfigDict(config.optim.to_dict())
    config.sample.truncation_psi = 1.0
    config.sample.noise_mode = "const"  # const | random | none: per-pixel noise of samples.
    config.sample.interpolation = "slerp"
    config.sample.animation_frames = 24  # Frames of --mode=sample's interpolation GIFs (in z and in w).
    if variant == "256":
        config.data.image_size = 256
        model.channel_base = 32768
        style.r1_gamma = 0.0002 * 256**2 / 64
    _apply_variant(config, variant, STYLEGAN2_SIZES)
    if variant in ("quick", "cpu"):
        style.r1_gamma = 0.0002 * 32**2 / config.train.batch_size
        style.ema_kimg = config.train.batch_size * 10 / 32
        style.ada_kimg = 20.0  # p moves within a short run.
        config.optim.learning_rate = config.optim_d.learning_rate = 0.002
    return config


# --- StyleGAN3 ----------------------------------------------------------------------------------------------

STYLEGAN3_VARIANTS = ("t", "r", "256", "r_256", "quick", "r_quick", "cpu", "r_cpu")
STYLEGAN3_SIZES = {
    # 32 px, narrow, 6 layers: seconds per step on 2 CPU cores.
    "quick": {"z_dim": 64, "w_dim": 64, "channel_base": 1024, "channel_max": 64, "num_layers": 6},
    "cpu": {"z_dim": 128, "w_dim": 128, "channel_base": 2048, "channel_max": 128, "num_layers": 8},
}


def stylegan3_config(variant: str) -> ml_collections.ConfigDict:
    """StyleGAN3 (Karras et al. 2021) at 64 px on StyleGAN2's training stack, as NVlabs/stylegan3's configs.

    Variants: "t" (default) or "r" (StyleGAN3-R), optionally with "_256" (256 px), "_quick" or "_cpu".
    """
    rotation = variant == "r" or variant.startswith("r_")
    size = "" if variant in ("t", "r") else variant.removeprefix("r_")
    config = stylegan2_config(size)
    config.method = "stylegan3"
    model, style = config.model, config.stylegan
    model.arch = "stylegan3-r" if rotation else "stylegan3-t"  # models.stylegan3_networks; R: 1x1 convs, radial.
    model.mapping_layers = 2
    model.num_layers = 14  # Synthesis layers before ToRGB, at every resolution (the reference's default).
    model.num_critical = 2  # Critically sampled layers at the end.
    model.margin_size = 10  # Pixels computed outside the image on each side.
    model.magnitude_ema_kimg = 20.0  # Half-life of the layers' input-magnitude averages, thousands of images.
    model.conv_clamp = 256.0
    # The reference's StyleGAN3 loss settings: no path length, no style mixing; R blurs D's inputs at first.
    style.pl_weight = 0.0
    style.style_mixing = 0.0
    style.w_avg_beta = 0.998
    if rotation:
        style.blur_init_sigma = 10.0
        style.blur_fade_kimg = config.train.batch_size * 200 / 32
    for field, value in STYLEGAN3_SIZES.get(size, {}).items():
        model[field] = value
    if size in ("quick", "cpu") and rotation:
        style.blur_fade_kimg = config.train.batch_size * 5 / 32  # The blur fades within a short run.
    return config


# --- SRGAN --------------------------------------------------------------------------------------------------

SRGAN_SIZES = {
    # 24 -> 96 px (the shared faces' size) at 4x, a narrow SRResNet: a few steps a second on 2 CPU cores.
    "quick": {"channels": 16, "num_blocks": 2, "d_channels": 16},
    "cpu": {"channels": 32, "num_blocks": 2, "d_channels": 16},
}


def upscale_group() -> ml_collections.ConfigDict:
    """`config.upscale`: what `--mode=upscale` super-resolves and where it writes."""
    upscale = ml_collections.ConfigDict()
    upscale.input = ""  # An image file or a folder of images, upscaled as they are (or first downscaled, below).
    upscale.from_run = ""  # Or the workdir of a trained generator (any GAN, VAE or diffusion run): sample, upscale.
    upscale.num_images = 64  # Samples drawn from `from_run`.
    upscale.downscale_first = False  # Treat `input` images as originals: downscale them, upscale, compare.
    upscale.output_dir = ""  # Empty: <workdir>/upscaled.
    upscale.batch_size = 16  # Images of one size upscaled together.
    upscale.max_input_side = 1024  # Larger inputs are refused (the 4x output would not fit in memory).
    return upscale


def srgan_config(variant: str) -> ml_collections.ConfigDict:
    """SRGAN (Ledig et al. 2017): SRResNet pre-training on pixel MSE, then VGG content + adversarial, 64 -> 256 px."""
    config = base_config()
    config.method = "srgan"
    config.data.image_size = 256  # The high-resolution side; inputs are image_size / model.scale.
    config.data.holdout_images = 500
    config.data.random_flip = True
    config.model = model = ml_collections.ConfigDict()
    model.arch = "srresnet"  # animejax.models: SRResNet generator and the SRGAN discriminator.
    model.scale = 4  # 4 (two pixel-shuffle stages) or 8 (three).
    model.channels = 64
    model.num_blocks = 16
    model.d_channels = 64
    model.dtype = "float32"  # float32 | bfloat16 (bf16 activations and matmuls; float32 params, norms and loss).

    config.srgan = srgan = ml_collections.ConfigDict()
    srgan.pretrain_steps = 100_000  # Pixel-MSE steps (SRResNet) before the adversarial phase starts.
    srgan.content_loss = "vgg"  # vgg (VGG19 feature MSE) | pixel (MSE only: no weights file, offline).
    srgan.vgg_layer = "relu5_4"  # VGG54 of the paper; relu2_2 is its VGG22.
    srgan.vgg_path = ""  # Local vgg19-dcbb9e9d.pth (torchvision's); empty downloads it once.
    srgan.pixel_weight = 1.0  # Pixel MSE in the adversarial phase (the pre-training phase is pixel MSE alone).
    srgan.content_weight = 0.006  # VGG feature MSE: the paper's 1/12.75^2 rescaling of the features.
    srgan.adversarial_weight = 1e-3
    srgan.tv_weight = 0.0  # Total-variation penalty (e.g. 2e-8); 0 disables.
    srgan.crop_size = 0  # Random high-resolution crops of this side per example (0: the whole image).

    config.optim.learning_rate = 1e-4  # Adam 1e-4 as the paper, for G in both phases and for D.
    config.optim.b1 = 0.9
    config.optim_d = ml_collections.ConfigDict(config.optim.to_dict())
    config.train.num_steps = 200_000
    config.train.batch_size = 16  # The paper's 16 crops.
    config.sample.grid_size = 6  # Held-out images in the comparison grids.
    config.sample.num_individual = 500  # Upscaled held-out images written by --mode=sample.
    # FID/KID/SWD of upscaled held-out images against the training images (needs the Inception weights).
    config.eval.metrics = ("fid", "kid", "swd")
    config.eval.num_images = 500  # At most data.holdout_images.
    config.eval.batch_size = 50
    config.eval.kid_subset_size = 100
    config.upscale = upscale_group()
    if variant == "8x":
        config.data.image_size = 512
        model.scale = 8
    _apply_variant(config, variant, SRGAN_SIZES)
    if variant in ("quick", "cpu"):
        config.data.image_size = 96
        config.data.num_images = 2_048
        config.data.holdout_images = 64
        config.srgan.content_loss = "pixel"
        config.train.batch_size = 16
        config.sample.grid_size = 4
        config.sample.num_individual = 64
        config.eval.metrics = ("swd",)
        config.eval.num_images = config.eval.swd_num_images = 64
        config.eval.batch_size = 32
        config.eval.every_steps = 0
        config.optim.learning_rate, config.optim_d.learning_rate = 3e-3, 1e-3  # Small nets, short runs.
    if variant == "quick":
        config.train.num_steps, config.srgan.pretrain_steps = 60, 40
        config.train.log_every, config.train.sample_every, config.train.checkpoint_every = 10, 30, 20
    if variant == "cpu":  # About 10 minutes on 2 CPU cores.
        config.data.num_images = 10_000
        config.data.holdout_images = 256
        config.train.num_steps, config.srgan.pretrain_steps = 1_000, 700
        config.eval.num_images = config.eval.swd_num_images = 256
    return config
