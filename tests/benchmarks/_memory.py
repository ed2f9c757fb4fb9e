"""Peak resident memory of the current process, for the benchmarks' fresh-subprocess measurements (Linux)."""

from __future__ import annotations


def rss_kib(field: str) -> int:
    """VmRSS / VmHWM of this process from /proc, in KiB."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def reset_peak() -> int:
    """Reset the peak-RSS counter (VmHWM) to the current RSS and return it. ru_maxrss is not used: Linux carries
    it over from the parent across fork+exec, so a child of a large parent would report no growth."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return rss_kib("VmRSS")
