"""Is the driver that started this training still there? Ray Train workers outlive a SIGKILLed driver for a while;
each worker checks the driver's process between steps (ranks on other hosts cannot see it and answer yes) and the
ranks agree (``step.agree``) so that all of them stop together, without writing another checkpoint."""

from __future__ import annotations

from pipeline.io.lock import process_alive, this_process


def describe() -> dict:
    """This process as the driver (host, pid, start time), passed to the workers in the loop config."""
    return this_process()


def alive(driver: dict | None) -> bool:
    """False only when the driver ran on this host and its process is gone (or its pid was reused)."""
    return not driver or process_alive(driver) is not False
