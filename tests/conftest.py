"""Shared test setup.

The tests build many tiny networks. With PyTorch's default intra-op thread count (one per
core), a CPU that is also busy with other work makes each tiny convolution wait on a
descheduled OpenMP thread: measured here on 2 cores under load, a 5-cell micro network at
C=5 took 4.5 s per forward pass instead of 0.01 s. One thread is as fast as two for tensors
this small, and immune to that.
"""

import pytest
import torch

from rwenas import cli

torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` are skipped where torch sees no CUDA device."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (run benchmarks/gpu.sh on one)")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


@pytest.fixture
def run_cli(capsys):
    """Run ``rwenas`` in-process: ``run(*argv) -> (exit code, stdout, stderr)``."""

    def run(*argv: str) -> tuple[int, str, str]:
        try:
            rc = cli.main(list(argv))
        except SystemExit as exc:
            rc = exc.code
        out, err = capsys.readouterr()
        return rc, out, err

    return run
