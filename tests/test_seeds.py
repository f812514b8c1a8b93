"""`estimators.seeds.host_seeds`: the CPU draw the estimators always made; on CUDA, seeds that
follow the generator's state and a forward-gradient or SPSA step that waits for no device
result (beyond SPSA's one documented read of its slopes)."""

from __future__ import annotations

import pytest
import torch

from estimators import make_estimator
from estimators.seeds import host_seeds
from tasks import get_task
from tasks.data import DataSource


def test_cpu_seeds_are_torch_randint_draws() -> None:
    a, b = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    assert host_seeds(a, 3) == torch.randint(2**62, (3,), generator=b).tolist()
    assert host_seeds(a, 1) == torch.randint(2**62, (1,), generator=b).tolist()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_seeds_follow_the_generator_and_a_step_never_syncs() -> None:
    """Under `torch.cuda.set_sync_debug_mode("error")` any synchronising call raises."""
    task = get_task("mlp-diabetes")
    data = task.load(DataSource())
    batch = (data.x_train[:8].cuda(), data.y_train[:8].cuda())
    torch.manual_seed(0)
    estimator = make_estimator("fg-weight").bind(task.model().cuda(), task.loss)
    a, b = (torch.Generator(device="cuda").manual_seed(7) for _ in range(2))
    torch.cuda.set_sync_debug_mode("error")
    try:
        first = host_seeds(a, 2)
        assert first == host_seeds(b, 2) and host_seeds(a, 2) != first
        estimator.estimate(batch, a)
    finally:
        torch.cuda.set_sync_debug_mode("default")
