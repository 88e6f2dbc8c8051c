"""CPU seconds spent by each part of a pipeline run, read from /proc (Linux).

A pipeline ratio alone does not say why it is what it is. On a small
machine the broker, the worker's own process and the render processes share
the same cores, so the benchmarks also print where the CPU went per image:
if the broker and the worker's event loop cost as much as a render, no
number of render processes can make the pipeline much faster than one loop.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

PARTS = ("render processes", "worker processes", "broker")


def _stat(pid: int) -> tuple[int, float]:
    """(parent pid, user + system CPU seconds) of one process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cmdline(pid: int) -> str:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().replace(b"\0", b" ").decode(errors="replace")


def _part(cmdline: str, parent_cmdline: str) -> str | None:
    if "java" in cmdline and "kafka" in cmdline:
        return "broker"
    if "regen.cli.main worker" in cmdline:
        return "worker processes"
    # The render pool's processes: children of a worker, or of the
    # multiprocessing fork server a worker started.
    if "multiprocessing" in cmdline or "regen.cli.main worker" in parent_cmdline:
        return "render processes"
    return None


def sample() -> dict[str, float]:
    """CPU seconds used so far by every live process of each part."""
    processes: dict[int, tuple[int, float, str]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                parent, seconds = _stat(int(name))
                processes[int(name)] = (parent, seconds, _cmdline(int(name)))
            except OSError:
                continue  # ended meanwhile
    totals = dict.fromkeys(PARTS, 0.0)
    for parent, seconds, cmdline in processes.values():
        part = _part(cmdline, processes.get(parent, (0, 0.0, ""))[2])
        if part is not None:
            totals[part] += seconds
    return totals


@dataclass
class CpuSpent:
    """CPU per image of each part between two samples."""

    before: dict[str, float]
    after: dict[str, float]
    images: int

    def per_image_ms(self) -> dict[str, float]:
        return {part: (self.after[part] - self.before[part]) * 1000 / max(1, self.images) for part in PARTS}

    def line(self) -> str:
        spent = self.per_image_ms()
        total = sum(spent.values())
        cores = os.cpu_count() or 1
        return "CPU per image: " + ", ".join(f"{part} {ms:.1f} ms" for part, ms in spent.items()) + \
            f" (total {total:.1f} ms: at most {1000 * cores / total if total else 0:.0f} images/s " \
            f"on {cores} cores)"
