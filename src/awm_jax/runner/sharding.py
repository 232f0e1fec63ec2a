"""Laying the seed axis over every device: a 1-D `Mesh` named "seeds" and `NamedSharding` (no pmap).

Seeds are independent, so the compiled program has no cross-device communication: each device runs
its block of seeds. A seed count that does not divide the device count is padded (by repeating the
first seed's inputs) and the padding is dropped from the results, so the caller never sees it.

How the seeds of one device are computed is `seed_map`'s choice: vmapped together (the default, and the
only way on several devices), or, with a seed batch, in groups one after another inside the same program
(`jax.lax.map`). On a single CPU device the transformer world models run one seed at a time: XLA CPU's
library fusions (jaxlib 0.10.2) of the attention softmax's backward and of the layer norms run 1.6-2.7x
slower once a leading seed axis is added, and one seed already keeps both cores busy.

Several hosts: call `init_distributed()` first (coordinator address, process count and id from the
arguments or the usual cluster environment variables, as `jax.distributed.initialize` reads them);
every process then builds the same global mesh, feeds its own block of seeds with
`jax.make_array_from_process_local_data`, and `gather` brings results back to every process.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from awm_jax.core.methods import REGISTRY
from awm_jax.runner import xla_cpu


def init_distributed(coordinator_address: str | None = None, num_processes: int | None = None,
                     process_id: int | None = None, local_device_ids=None) -> None:
    """Start multi-host JAX (a no-op when already started); arguments left None are read from the
    cluster environment by `jax.distributed.initialize`."""
    kw = {k: v for k, v in dict(coordinator_address=coordinator_address, num_processes=num_processes,
                               process_id=process_id, local_device_ids=local_device_ids).items() if v is not None}
    jax.distributed.initialize(**kw)


def seed_map(fn, batch: int | None = None):
    """fn over the leading seed axis of its arguments (and of its outputs): `jax.vmap(fn)` when batch is None,
    else groups of `batch` seeds vmapped together and the groups run one after another (`jax.lax.map`);
    batch 1 runs each seed as the unbatched program (no leading axis at all). The same values, to float32
    rounding (XLA CPU rounds batched programs differently)."""
    if batch is None:
        return jax.vmap(fn)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"seed batch must be a positive integer or None, got {batch!r}")
    return lambda *args: jax.lax.map(lambda a: fn(*a), args, batch_size=None if batch == 1 else batch)


def parse_seed_batch(text: str):
    """A command line's --seed-batch: "auto" stays "auto", "all" is None (vmapped), "N" the integer N >= 1."""
    if text in ("auto", "all"):
        return None if text == "all" else text
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"--seed-batch must be auto, all or a positive integer, got {text!r}")
    return int(text)


def default_seed_batch(method: str, devices: int) -> int | None:
    """The seed batch runs use unless told: the method's `cpu_seed_batch` on a single CPU device, else None."""
    return REGISTRY[method].cpu_seed_batch if devices == 1 and jax.default_backend() == "cpu" else None


def _read_lines(path) -> list[str]:
    try:
        with open(path) as f:
            return f.readlines()
    except OSError:  # not Linux
        return []


@dataclasses.dataclass(frozen=True)
class SeedSharding:
    seeds: int  # real seeds
    padded: int  # seeds after padding to a multiple of the device count
    mesh: Mesh | None  # None: one device, plain jit

    @classmethod
    def create(cls, seeds: int, devices=None) -> SeedSharding:
        """Shard `seeds` over `devices` (default: every device of every process)."""
        devices = list(jax.devices() if devices is None else devices)
        if len(devices) == 1:
            return cls.single(seeds)
        padded = math.ceil(seeds / len(devices)) * len(devices)
        return cls(seeds, padded, Mesh(np.array(devices), ("seeds",)))

    @classmethod
    def single(cls, seeds: int) -> SeedSharding:
        return cls(seeds, seeds, None)

    @property
    def sharding(self):
        return NamedSharding(self.mesh, PartitionSpec("seeds")) if self.mesh is not None else None

    def machine(self) -> dict:
        """Where the program runs, for the run's metrics.json: the platform, the devices' kind and number,
        and the host's CPU model and core count (what a CPU time depends on)."""
        import os

        devices = [jax.devices()[0]] if self.mesh is None else list(self.mesh.devices.flat)
        model = next((line.split(":", 1)[1].strip() for line in _read_lines("/proc/cpuinfo")
                      if line.startswith("model name")), None)
        return dict(platform=devices[0].platform, device_kind=devices[0].device_kind, devices=len(devices),
                    processes=jax.process_count(), cpu_model=model, cpu_count=os.cpu_count())

    def describe(self) -> str:
        if self.mesh is None:
            return f"1 device ({jax.devices()[0].platform})"
        pad = f", padded to {self.padded}" if self.padded != self.seeds else ""
        platform = jax.devices()[0].platform
        return f"{self.mesh.devices.size} devices ({platform}) over {jax.process_count()} process(es){pad}"

    def pad(self, x):
        """[seeds, ...] -> [padded, ...] by repeating row 0 (results of the padding are dropped)."""
        def one(a):
            a = np.asarray(a)
            if a.shape[0] == self.padded:
                return a
            return np.concatenate([a, np.repeat(a[:1], self.padded - a.shape[0], axis=0)])

        return jax.tree.map(one, x)

    def unpad(self, tree, seeds: int | None = None):
        n = self.seeds if seeds is None else seeds
        return jax.tree.map(lambda a: a[:n], tree)

    def put(self, tree):
        """Place arrays with a leading (padded) seed axis on the mesh, each process its own block."""
        if self.mesh is None:
            return tree
        sh = self.sharding
        if jax.process_count() == 1:
            return jax.device_put(tree, sh)
        lo, hi = self.local_range()

        def one(a):
            if isinstance(a, jax.Array) and not a.is_fully_addressable:
                return a  # already a global array
            a = np.asarray(a)
            return jax.make_array_from_process_local_data(sh, a[lo:hi], a.shape)

        return jax.tree.map(one, tree)

    def local_range(self) -> tuple[int, int]:
        """This process's block [lo, hi) of the padded seed axis."""
        per = self.padded // jax.process_count()
        return jax.process_index() * per, (jax.process_index() + 1) * per

    def compile(self, fn, *args):
        """AOT-compile `fn` with every input and output sharded along the seed axis."""
        if self.mesh is None:
            return xla_cpu.compile(jax.jit(fn).lower(*args))
        compiled = xla_cpu.compile(jax.jit(fn, in_shardings=self.sharding, out_shardings=self.sharding).lower(
            *self.put(args)))
        run = lambda *a: compiled(*self.put(a))
        run.memory_analysis = compiled.memory_analysis  # as a jax Compiled has it (benchmarks read it)
        return run

    def gather(self, tree):
        """Every seed's values as numpy on this process (all processes take part)."""
        if self.mesh is None or jax.process_count() == 1:
            return jax.tree.map(np.asarray, tree)
        from jax.experimental import multihost_utils

        return jax.tree.map(np.asarray, multihost_utils.process_allgather(tree, tiled=True))
