import pytest
import torch

from tests.fixtures.flame_fixtures import full_flame_assets, tiny_flame_assets  # noqa: F401


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Small renders are op-overhead bound; one thread avoids contention on a shared CPU."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
