"""Start or join Ray: a cluster when an address is given (or RAY_ADDRESS is set, as under `ray job submit`),
otherwise a local instance sized to this machine."""

from __future__ import annotations

import os


def cluster_address(address: str | None = None) -> str | None:
    """The Ray to join: ``address``, else ``RAY_ADDRESS`` (as ``ray job submit`` sets it); None: a new local one."""
    return address or os.environ.get("RAY_ADDRESS") or None


def ensure_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Initialise Ray once per process: the cluster at ``address`` (or ``RAY_ADDRESS``; ``auto`` joins the one
    running on this machine), else a new local instance of ``num_cpus`` CPUs, even when another Ray runs on the
    machine (``address="local"``: joining someone else's cluster by accident would refuse ``num_cpus``)."""
    import ray

    if ray.is_initialized():
        return
    address = cluster_address(address)
    if address:
        ray.init(address=address, log_to_driver=True)
    else:
        ray.init(address="local", num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, log_to_driver=False)


def quiet_ray_data(progress: bool) -> None:
    """Keep Ray Data's own progress bars out of the way when ours (or none) are wanted."""
    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = progress
    ctx.print_on_execution_start = False
    ctx.execution_options.preserve_order = True  # rows reach the writer in plan order


def original_error(e: Exception) -> Exception:
    """The logitfuse error a Ray task raised, rebuilt from Ray's wrapper; ``e`` itself when it is not one.

    Ray keeps only the text of a user exception (``UserCodeException`` has no cause on the driver), so the
    original class and message are recovered from the formatted traceback text.
    """
    import re

    from pipeline import errors

    if isinstance(e, errors.LogitfuseError):
        return e
    text = "\n".join(str(x) for x in (e, getattr(e, "cause", None)) if x is not None)
    found = re.findall(r"pipeline\.errors\.(\w+): (.+)", text)
    if found:
        name, msg = found[-1]
        cls = getattr(errors, name, None)
        if isinstance(cls, type) and issubclass(cls, errors.LogitfuseError):
            return cls(msg.strip())
    return e


def unwrap_errors(iterable):
    """Iterate, re-raising a logitfuse error raised inside a Ray task as itself, not as Ray's wrapper."""
    try:
        yield from iterable
    except Exception as e:
        raise original_error(e) from None
