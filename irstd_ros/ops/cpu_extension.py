"""Build (once, cached) and load the fused C++ CPU kernels in ``csrc/``.

The build needs a C++ compiler and ninja; ``scripts/setup.sh`` runs it at
install time (``cpu_extension.main()``) so that no node ever
compiles on its first frame. Without a compiler the ops fall back to the
blocked torch scan (slower, same results) and say so once in the log.
The cache lives in ``$IRSTD_OPS_CACHE`` or ``~/.cache/irstd_ros/ops``, one
folder per torch version, CPU (the code is built for the host CPU) and source
hash (two checkouts of different versions never rebuild over each other).
"""
from __future__ import annotations

import functools
import hashlib
import logging
import os
import platform
import sys
from pathlib import Path

import torch

log = logging.getLogger("irstd_ros.ops")
SOURCES = [Path(__file__).parent / "csrc" / "selective_scan_cpu.cpp"]
# -fopenmp: at::parallel_for is an inline OpenMP loop; without it the kernel runs on one thread.
# Bit-for-bit determinism (training resumes bit-exactly only with it): no -fassociative-math, and
# -ffp-contract=off. Otherwise a loop's vectorised body and its scalar peel/remainder round
# differently (reassociated sums, fused multiply-adds), and how many elements each takes depends
# on the buffers' alignment, so identical inputs gave results differing in the last bit from call
# to call (test_cpp_kernel_is_deterministic_bit_for_bit).
CFLAGS = ["-O3", "-march=native", "-fopenmp", "-fno-math-errno", "-fno-trapping-math", "-fno-signed-zeros",
          "-ffp-contract=off"]
LDFLAGS = ["-fopenmp"]


def _cpu_tag() -> str:
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        flags = platform.processor()
    return hashlib.sha1(flags.encode()).hexdigest()[:10]


def build_dir() -> Path:
    root = Path(os.environ.get("IRSTD_OPS_CACHE", Path.home() / ".cache" / "irstd_ros" / "ops"))
    src = hashlib.sha1(b"".join(p.read_bytes() for p in SOURCES) + " ".join(CFLAGS).encode()).hexdigest()[:10]
    tag = (f"torch{torch.__version__.replace('+', '_')}-py{sys.version_info.major}{sys.version_info.minor}"
           f"-{_cpu_tag()}-src{src}")
    return root / tag


@functools.lru_cache(maxsize=None)
def load(verbose: bool = False):
    """The compiled module, or None (with one warning) when it cannot be built here."""
    if os.environ.get("IRSTD_OPS_NO_CPP") == "1":
        return None
    from torch.utils import cpp_extension
    out = build_dir()
    out.mkdir(parents=True, exist_ok=True)
    try:
        return cpp_extension.load(name="irstd_selective_scan_cpu", sources=[str(s) for s in SOURCES],
                                  extra_cflags=CFLAGS, extra_ldflags=LDFLAGS, build_directory=str(out), verbose=verbose)
    except Exception as exc:  # no compiler, no ninja, a broken toolchain: fall back, loudly once
        log.warning("irstd_ros.ops: fused C++ CPU kernels unavailable (%s: %s); using the blocked torch "
                    "scan, several times slower", exc.__class__.__name__, str(exc).splitlines()[0] if str(exc) else "")
        return None


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    module = load(verbose="-v" in sys.argv)
    if module is None:
        print("irstd_ros.ops: C++ CPU kernels NOT built; the torch fallback will be used", file=sys.stderr)
        return 1
    print(f"irstd_ros.ops: C++ CPU kernels ready in {build_dir()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
