"""The device mesh and the two shardings every train step uses.

A 1-D mesh with a `data` axis over all devices (of all processes): batches
are split on it, parameters and optimizer state are replicated.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from animejax.errors import UserError


class BatchSizeError(UserError, ValueError):
    """A global batch that cannot be split evenly over the devices."""


@dataclasses.dataclass(frozen=True)
class MeshShardings:
    mesh: Mesh
    data: NamedSharding  # Leading (batch) axis split over `data`.
    replicated: NamedSharding

    @property
    def num_devices(self) -> int:
        return self.mesh.devices.size


def make_mesh(num_devices: int = 0) -> MeshShardings:
    """Mesh over the first `num_devices` devices (all of them when 0).

    With several processes, each process brings the same number of devices: its first `num_devices / processes`
    (a process outside the mesh, or one with a larger share, could not feed its part of every batch).
    """
    devices, processes = jax.devices(), jax.process_count()
    if num_devices > len(devices):
        raise ValueError(f"mesh.num_devices={num_devices} but only {len(devices)} devices are visible.")
    if processes > 1:
        by_process = [[d for d in devices if d.process_index == p] for p in range(processes)]
        counts = [len(local) for local in by_process]
        per_process = num_devices // processes if num_devices else counts[0]
        if num_devices % processes or (not num_devices and len(set(counts)) > 1) or min(counts) < per_process:
            raise ValueError(
                f"mesh.num_devices={num_devices} cannot be split evenly over {processes} processes with "
                f"{', '.join(map(str, counts))} devices; use a multiple of {processes} that each process has."
            )
        devices = [d for local in by_process for d in local[:per_process]]
    elif num_devices:
        devices = devices[:num_devices]
    mesh = Mesh(np.asarray(devices), ("data",))
    return MeshShardings(mesh, NamedSharding(mesh, PartitionSpec("data")), NamedSharding(mesh, PartitionSpec()))


def local_batch_size(global_batch: int, shardings: MeshShardings, what: str = "train.batch_size") -> int:
    """This process's share of the global batch; raises BatchSizeError if the devices or processes cannot split it.

    Args:
      global_batch: the batch over all devices of all processes.
      shardings: the run's mesh; every process holds the same number of its devices (make_mesh).
      what: the config field named in the error.
    """
    devices, processes = shardings.num_devices, jax.process_count()
    if global_batch % devices or global_batch % processes:
        step = math.lcm(devices, processes)
        nearest = sorted({global_batch // step * step, -(-global_batch // step) * step} - {0})
        where = f"{devices} devices" + (f" in {processes} processes" if processes > 1 else "")
        raise BatchSizeError(
            f"{what}={global_batch} cannot be split over {where}; "
            f"use a multiple of {step} (e.g. {' or '.join(map(str, nearest))})."
        )
    return global_batch // processes


def global_batch(local_images: np.ndarray, shardings: MeshShardings) -> jax.Array:
    """Assembles each process's local batch into one array sharded on `data`."""
    return jax.make_array_from_process_local_data(shardings.data, local_images)
