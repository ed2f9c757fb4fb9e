"""What a submission carries: the job's entrypoint, the runtime env that ships the project, a stable submission id.

The project travels as Ray's ``working_dir`` (the repo root; ``.gitignore``d files and the excludes below stay
home). A config file inside the shipped tree is passed by its relative path; one outside it (not shipped) travels
inline: its keys become ``key=value`` overrides on the entrypoint, ahead of the user's own.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import subprocess
from pathlib import Path

import yaml

from pipeline.config import JobConfig
from pipeline.errors import ConfigError, SubmitError
from pipeline.registry import JOBS

# outputs, environments and caches stay home: jobs read and write shared storage, not the package
EXCLUDES = [".git", ".venv", "venv", "runs", ".cache", "__pycache__", "*.egg-info", ".pytest_cache", ".ruff_cache",
            "build"]


def project_root() -> Path:
    """The repo root (holding pipeline/, jobs/, schemas/)."""
    return Path(__file__).resolve().parents[2]


def job_module(job: str) -> str:
    """``jobs.<module>`` of a job name; SubmitError naming the known jobs."""
    if job not in JOBS:
        raise SubmitError(f"unknown job {job!r}; one of: {', '.join(JOBS)}")
    return JOBS[job].entry


def config_class(job: str) -> type[JobConfig]:
    """The job's config class (validates the config here, before anything is sent)."""
    job_module(job)
    module = JOBS[job].config.split(":")[0]
    try:
        return JOBS[job].config_class()
    except ModuleNotFoundError as e:
        if e.name and module.startswith(e.name):
            raise SubmitError(f"job {job!r}: {module} is not in this checkout, so the cluster would not have it "
                              f"either") from None
        raise


def load_config(job: str, config: str | None, overrides: list[str]) -> JobConfig:
    """The validated config the job will run with (ConfigError names the bad key, here and not on the cluster)."""
    return config_class(job).load(config, overrides)


def submission_id(job: str, cfg: JobConfig) -> str:
    """``logitfuse-<job>-<fingerprint of the full config>``: the same work gets the same id."""
    text = json.dumps({"job": job, "config": cfg.to_dict()}, sort_keys=True, default=str)
    return f"logitfuse-{job}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def _shipped(root: Path, path: Path) -> bool:
    """Whether ``path`` travels in the working_dir: under root, not excluded, not git-ignored."""
    try:
        rel = path.resolve().relative_to(root)
    except ValueError:
        return False
    if any(Path(*rel.parts[: i + 1]).match(x) for x in EXCLUDES for i in range(len(rel.parts))):
        return False
    try:
        ignored = subprocess.run(["git", "-C", str(root), "check-ignore", "-q", str(rel)], check=False,
                                 capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        ignored = False  # no git: Ray cannot apply .gitignore rules we cannot see either way
    return not ignored


def flatten(data: dict, prefix: str = "") -> list[str]:
    """A config mapping as ``key=value`` overrides (nested sections dotted, lists as JSON) that load back equal."""
    out = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out += flatten(value, f"{name}.")
        elif isinstance(value, (list, dict)):
            out.append(f"{name}={json.dumps(value, default=str)}")
        elif isinstance(value, bool) or value is None:
            out.append(f"{name}={json.dumps(value)}")  # true / false / null
        else:
            out.append(f"{name}={value}")
    return out


def entrypoint(job: str, config: str | None, overrides: list[str], root: Path | None = None) -> str:
    """``python -m jobs.<module> CONFIG key=value…`` (the config inline when it does not travel with the project)."""
    root = root or project_root()
    args = list(overrides)
    if config:
        path = Path(config)
        if _shipped(root, path):
            args = [str(path.resolve().relative_to(root))] + args
        else:
            try:
                data = yaml.safe_load(path.read_text()) or {}
            except (OSError, yaml.YAMLError) as e:
                raise ConfigError(f"config file {config!r} cannot be read: {e}") from None
            args = flatten(data) + args
    return " ".join(["python", "-m", job_module(job), *map(shlex.quote, args)])


def runtime_env(root: Path | None = None) -> dict:
    """Ship the project as the job's working_dir (cwd and import path of the driver and of every worker)."""
    return {"working_dir": str(root or project_root()), "excludes": list(EXCLUDES)}
