"""Fixtures shared by the whole suite: where the shared real data lies, and tiny generator weights."""
from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO.parent / "shared" / "data").resolve()


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """pytest-xdist runs one worker per core: a single torch thread each avoids oversubscribing the CPU."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True, scope="session")
def _runtime_cache(tmp_path_factory):
    """Exported runtime graphs and ``auto`` choices go to a temporary folder, not the user's cache (subprocesses
    inherit the variable)."""
    import os

    old = os.environ.get("BRAINSR_RUNTIME_CACHE")
    os.environ["BRAINSR_RUNTIME_CACHE"] = str(tmp_path_factory.mktemp("runtime-cache"))
    yield
    if old is None:
        os.environ.pop("BRAINSR_RUNTIME_CACHE", None)
    else:
        os.environ["BRAINSR_RUNTIME_CACHE"] = old


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA} (it lies beside the repository on project machines)")
    return SHARED_DATA


def make_tiny_weights(directory: Path, scale: int = 2, arch: str = "srresnet_lite", seed: int = 0,
                      **extra) -> Path:
    """Write randomly initialised tiny weights with a valid card; the residual branch is perturbed so the
    output differs from bicubic (a real network would)."""
    import torch

    from srgan.models import GENERATORS, build_generator
    from srgan.models.weights import save_weights

    torch.manual_seed(seed)
    kwargs = {**GENERATORS[arch].TINY, "scale": scale, **extra}
    model = build_generator(arch, **kwargs)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
        if getattr(model, "kind", None) is not None:  # an LR-kind detector whose answer depends on the input
            model.kind.weight.copy_(0.05 * torch.randn_like(model.kind.weight))
            model.kind.fitted.fill_(1)
    return save_weights(directory / f"tiny-x{scale}", model, {"arch": arch, "kwargs": kwargs, "kind": "fidelity",
                                                              "name": f"tiny-x{scale}"})


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    """Path of tiny ×2 weights (``.safetensors`` with its JSON card beside it)."""
    return make_tiny_weights(tmp_path_factory.mktemp("weights"), 2)


@pytest.fixture(scope="session")
def tiny_weights_x4(tmp_path_factory) -> Path:
    return make_tiny_weights(tmp_path_factory.mktemp("weights4"), 4)
