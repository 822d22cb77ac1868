"""`fastmask pretrain ARGS` in this process, then its peak resident set: bench_data.py runs it alone
or under torchrun (one line per rank: ``peak_rss_mib RANK MIB``).

The peak is /proc/self/status's VmHWM, the high-water mark of this process image: getrusage's
ru_maxrss would not do, Linux carries it across exec (a child of a large process starts at its
parent's peak)."""

import os
import sys

from fastmask.train import main


def peak_rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    raise RuntimeError("no VmHWM in /proc/self/status")


if __name__ == "__main__":
    status = main(sys.argv[1:])
    print(f"peak_rss_mib {os.environ.get('RANK', '0')} {peak_rss_mib():.1f}", flush=True)
    sys.exit(status)
