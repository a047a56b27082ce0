"""The device mesh and the two shardings every train step uses.

A 1-D mesh with a `data` axis over all devices (of all processes): batches
are split on it, parameters and optimizer state are replicated.
"""

from __future__ import annotations

import dataclasses

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
    """Mesh over the first `num_devices` devices (all of them when 0)."""
    devices = jax.devices()
    if num_devices:
        if num_devices > len(devices):
            raise ValueError(f"mesh.num_devices={num_devices} but only {len(devices)} devices are visible.")
        devices = devices[:num_devices]
    mesh = Mesh(np.asarray(devices), ("data",))
    return MeshShardings(mesh, NamedSharding(mesh, PartitionSpec("data")), NamedSharding(mesh, PartitionSpec()))


def local_batch_size(global_batch: int, shardings: MeshShardings) -> int:
    """This process's share of the global batch; raises BatchSizeError if it cannot be split."""
    devices = shardings.num_devices
    if global_batch % devices:
        lower, upper = global_batch // devices * devices, -(-global_batch // devices) * devices
        raise BatchSizeError(
            f"train.batch_size={global_batch} cannot be split over {devices} devices; "
            f"use a multiple of {devices} (e.g. {lower or devices} or {upper})."
        )
    return global_batch // jax.process_count()


def global_batch(local_images: np.ndarray, shardings: MeshShardings) -> jax.Array:
    """Assembles each process's local batch into one array sharded on `data`."""
    return jax.make_array_from_process_local_data(shardings.data, local_images)
