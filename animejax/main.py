"""Command line: `python -m animejax.main --config=configs/vae.py --workdir=runs/vae [--mode=MODE]`.

Modes: train, sample, eval, upscale (SRGAN runs), compare (several runs, one report:
`--mode=compare --runs='runs/*' --out=reports/cmp`).

Any config field can be overridden with `--config.a.b=value`. For sample and
eval (and upscale), `--config` may be left out: the run's saved config.json is used, and
overrides apply on top of it. A run stopped by SIGTERM or SIGINT saves a
checkpoint and exits with status 75 (`train.INTERRUPTED_EXIT_CODE`).

Several processes (`--distributed` on SLURM or Cloud TPU, or `--coordinator_address`,
`--num_processes` and `--process_id` together) form one run; when one of them dies the
others exit with status 69 (`multihost.LOST_PROCESS_EXIT_CODE`).
"""

from __future__ import annotations

import importlib.util
import logging as std_logging
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from animejax import compilation_cache, saved_config, storage, xla_flags

MODES = ("train", "sample", "eval", "upscale", "compare")

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config",
    None,
    "A packaged config by name (vae, vae:quick, ddpm:cpu, ...) or a config file path (configs/vae.py:quick).",
    lock_config=True,
)
flags.DEFINE_string(
    "workdir", None, "Directory for checkpoints, TensorBoard events and samples: a local path or a gs:// URL."
)
flags.DEFINE_enum("mode", "train", MODES, "What to do with the run in --workdir.")
flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() (auto-detects SLURM, Cloud TPU, ...).")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0, for explicit multi-process runs.")
flags.DEFINE_integer("num_processes", None, "Number of processes, with --coordinator_address.")
flags.DEFINE_integer("process_id", None, "This process's index, with --coordinator_address.")
# --mode=compare (animejax/report): no --workdir; --config defaults to animejax/report/settings.py.
flags.DEFINE_string(
    "runs",
    None,
    "--mode=compare: the run workdirs to compare, comma-separated paths, URLs or globs (quote them: 'runs/*').",
)
flags.DEFINE_string("out", None, "--mode=compare: folder (or bucket URL) for report.md, report.html and the PNGs.")
flags.DEFINE_enum(
    "checkpoint",
    "best",
    ("best", "latest"),
    "--mode=compare: evaluate each run's best checkpoint (workdir/best, else its latest, said so) or its latest.",
)
flags.DEFINE_float(
    "distributed_timeout_s",
    60,
    "Runs of several processes: a process silent this long counts as dead and the others stop (one that exits "
    "or is killed is noticed at once).",
)
flags.DEFINE_string(
    "compilation_cache",
    os.environ.get(compilation_cache.ENVIRONMENT_VARIABLE, ""),
    "Folder of XLA's persistent compilation cache: a resumed run and later processes load the programs an earlier "
    f"one compiled. Empty: {compilation_cache.default_dir()}; none: compile every program anew.",
)


def _load_config(workdir: str):
    if FLAGS.config is not None:
        return split_comma_lists(FLAGS.config)
    path = storage.join(workdir, "config.json")
    if FLAGS.mode == "train" or not storage.as_path(path).exists():
        raise app.UsageError(f"--config is required (no saved config at {path}).")
    raise app.UsageError(f"could not read the saved config {path}.")


def split_comma_lists(config):
    """`--config.eval.metrics=fid,kid` gives the tuple ("fid,kid") (ml_collections parses only a Python literal
    into a tuple): split each such one-string tuple at its commas, as the help and README write these lists."""
    for key, value in config.items():
        if hasattr(value, "items"):
            split_comma_lists(value)
        elif isinstance(value, tuple) and len(value) == 1 and isinstance(value[0], str) and "," in value[0]:
            config[key] = tuple(part.strip() for part in value[0].split(",") if part.strip())
    return config


def _flag_value(argv: list[str], name: str) -> str | None:
    """The value of `--name=value` or `--name value` in argv, or None."""
    for i, arg in enumerate(argv):
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1]
        if arg == f"--{name}" and i + 1 < len(argv):
            return argv[i + 1]
    return None


def _with_saved_config(argv: list[str]) -> list[str]:
    """For sample/eval without --config, points --config at the workdir's saved config (overrides then apply)."""
    if _flag_value(argv, "config") is not None or _flag_value(argv, "mode") not in ("sample", "eval", "upscale"):
        return argv
    workdir = _flag_value(argv, "workdir")
    if not workdir or not storage.as_path(storage.join(workdir, "config.json")).exists():
        return argv
    return [argv[0], f"--config={saved_config.__file__}:{workdir}", *argv[1:]]


class _QuietLibraries:
    """Drops INFO records of chatty libraries (Orbax logs every save in detail)."""

    QUIET = ("/orbax/", "/jax/_src/", "/grain/")

    def filter(self, record) -> bool:
        return record.levelno >= std_logging.WARNING or not any(q in record.pathname for q in self.QUIET)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    if FLAGS.mode == "compare":
        if not FLAGS.runs or not FLAGS.out:
            raise app.UsageError("--mode=compare needs --runs (paths or globs) and --out (the report's folder).")
    elif not FLAGS.workdir:
        raise app.UsageError("--workdir is required.")
    config = _load_config(FLAGS.workdir)
    logging.get_absl_handler().addFilter(_QuietLibraries())
    xla_flags.set_defaults()
    import jax

    from animejax import multihost
    from animejax.errors import UserError

    try:
        compilation_cache.enable(FLAGS.compilation_cache)
    except UserError as error:
        sys.exit(f"animejax: error: {error}")

    explicit = (FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
    if FLAGS.distributed or any(value is not None for value in explicit):
        try:
            multihost.initialize(
                FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id, FLAGS.distributed_timeout_s
            )
        except multihost.FlagError as error:
            sys.exit(f"animejax: error: {error}")
    logging.info("JAX devices: %s (process %d of %d)", jax.devices(), jax.process_index(), jax.process_count())
    try:
        _run_mode(config)
    except BaseException as error:
        # Several processes: a failing one leaves at once, and the others stop with it instead of waiting.
        multihost.leave(error)
        raise
    multihost.finish()


def _run_mode(config) -> None:
    """Runs FLAGS.mode; exits 75 when training stopped on a signal, 1 with one line for a user error."""
    from animejax import inference, multihost, train
    from animejax.errors import UserError

    try:
        if FLAGS.mode == "train":
            train.train_and_evaluate(config, FLAGS.workdir)
        elif FLAGS.mode == "sample":
            inference.sample(config, FLAGS.workdir)
        elif FLAGS.mode == "upscale":
            from animejax import upscale

            upscale.upscale(config, FLAGS.workdir)
        elif FLAGS.mode == "compare":
            from animejax import report

            report.run(config, FLAGS.runs, FLAGS.out, FLAGS.checkpoint)
        else:
            inference.evaluate(config, FLAGS.workdir)
    except train.Interrupted as interrupted:
        logging.warning("%s", interrupted)
        # Every process stopped at the same step and saved it together: an orderly end, not a failure.
        multihost.finish()
        sys.exit(train.INTERRUPTED_EXIT_CODE)
    except UserError as error:
        sys.exit(f"animejax: error: {error}")


def _unknown_field_message(argv: list[str]) -> str | None:
    """Names the first `--config.a.b=...` override whose field the config file lacks, with valid choices."""
    config_arg = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
    if config_arg is None:
        return None
    path, _, variant = config_arg.partition(":")
    spec = importlib.util.spec_from_file_location("_animejax_user_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config(variant) if variant else module.get_config()
    for arg in argv:
        if not arg.startswith("--config.") or "=" not in arg:
            continue
        node, walked = config, []
        for part in arg[len("--config.") :].split("=", 1)[0].split("."):
            if not hasattr(node, "keys") or part not in node:
                choices = ", ".join(sorted(node.keys())) if hasattr(node, "keys") else "none (not a group)"
                where = ".".join(walked) or "the top level"
                return f"{arg}: {config_arg} has no field {part!r} in {where}; valid fields there: {choices}."
            node, walked = node[part], walked + [part]
    return None


def _parse_flags(argv: list[str]) -> list[str]:
    """absl flag parsing, turning an unknown config field into one clear message."""
    try:
        return FLAGS(argv)
    except (AttributeError, KeyError) as error:
        message = _unknown_field_message(argv) or f"bad --config override: {error}"
        sys.exit(f"animejax: error: {message}")
    except flags.IllegalFlagValueError as error:  # E.g. --config.train.batch_size=abc, or an unknown variant.
        sys.exit(f"animejax: error: {_config_file_error(error) or str(error).removeprefix('flag ')}")


def _config_file_error(error: BaseException) -> str | None:
    """The message of the ConfigError a config file's get_config raised (an unknown variant), if that is the cause.

    ml_collections re-raises it with the traceback in its text; the original is the innermost ConfigError. Any other
    error of a config file (a bug in a user's own) keeps its traceback.
    """
    from animejax.errors import ConfigError

    found = None
    while error is not None:
        if isinstance(error, ConfigError):
            found = error
        error = error.__context__
    return None if found is None else str(found)


HELP_FLAGS = ("--help", "-h", "--helpshort", "-?")


def usage() -> str:
    """The flags, the modes and the packaged model configs (for --help, from `python -m` or the console script)."""
    from animejax import configs

    lines = [
        "Train, sample and evaluate generative models of anime faces.",
        "",
        "usage: animejax --config=NAME[:VARIANT] --workdir=DIR [--mode=MODE] [--config.a.b=value ...]",
        "",
        "modes:",
        "  train   train until config.train.num_steps, resuming from --workdir (exit 75 when stopped by a signal)",
        "  sample  write sample grids and single PNGs of the latest checkpoint (--config may be left out)",
        "  eval    score the latest checkpoint with config.eval.metrics (--config may be left out)",
        "  upscale super-resolve config.upscale.input (an image or folder), or samples of config.upscale.from_run,",
        "          with the SRGAN run in --workdir",
        "  compare evaluate every run of --runs (paths or globs) with the same settings and write report.md,",
        "          report.html and plots under --out; --config.eval.* overrides the shared evaluation",
        "",
        "model configs (variants :quick and :cpu for CPUs; ddpm also :128, stylegan2 :256, srgan :8x):",
        *(f"  {name:16s}{summary}" for name, summary in configs.available().items()),
        "",
        "flags:",
        FLAGS.module_help(sys.modules[__name__]),
    ]
    return "\n".join(lines)


def _resolve_config_name(argv: list[str]) -> list[str]:
    """`--config=vae:quick` -> the packaged file's path; paths are kept as they are."""
    from animejax import configs

    out = list(argv)
    for i, arg in enumerate(out):
        if arg.startswith("--config="):
            try:
                out[i] = "--config=" + configs.resolve(arg.split("=", 1)[1])
            except ValueError as error:
                sys.exit(f"animejax: error: {error}")
    return out


def _with_compare_config(argv: list[str]) -> list[str]:
    """For --mode=compare without --config, the compare settings file (overrides then apply to it)."""
    if _flag_value(argv, "mode") != "compare" or _flag_value(argv, "config") is not None:
        return argv
    from animejax.report import settings

    return [argv[0], f"--config={settings.__file__}", *argv[1:]]


def run() -> None:
    """Console-script entry point (`animejax ...`), also used by `python -m animejax.main`."""
    if any(arg in HELP_FLAGS for arg in sys.argv[1:]):
        print(usage())
        sys.exit(0)
    argv = _with_compare_config(_with_saved_config(_resolve_config_name(sys.argv)))
    app.run(main, argv=argv, flags_parser=_parse_flags)


if __name__ == "__main__":
    run()
