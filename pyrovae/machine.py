"""What this process may still take from the machine, asked before a large allocation (the
run layer's size check of a model, the data loaders' check of what a file claims)."""

from __future__ import annotations

import os

try:
    import resource
except ImportError:  # Windows: no address-space limits to read
    resource = None

__all__ = ["available_memory"]


def available_memory() -> int:
    """Bytes this process may still allocate: the machine's available memory (Linux's
    ``MemAvailable``; else its physical memory), and below the address-space limit
    (``RLIMIT_AS``) when one is set, what is left under it."""
    available = _meminfo("MemAvailable") or _physical()
    limit, _ = resource.getrlimit(resource.RLIMIT_AS) if resource else (-1, -1)
    if resource and limit != resource.RLIM_INFINITY:
        used = (_status("VmSize") or 0) * 1024
        available = min(available, max(limit - used, 0))
    return int(available)


def _meminfo(key: str) -> int | None:
    value = _field("/proc/meminfo", key)
    return None if value is None else value * 1024


def _status(key: str) -> int | None:
    return _field("/proc/self/status", key)


def _field(path: str, key: str) -> int | None:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _physical() -> int:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # no sysconf: assume no bound is known
        return 2**62
