"""Which processes used the CPU over an interval (Linux /proc), to see where a load test's cores go.

    python -m lab.perf.cpu_by_process 28            # while `mmrec serve loadtest` runs a phase

Prints CPU seconds and the share of one core per process, busiest first. On a 2-core machine
the load generator, Ray's own processes and every replica share the same cores, so a latency
number means little without this split (docs/serving.md).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_ticks() -> dict[int, tuple[int, str]]:
    """pid -> (user + system clock ticks so far, command line)."""
    out: dict[int, tuple[int, str]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:  # the process ended meanwhile
            continue
        # the command name may hold spaces and parentheses: fields start after the last ")"
        fields = stat[stat.rindex(")") + 2:].split()
        out[int(d.name)] = (int(fields[11]) + int(fields[12]), cmd or stat[stat.index("(") + 1:stat.rindex(")")])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("seconds", type=float, help="interval to measure")
    ap.add_argument("--top", type=int, default=15)
    args = ap.parse_args()
    before, t0 = cpu_ticks(), time.perf_counter()
    time.sleep(args.seconds)
    after, wall = cpu_ticks(), time.perf_counter() - t0
    rows = sorted(((ticks - before.get(pid, (0, ""))[0]) / TICKS, pid, cmd)
                  for pid, (ticks, cmd) in after.items())
    rows = [r for r in reversed(rows) if r[0] > 0]
    total = sum(r[0] for r in rows)
    print(f"{wall:.1f} s: {total:.1f} CPU-s = {total / wall:.2f} cores of {os.cpu_count()}")
    for sec, pid, cmd in rows[:args.top]:
        print(f"{sec:7.2f} s {100 * sec / wall:5.1f}% of a core  {pid:>7}  {cmd[:100]}")


if __name__ == "__main__":
    main()
