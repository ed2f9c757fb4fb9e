"""``logitfuse submit JOB CONFIG --address URL [...]`` and ``logitfuse status|logs|stop JOB_ID [--address URL]``."""

from __future__ import annotations

from pipeline.cluster.auth import DEFAULT_TIMEOUT
from pipeline.registry import JOBS


def add_arguments(p, name: str) -> None:
    """Arguments of ``submit`` or of one of the commands that act on a submitted job."""
    p.add_argument("--address", help="the cluster's Jobs API (dashboard) address, http://HEAD:8265 "
                                     "(default: RAY_API_SERVER_ADDRESS, then RAY_ADDRESS)")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                   help=f"seconds to wait for the cluster to answer (default {DEFAULT_TIMEOUT:g})")
    if name == "submit":
        p.add_argument("job", choices=sorted(JOBS), help="the job to run on the cluster")
        p.add_argument("config", help="YAML config (shipped with the job), or a first key=value")
        p.add_argument("overrides", nargs="*", help="key=value overrides, passed to the job unchanged")
        p.add_argument("--follow", action="store_true", help="stream the job's logs until it ends; exit 2 if it fails")
        p.add_argument("--gpus", type=float, help="GPUs reserved for the job's driver (entrypoint_num_gpus)")
        p.add_argument("--cpus", type=float, help="CPUs reserved for the job's driver (entrypoint_num_cpus)")
        p.add_argument("--submission-id", help="job id to use (default: logitfuse-<job>-<config fingerprint>)")
    else:
        p.add_argument("job_id", help="the submission id `logitfuse submit` printed")
        if name == "logs":
            p.add_argument("--follow", action="store_true", help="keep streaming until the job ends")
        if name == "stop":
            p.add_argument("--wait", action="store_true", help="wait until the job has stopped")
    p.set_defaults(_command=name)


def _submit(args) -> int:
    from pipeline.cluster.submit import check_succeeded, connect, follow, submit, wait

    config, overrides = args.config, list(args.overrides)
    if "=" in config:  # no file: only overrides, as the jobs themselves accept
        config, overrides = None, [config] + overrides
    cluster = connect(args.address, args.timeout)
    s = submit(args.job, config, overrides, gpus=args.gpus, cpus=args.cpus, sid=args.submission_id,
               cluster=cluster)
    if s.submitted:
        print(f"submitted {s.submission_id} to {cluster.address}\n  entrypoint: {s.entrypoint}")
    else:
        print(f"{s.submission_id} is already on {cluster.address} ({s.status}): the same job and config; not "
              f"submitted again")
    if not args.follow:
        print(f"  follow: logitfuse logs {s.submission_id} --follow --address {cluster.address}")
        return 0
    try:
        follow(cluster, s.submission_id)
    except KeyboardInterrupt:
        print(f"\nstopped following; {s.submission_id} keeps running (logitfuse stop {s.submission_id} "
              f"--address {cluster.address})")
        return 130
    job = wait(cluster, s.submission_id, timeout=120)  # the log stream ends with the job; its status follows
    check_succeeded(cluster, job)
    print(f"{s.submission_id} SUCCEEDED")
    return 0


def run(args) -> int:
    """Dispatch on the command name; exit 1 when a queried job failed."""
    from pipeline.cluster.submit import connect, follow, info, logs, stop, wait

    if args._command == "submit":
        return _submit(args)
    cluster = connect(args.address, args.timeout)
    if args._command == "status":
        job = info(cluster, args.job_id)
        code = getattr(job, "driver_exit_code", None)
        print(f"{args.job_id}: {getattr(job.status, 'value', job.status)}"
              f"{f' (exit code {code})' if code is not None else ''}"
              f"{f' — {job.message}' if job.message else ''}\n  entrypoint: {job.entrypoint}")
        return 1 if getattr(job.status, "value", job.status) in ("FAILED", "STOPPED") else 0
    if args._command == "logs":
        if args.follow:
            follow(cluster, args.job_id)
        else:
            print(logs(cluster, args.job_id), end="")
        return 0
    stopped = stop(cluster, args.job_id)
    print(f"{args.job_id}: {'stop requested' if stopped else 'was not running'}")
    if args.wait:
        print(f"{args.job_id}: {getattr(wait(cluster, args.job_id).status, 'value', '?')}")
    return 0
