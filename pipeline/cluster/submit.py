"""Submit logitfuse jobs to a Ray cluster through the Ray Jobs API, then follow, query or stop them.

A submission is named by a stable id (``logitfuse-<job>-<config fingerprint>``): submitting the same work again
attaches to the job already running or finished under that id, and after a failed or stopped attempt submits a new
attempt ``<id>-2``, ``<id>-3``… (the jobs resume from their complete shards).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass

from pipeline.cluster.auth import DEFAULT_TIMEOUT, auth_headers, normalize_address
from pipeline.io.fs import redact
from pipeline.cluster.runtime import entrypoint, load_config, runtime_env, submission_id
from pipeline.errors import SubmitError

ACTIVE, TERMINAL = ("PENDING", "RUNNING"), ("SUCCEEDED", "FAILED", "STOPPED")
LOG_TAIL_LINES = 40
# Ray narrates packaging file by file and warns that .git/.venv are excluded by default (we exclude them anyway)
_CHATTY = {"ray._private.runtime_env.working_dir": logging.ERROR, "ray._private.runtime_env.packaging": logging.WARNING,
           "ray.dashboard.modules.dashboard_sdk": logging.WARNING, "ray.dashboard.modules.job.sdk": logging.WARNING}


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


@contextmanager
def _errors(what: str):
    """Ray client errors (RuntimeError, ConnectionError, AuthenticationError…) as one SubmitError line."""
    try:
        yield
    except SubmitError:
        raise
    except Exception as e:
        raise SubmitError(redact(f"{what}: {_first_line(e)}")) from None


@dataclass
class Cluster:
    """A Jobs API client and the address it talks to (for messages)."""

    client: object  # ray.job_submission.JobSubmissionClient, or a stand-in in tests
    address: str  # for messages: credentials redacted


def connect(address: str | None, timeout: float = DEFAULT_TIMEOUT) -> Cluster:
    """A client for the cluster's Jobs API; reachability and the token are checked first."""
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobSubmissionClient

    for name, level in _CHATTY.items():
        logging.getLogger(name).setLevel(level)
    address = normalize_address(address)
    headers, source = auth_headers(address, timeout)
    try:
        return Cluster(JobSubmissionClient(address, headers=headers), redact(address))
    except AuthenticationError:  # HTTP 401 / 403
        raise SubmitError(f"the Ray cluster at {redact(address)} rejected the token from {source}: give the cluster's "
                          f"token (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token)") from None
    except Exception as e:
        raise SubmitError(redact(f"cannot use the Jobs API at {address}: {_first_line(e)}")) from None


def _status(job) -> str:
    return getattr(job.status, "value", str(job.status))


@dataclass
class Submission:
    """A job on the cluster: its id, its status when last seen, and whether this call submitted it."""

    submission_id: str
    status: str
    submitted: bool
    entrypoint: str


def submit(job: str, config: str | None, overrides: list[str], address: str | None = None, *,
           gpus: float | None = None, cpus: float | None = None, sid: str | None = None,
           timeout: float = DEFAULT_TIMEOUT, cluster: Cluster | None = None) -> Submission:
    """Validate the config here, then submit ``python -m jobs.<module> CONFIG key=value…`` (or attach to the same
    work already submitted)."""
    cfg = load_config(job, config, overrides)
    command = entrypoint(job, config, overrides)
    base = sid or submission_id(job, cfg)
    cluster = cluster or connect(address, timeout)
    with _errors(f"cannot list the jobs of {cluster.address}"):
        seen = {j.submission_id: _status(j) for j in cluster.client.list_jobs() if j.submission_id}
    candidates = [base] + ([] if sid else [f"{base}-{n}" for n in range(2, 100)])
    for candidate in candidates:
        status = seen.get(candidate)
        if status in ACTIVE or status == "SUCCEEDED":
            return Submission(candidate, status, False, command)  # the same work, already there
        if status is None:
            break
    else:
        if sid:
            raise SubmitError(f"submission id {sid!r} is already used by a job that ended {seen[sid]}; pass another "
                              f"--submission-id")
        raise SubmitError(f"{base}: {len(candidates)} attempts failed or were stopped; pass --submission-id")
    with _errors(f"submitting {job} to {cluster.address} failed"):
        cluster.client.submit_job(entrypoint=command, runtime_env=runtime_env(), submission_id=candidate,
                                  entrypoint_num_cpus=cpus, entrypoint_num_gpus=gpus,
                                  metadata={"logitfuse_job": job, "logitfuse_id": base})
    return Submission(candidate, "PENDING", True, command)


def info(cluster: Cluster, sid: str):
    """The job's ``JobInfo``; SubmitError when the cluster does not know it."""
    with _errors(f"job {sid!r} on {cluster.address}"):
        return cluster.client.get_job_info(sid)


def logs(cluster: Cluster, sid: str) -> str:
    """Everything the job's driver printed so far."""
    with _errors(f"logs of job {sid!r} on {cluster.address}"):
        return cluster.client.get_job_logs(sid)


def stop(cluster: Cluster, sid: str) -> bool:
    """Ask the job to stop; True when it was running."""
    with _errors(f"stopping job {sid!r} on {cluster.address}"):
        return cluster.client.stop_job(sid)


def wait(cluster: Cluster, sid: str, timeout: float | None = None, poll: float = 1.0):
    """Poll until the job ends; its ``JobInfo``. SubmitError after ``timeout`` seconds."""
    start = time.monotonic()
    while True:
        job = info(cluster, sid)
        if _status(job) in TERMINAL:
            return job
        if timeout is not None and time.monotonic() - start > timeout:
            raise SubmitError(f"job {sid!r} still {_status(job)} after {timeout:g} s")
        time.sleep(poll)


def follow(cluster: Cluster, sid: str, out=None) -> None:
    """Stream the job's logs to ``out`` until it ends."""
    out = out or sys.stdout

    async def tail() -> None:
        async for chunk in cluster.client.tail_job_logs(sid):
            out.write(chunk)
            out.flush()

    with _errors(f"following the logs of job {sid!r}"):
        asyncio.run(tail())


def check_succeeded(cluster: Cluster, job) -> None:
    """SubmitError with the exit status and the last log lines when the job did not succeed."""
    if _status(job) == "SUCCEEDED":
        return
    code = getattr(job, "driver_exit_code", None)
    tail = "\n".join(logs(cluster, job.submission_id).rstrip().splitlines()[-LOG_TAIL_LINES:])
    # Ray appends the driver's last logs to the message; the tail below shows them once
    message = (job.message or "no message").strip().splitlines()[0].split(", last available logs")[0]
    raise SubmitError(f"job {job.submission_id!r} {_status(job)}"
                      f"{f' (exit code {code})' if code is not None else ''}: {message}\n"
                      f"--- last {LOG_TAIL_LINES} log lines ---\n{tail}")
