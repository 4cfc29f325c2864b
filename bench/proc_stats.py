"""What /proc says about a process, for the Python benchmarks."""

import os


def rss_mib(pid):
    """Resident memory of `pid` in MiB (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return 0.0


def open_files(pid):
    """Open file descriptors of `pid`."""
    return len(os.listdir(f"/proc/{pid}/fd"))
