"""Is the driver that started this training still there? Ray Train workers outlive a SIGKILLed driver for a while;
each worker checks the driver's pid between steps (ranks on other hosts cannot see it and answer yes) and the ranks
agree (``step.agree``) so that all of them stop together, without writing another checkpoint."""

from __future__ import annotations

import os
import socket


def describe() -> dict:
    """This process as the driver: pid and host name, passed to the workers in the loop config."""
    return {"pid": os.getpid(), "host": socket.gethostname()}


def alive(driver: dict | None) -> bool:
    """False only when the driver ran on this host and its pid is gone."""
    if not driver or driver.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(driver["pid"]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True
