"""``kiosk bench footprint``: what the daemon costs a small Pi.

Spawns ``kiosk run --simulate`` (simulated hardware, PayBy configured but not called) and
measures, from ``/proc``:

- time from spawn to ``READY=1`` on its notify socket (median of ``runs`` start-ups);
- resident memory (VmRSS) right after ready;
- CPU time used while idle for ``idle_s`` seconds, as a share of one core.

Targets on the development machine: ready ≤ 1.5 s, RSS ≤ 60 MB, idle CPU ≤ 1 %. A Pi Zero 2 W
is several times slower: run this there too.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

TARGETS = {"ready_s": 1.5, "rss_mb": 60.0, "idle_cpu_pct": 1.0}


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def footprint(*, idle_s: float = 10.0, runs: int = 3) -> int:
    from kiosk.providers.payby import generate_key_pair
    from kiosk.simkiosk import DaemonProcess, write_kiosk

    root = Path(tempfile.mkdtemp(prefix="kiosk-bench-"))
    _, payby_public = generate_key_pair()
    files = write_kiosk(root, payby_url="http://127.0.0.1:9", payby_public_pem=payby_public)
    ready: list[float] = []
    rss = cpu_pct = 0.0
    for i in range(max(1, runs)):
        daemon = DaemonProcess(files)
        try:
            ready.append(daemon.start())
            if i == runs - 1:
                time.sleep(0.5)  # let start-up work settle before measuring idle
                rss = _rss_mb(daemon.pid)
                c0, t0 = _cpu_s(daemon.pid), time.monotonic()
                time.sleep(idle_s)
                cpu_pct = 100 * (_cpu_s(daemon.pid) - c0) / (time.monotonic() - t0)
        finally:
            daemon.stop()
    figures = {"ready_s": statistics.median(ready), "rss_mb": rss, "idle_cpu_pct": cpu_pct}
    print(f"kiosk bench footprint: simulated hardware, {len(ready)} start-ups, {idle_s:.0f} s idle")
    print(
        f"  ready after spawn   {figures['ready_s'] * 1000:7.0f} ms   (median; "
        f"all: {', '.join(f'{r * 1000:.0f}' for r in ready)}; target <= 1500 ms)"
    )
    print(f"  resident memory     {figures['rss_mb']:7.1f} MB   (target <= 60 MB)")
    print(f"  idle CPU            {figures['idle_cpu_pct']:7.2f} %    (of one core; target <= 1 %)")
    missed = [k for k, limit in TARGETS.items() if figures[k] > limit]
    print("  all targets met" if not missed else f"  MISSED: {', '.join(missed)}")
    return 0
