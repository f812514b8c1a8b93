"""Seeds for the host, drawn from an estimator's generator without waiting for the device.

An estimator that regenerates its random directions from integer seeds (forward gradients'
`SeededDirections`, SPSA's `z(seed)`) needs the seeds as Python ints. Drawing them with
`torch.randint` on a CUDA generator and reading them back (`.item()`, `.tolist()`) waits for
every kernel queued before it: a host synchronisation in each step, which a timed step would
count and which stalls the queue. `host_seeds` reads nothing from the device:

- CPU generator: `torch.randint(2**62, (count,), generator=generator).tolist()`, exactly the
  draw the estimators always made (so CPU numbers are unchanged);
- CUDA generator: a CPU generator seeded from a hash of the CUDA generator's state (Philox seed
  and offset, which PyTorch keeps on the host), and the CUDA generator advanced by one queued
  draw, so the next call differs. Same generator state, same seeds; it does not reproduce the
  values a CUDA `torch.randint` would have given.
"""

from __future__ import annotations

import hashlib

import torch

SEED_RANGE = 2**62


def host_seeds(generator: torch.Generator, count: int) -> list[int]:
    """`count` seeds in [0, 2**62) from `generator`, as Python ints, without a device sync."""
    if generator.device.type == "cpu":
        return torch.randint(SEED_RANGE, (count,), generator=generator).tolist()
    state = generator.get_state()  # a CPU tensor: the generator's host-side seed and offset
    torch.empty(1, device=generator.device).uniform_(generator=generator)  # advance, queued
    digest = hashlib.blake2b(state.numpy().tobytes(), digest_size=8).digest()
    host = torch.Generator().manual_seed(int.from_bytes(digest, "little") >> 1)
    return torch.randint(SEED_RANGE, (count,), generator=host).tolist()
