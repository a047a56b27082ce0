"""The shared base config every file under `configs/` builds on.

Groups: data, train (batch, steps, logging and checkpoint cadence), optim,
ema, sample, eval, checkpoint, mesh. Model files add `config.model` and
`config.method` and override what differs.
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
    data.cache_dir = ""  # Decode cache; empty for ~/.cache/animejax/decoded.
    data.num_workers = 4  # Decoding threads for the cache build.
    data.loader_threads = 2  # Background threads that gather batches.
    data.prefetch = 4  # Batches prepared ahead of the device.

    config.train = train = ml_collections.ConfigDict()
    train.batch_size = 64  # Global batch over all devices and processes.
    train.num_steps = 20_000
    train.log_every = 100
    train.sample_every = 1_000  # Sample/reconstruction grids (TensorBoard and PNG).
    train.checkpoint_every = 1_000

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

    config.eval = evaluation = ml_collections.ConfigDict()
    # --mode=eval: sample-quality metrics of the (EMA) generator against the configured dataset.
    evaluation.metrics = ("fid", "kid", "swd", "detection")
    evaluation.num_images = 50_000  # Generated images for FID/KID, as in the papers.
    evaluation.reference_images = 0  # Real images behind the FID reference statistics; 0 = the whole dataset.
    evaluation.batch_size = 250  # Global; split over the devices.
    evaluation.fid_resize = "pytorch_fid"  # pytorch_fid (bilinear, as pytorch-fid) | clean (clean-fid's antialias).
    evaluation.inception_path = ""  # Local pt_inception-2015-12-05-6726825d.pth; empty downloads it once.
    evaluation.weights_cache_dir = ""  # Empty: ~/.cache/animejax/weights.
    evaluation.stats_cache_dir = ""  # Reference statistics; empty: ~/.cache/animejax/fid_stats.
    evaluation.reference_stats = ""  # An npz with mu/sigma (pytorch-fid's format) to use instead of the dataset's.
    evaluation.kid_num_images = 10_000  # Features per set kept for KID.
    evaluation.kid_subsets = 100
    evaluation.kid_subset_size = 1_000
    evaluation.swd_num_images = 10_000
    evaluation.detection_num_images = 1_000  # As the StyleGAN2 seed project (rate 0.697).
    evaluation.detector_path = ""  # Local lbpcascade_animeface.xml; empty downloads it once.
    evaluation.detector_scale_factor = 1.1
    evaluation.detector_min_neighbors = 3
    evaluation.detector_min_size = 24
    # During training: metrics every `every_steps` (0 = never) on fewer samples, and a best checkpoint.
    evaluation.every_steps = 0
    evaluation.train_metrics = ("fid", "swd")
    evaluation.train_num_images = 10_000
    evaluation.best_metric = "fid"  # Lower is better; the best checkpoint is kept under workdir/best.
    # Reconstruction/loss evaluation on training images (autoencoder, VAE).
    evaluation.loss_num_images = 2_048

    config.checkpoint = ckpt = ml_collections.ConfigDict()
    ckpt.max_to_keep = 3

    config.mesh = mesh = ml_collections.ConfigDict()
    mesh.num_devices = 0  # 0 uses every device; otherwise the first n.
    return config


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
    config.eval.num_images = config.eval.swd_num_images = 2_048
    config.eval.every_steps = 1_000
    config.eval.train_num_images = 1_024
    return config


def check_variant(variant: str, known: tuple[str, ...], path: str) -> None:
    """Raises a clear error for a `configs/x.py:variant` that the file does not define."""
    if variant and variant not in known:
        raise ConfigError(f"Unknown variant {variant!r} for {path}; choose one of {', '.join(known)} or none.")
