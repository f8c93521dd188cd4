"""Bit-reproducible CPU numerics across x86-64 machines: pin what decides float summation order.

PyTorch's CPU kernels pick their code path from the machine: ATen dispatches to AVX2 or AVX-512
loops (`ATEN_CPU_CAPABILITY`), oneDNN's convolutions JIT-compile for the best ISA it finds
(`ONEDNN_MAX_CPU_ISA`), MKL's GEMM does the same (`MKL_CBWR`), and all three split reductions over
as many threads as there are cores. Each choice changes the order of float additions, so the same
training gives different weights on another machine. `pin_cpu_numerics(threads)` fixes all four: the
AVX2 paths (the widest that most of today's x86-64 machines share) and a thread count that the
params name, not the machine. A machine without AVX2 cannot take part and is told so.

The pins are read when each library first needs them, so call this before the first CPU op (a stage
calls it right after loading its params; building nets on the meta device does not count).
"""
from __future__ import annotations

import os

# what each library reads, and the AVX2 value it takes
PINNED_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2"}


def pin_cpu_numerics(threads: int) -> str:
    """Pin PyTorch's CPU code paths to AVX2 and its thread pools to `threads`; return a one-line note.

    Raises:
        ValueError: threads < 1; a CPU without AVX2; torch already ran a CPU kernel with another
            code path in this process (the pin came too late to take effect).
    """
    if threads < 1:
        raise ValueError(f"reproducible CPU numerics need a fixed thread count >= 1, got {threads}")
    os.environ.update(PINNED_ENV)
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)
    capability = torch.backends.cpu.get_cpu_capability()
    if capability != "AVX2":
        have = "no AVX2" if capability in ("DEFAULT", "NO AVX") else f"{capability} already in use"
        raise ValueError(f"reproducible: needs PyTorch's AVX2 CPU kernels, got {capability} ({have}); "
                         f"set reproducible: false on this machine")
    return f"CPU numerics pinned: AVX2 kernels (ATen, oneDNN, MKL), {threads} threads"


def set_cpu_numerics(reproducible: bool, threads: int) -> str | None:
    """A stage's `reproducible` / `threads` params: pin (a note to print), else just the thread count
    when one is given (0: PyTorch's default). Call before the first CPU op."""
    if reproducible:
        return pin_cpu_numerics(threads)
    if threads:
        import torch
        torch.set_num_threads(threads)
    return None
