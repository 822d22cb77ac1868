"""`fastmask pretrain ARGS` in this process, then its peak resident set: bench_data.py runs it alone
or under torchrun (one line per rank: ``peak_rss_mib RANK MIB``)."""

import os
import resource
import sys

from fastmask.train import main

if __name__ == "__main__":
    status = main(sys.argv[1:])
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # Linux: KiB
    print(f"peak_rss_mib {os.environ.get('RANK', '0')} {peak_kib / 1024:.1f}", flush=True)
    sys.exit(status)
