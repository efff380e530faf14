"""Fuzzing: hostile input for the kiosk's readers, long runs behind ``kiosk bench fuzz``."""

from pathlib import Path


def where(exc: BaseException) -> str:
    """Where ``exc`` was raised (the last frame's file and line): a fuzzer's report."""
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    last = frames[-1] if frames else None
    return f"{Path(last.filename).name}:{last.lineno}" if last else "?"
