"""Loop callbacks that watch training scalars: the GAN stall warning."""

from __future__ import annotations

from typing import Mapping

from absl import logging

from animejax.methods.base import LoopCallback


class StallMonitor(LoopCallback):
    """Warns when the discriminator has won outright for `patience` consecutive logs.

    A DCGAN trained long on a small set stalls this way: D(real) near 1 and D(fake) near 0, so the generator's
    gradient vanishes. The warning repeats every `patience` stalled logs.

    Args:
      d_real_above, d_fake_below: the stall thresholds on mean D(real) and D(fake) (probabilities).
      patience: consecutive stalled logs before warning; 0 disables.
    """

    def __init__(self, d_real_above: float, d_fake_below: float, patience: int):
        self.d_real_above = d_real_above
        self.d_fake_below = d_fake_below
        self.patience = patience
        self._stalled_logs, self._stalled_since = 0, None

    def on_log(self, step: int, scalars: Mapping[str, float]) -> None:
        if not self.patience or "train/d_fake" not in scalars:
            return
        d_real, d_fake = scalars["train/d_real"], scalars["train/d_fake"]
        if not (d_fake < self.d_fake_below and d_real > self.d_real_above):
            self._stalled_logs, self._stalled_since = 0, None
            return
        self._stalled_logs += 1
        self._stalled_since = self._stalled_since or step
        if self._stalled_logs % self.patience == 0:
            logging.warning(
                "GAN stall: the discriminator has won outright for %d consecutive logs (since step %d; now "
                "D(real)=%.3f, D(fake)=%.3f), so the generator gets almost no gradient. Consider "
                "--config.gan.diffaugment=color,translation,cutout, a lower optim_d.learning_rate, or resuming "
                "from an earlier checkpoint.",
                self._stalled_logs,
                self._stalled_since,
                d_real,
                d_fake,
            )
