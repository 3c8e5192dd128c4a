"""Explicit uniform sampling: training timesteps stratified over the *global* batch.

With ``G`` samples in one optimisation step across all ranks, ``[0, T)`` is cut into ``G`` equal
slices and every sample draws from its own slice, so each step covers the whole noise range
(CogVideoX, section 3.3: it makes the loss curve far less noisy than i.i.d. uniform draws).

Which slice a sample gets is a random permutation that every rank draws identically (its generator
is seeded from ``(seed, step)`` only), so samples are not tied to a slice by their position in the
batch; the jitter inside a slice is drawn the same way. Rank ``r`` with ``n_r`` samples takes the
global indices ``[sum(n_<r), sum(n_<r) + n_r)``: ``rank * local_batch + i`` when batches are equal;
Frame Pack batches differ in size, so the per-rank counts are gathered first (see :func:`gather_counts`).
"""

from __future__ import annotations

import torch


def step_generator(seed: int, step: int, rank: int | None = None, salt: int = 0) -> torch.Generator:
    """A CPU generator determined by ``(seed, step[, rank], salt)``: no hidden RNG state, so a resumed
    run draws exactly what the uninterrupted run drew."""
    parts = (seed, step, -1 if rank is None else rank, salt)
    value = 0
    for p in parts:  # a fixed mix (Python's hash() is salted per process for strings, not for ints,
        value = (value * 1_000_003 + int(p) + 0x9E3779B9) % (2**63 - 1)  # but keep it explicit)
    return torch.Generator(device="cpu").manual_seed(value)


def stratified_unit(counts: list[int], rank: int, generator: torch.Generator) -> torch.Tensor:
    """This rank's values in ``[0, 1)``: ``(slice + jitter) / G`` for its samples' slices.

    ``counts[r]`` is the number of samples rank ``r`` has this step; ``generator`` must be seeded
    identically on every rank. Returns ``(counts[rank],)`` float64.
    """
    if not 0 <= rank < len(counts):
        raise ValueError(f"rank {rank} outside the {len(counts)} ranks given")
    if any(c < 0 for c in counts):
        raise ValueError(f"counts must be >= 0, got {counts}")
    total = sum(counts)
    if total == 0:
        return torch.zeros(0, dtype=torch.float64)
    slices = torch.randperm(total, generator=generator)
    jitter = torch.rand(total, generator=generator, dtype=torch.float64)
    start = sum(counts[:rank])
    mine = slice(start, start + counts[rank])
    return (slices[mine].double() + jitter[mine]) / total


def stratified_timesteps(counts: list[int], rank: int, num_timesteps: int, generator: torch.Generator) -> torch.Tensor:
    """Integer DDPM timesteps in ``[0, num_timesteps)``, one slice of ``[0, T)`` per global sample."""
    u = stratified_unit(counts, rank, generator)
    return (u * num_timesteps).floor().long().clamp_(0, num_timesteps - 1)


def iid_timesteps(n: int, num_timesteps: int, generator: torch.Generator) -> torch.Tensor:
    """The reference fine-tuning's sampling (``torch.randint(0, T, (n,))``), for comparison."""
    return torch.randint(0, num_timesteps, (n,), generator=generator)


def gather_counts(local: int) -> tuple[list[int], int]:
    """``(counts per rank, this rank)``: an all-gather of one integer when torch.distributed is up."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [local], 0
    backend = dist.get_backend()
    device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
    mine = torch.tensor([local], dtype=torch.long, device=device)
    out = [torch.zeros_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(out, mine)
    return [int(t.item()) for t in out], dist.get_rank()
