"""Peak resident memory of one step, read from the kernel (Linux): shared by the benchmarks.

``reset_peak_rss()`` resets the process's peak-RSS mark (``VmHWM``) to its current RSS through
``/proc/self/clear_refs`` and returns that RSS; after the step, ``peak_rss_growth(before)`` is the
peak reached minus it. Benchmarks run each measurement in a fresh subprocess.
"""

from __future__ import annotations

import gc


def proc_status_bytes(field: str) -> int:
    """A ``/proc/self/status`` memory field (``VmRSS``, ``VmHWM``...) in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def reset_peak_rss() -> int:
    """Collect garbage, reset the peak-RSS mark to the current RSS, and return that RSS (bytes)."""
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return proc_status_bytes("VmRSS")


def peak_rss_growth(before: int) -> int:
    """Bytes the peak RSS rose above ``before`` since the last reset."""
    return proc_status_bytes("VmHWM") - before
