"""The system's checks: ``clock`` (NTP synchronised, read from ``CLOCK_COMMAND``), ``disk``
(free space on the state dir's filesystem) and ``provider:NAME`` (one provider called over the
network, as ``kiosk provider check``). They need no device."""

from __future__ import annotations

import asyncio

from kiosk.selftest.result import Verdict, failed, passed, skipped
from kiosk.selftest.session import Session, Step

MIN_FREE_BYTES = 200 * 1024 * 1024
MIN_FREE_FRACTION = 0.05
CLOCK_COMMAND: tuple[str, ...] = ("timedatectl", "show", "-p", "NTPSynchronized", "--value")


async def check_clock(s: Session) -> Verdict:
    from datetime import UTC, datetime

    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    try:
        proc = await asyncio.create_subprocess_exec(
            *CLOCK_COMMAND, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
    except (FileNotFoundError, PermissionError):
        return skipped(f"{CLOCK_COMMAND[0]} not found here: the clock's sync cannot be read")
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 10)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return skipped(f"{CLOCK_COMMAND[0]} did not answer in 10 s")
    if proc.returncode != 0:
        why = (err.decode(errors="replace").strip().splitlines() or ["no reason"])[0]
        return skipped(f"{CLOCK_COMMAND[0]} cannot say ({why})")
    if out.decode().strip() == "yes":
        return passed(f"synchronised (NTP), {now}")
    return failed(
        f"not synchronised ({now} here)",
        "check the network and NTP (`timedatectl timesync-status`); providers refuse requests"
        " signed by a clock that is off",
    )


def _size(n: int) -> str:
    if n >= 1024**3:
        return f"{n / 1024**3:.1f} GB"
    return f"{n / 1024**2:.0f} MB"


async def check_disk(s: Session) -> Verdict:
    import shutil

    usage = shutil.disk_usage(s.config.state_dir)
    share = usage.free / usage.total if usage.total else 0.0
    detail = (
        f"{_size(usage.free)} free of {_size(usage.total)} ({share:.0%}) on {s.config.state_dir}"
    )
    if usage.free < MIN_FREE_BYTES or share < MIN_FREE_FRACTION:
        return failed(
            detail,
            "make room: `sudo journalctl --vacuum-size=100M` trims the system's logs; never delete"
            f" anything in {s.config.state_dir} (the journal holds the money); if it fills again,"
            " move to a larger SD card",
        )
    return passed(detail)


def provider_step(name: str) -> Step:
    async def run(s: Session) -> Verdict:
        from kiosk.provider_check import check

        ok, message = await asyncio.to_thread(check, s.config, s.secrets, name)
        if ok:
            return passed(message)
        return failed(message, f"check the network, then the [{name}] credentials and the clock")

    fix = f"check the network, then the [{name}] credentials (`kiosk provider check {name}`)"
    return Step(f"provider:{name}", run, fix, device=False, timeout_s=None)
