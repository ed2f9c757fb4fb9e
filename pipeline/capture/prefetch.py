"""Warm the page cache with the model's weight files while the driver reads the input and Ray Data starts.

A 14B checkpoint is 28 GB of safetensors; read cold from a network file system at ~1 GB/s it is the longest part
of a capture's start-up, and it used to begin only once the actor called ``from_pretrained``: after the driver had
read and fingerprinted every sample, started Ray, planned the shards and Ray Data had started a worker and imported
torch. A driver thread now reads the weight files from the job's first second, so the actor's load finds them in
the page cache (the kernel's, shared by every process of the node: the actors of this node all benefit). The
bytes read and the seconds it took go into the manifest's stats (``prefetch_bytes``, ``prefetch_seconds``).

What it warms: the driver's own node only (where a local run or ``logitfuse submit``'s driver runs its actors; on
a multi-node cluster the other nodes load cold, as before). On a cluster it runs only when this node could host an
actor: a CPU capture, or at least ``gpus_per_actor`` NVIDIA GPUs here (a head node without GPUs reads nothing).
What it reads: the weight files ``from_pretrained`` loads (the shards the index names, or the single file) of a
local folder or of a Hub id's snapshot already in the local cache; nothing is downloaded. It skips, saying why in
a log line, weights larger than half the memory available (the host's, or the container's cgroup headroom when
smaller: they would evict themselves before the actor reads them). Reading stops when the job no longer needs it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from pipeline.ray_utils import cluster_address

BLOCK = 16 << 20
log = logging.getLogger("logitfuse.capture")


# what from_pretrained reads, in its order of preference: an index names the shards, else the single file
WEIGHT_SETS = (("model.safetensors.index.json", "model.safetensors"), ("pytorch_model.bin.index.json",
                                                                      "pytorch_model.bin"))


def loaded_weight_files(folder: Path) -> list[Path]:
    """The weight files ``from_pretrained`` loads from ``folder``: the shards its index names, or the single file;
    safetensors before pickles. Optimizer states, RNG states, ``consolidated.safetensors`` copies and other
    weights in the folder are not read."""
    import json

    for index, single in WEIGHT_SETS:
        if (folder / index).is_file():
            try:
                names = sorted(set(json.loads((folder / index).read_text())["weight_map"].values()))
            except (ValueError, KeyError, TypeError, AttributeError):
                return []  # a broken index: the actor's load names the problem
            return [folder / n for n in names if (folder / n).is_file()]
        if (folder / single).is_file():
            return [folder / single]
    return []


def weight_files(spec: str, revision: str | None = None) -> list[Path]:
    """The weight files a local checkpoint folder or a Hub id's locally cached snapshot loads ([] when neither)."""
    folder = Path(spec)
    if not folder.is_dir():
        if spec.startswith("tiny:") or "://" in spec:
            return []  # tiny models are built on demand; object-store models are not read from here
        try:
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(spec, revision=revision, local_files_only=True))
        except Exception:  # not in the local cache (or not a Hub id): the actor's load reports what is wrong
            return []
    return loaded_weight_files(folder)


NVIDIA_GPUS = Path("/proc/driver/nvidia/gpus")  # one entry per GPU the driver sees (no CUDA import needed)


def node_may_host_actors(ray_address: str | None, device: str, gpus_per_actor: int) -> bool:
    """Whether this machine can run the capture's actors: always with a local Ray; on a cluster (an address, or
    ``RAY_ADDRESS`` as ``logitfuse submit`` sets it) only for a CPU capture or with enough GPUs here. Read before
    Ray starts, so it sees the GPUs the machine has, not those its Ray node offers: a GPU head node started with
    ``--num-gpus=0`` still reads (``prefetch_weights=false`` turns that off)."""
    if cluster_address(ray_address) in (None, "local") or device == "cpu":
        return True
    gpus = len(list(NVIDIA_GPUS.iterdir())) if NVIDIA_GPUS.is_dir() else 0
    return gpus >= gpus_per_actor


NO_LIMIT = 1 << 60  # cgroup v1 reports "no limit" as a number near 2**63


def cgroup_free_bytes(root: Path = Path("/sys/fs/cgroup"), proc: Path = Path("/proc/self/cgroup")) -> int | None:
    """What this process's memory cgroup may still use (limit − usage); None without a limit. In a container (a
    KubeRay pod, docker ``--memory``) this, not the host's MemAvailable, is what fits. cgroup v2 (``0::<path>``:
    ``memory.max``, ``memory.current``) and v1 (``N:memory:<path>``: ``memory.limit_in_bytes``,
    ``memory.usage_in_bytes``)."""
    try:
        lines = proc.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if controllers == "memory":
            group, files = root / "memory" / path.lstrip("/"), ("memory.limit_in_bytes", "memory.usage_in_bytes")
        elif controllers == "" and line.startswith("0::"):
            group, files = root / path.lstrip("/"), ("memory.max", "memory.current")
        else:
            continue
        try:
            limit = (group / files[0]).read_text().strip()
            if limit == "max" or int(limit) >= NO_LIMIT:
                continue
            return max(int(limit) - int((group / files[1]).read_text()), 0)
        except (OSError, ValueError):
            continue
    return None


def available_bytes() -> int:
    """Memory a read may fill without evicting itself: the host's MemAvailable (/proc/meminfo), or the cgroup's
    headroom when that is smaller; 0 where neither can be read, which makes every prefetch skip."""
    try:
        with open("/proc/meminfo") as f:
            host = next(int(line.split()[1]) << 10 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        return 0
    group = cgroup_free_bytes()
    return host if group is None else min(host, group)


class Prefetch:
    """``p = Prefetch(files)`` reads ``files`` in a daemon thread; ``p.stop()`` ends it and returns its figures."""

    def __init__(self, files: list[Path], memory: int | None = None):
        self.files = files
        self.total = sum(f.stat().st_size for f in files)
        self.done = 0
        self.seconds = 0.0
        self.skipped = ""
        self._stop = threading.Event()
        self._thread = None
        limit = (available_bytes() if memory is None else memory) // 2
        if self.total > limit:
            self.skipped = f"weights ({self.total >> 20} MiB) over half the available memory ({limit >> 19} MiB)"
            log.info("capture: weight prefetch skipped: %s", self.skipped)
        elif files:  # none: nothing local to read (k = 0, a tiny: model, an uncached Hub id)
            self._thread = threading.Thread(target=self._run, name="weight-prefetch", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        t0 = time.perf_counter()
        try:  # Linux: a thread's own nice value; the worker imports and the driver's work come first on few cores
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        except (AttributeError, OSError):
            pass
        buf = bytearray(BLOCK)
        view = memoryview(buf)
        try:
            for f in self.files:
                fd = os.open(f, os.O_RDONLY)
                try:
                    while not self._stop.is_set():
                        n = os.readv(fd, [view])
                        if n == 0:
                            break
                        self.done += n
                finally:
                    os.close(fd)
                if self._stop.is_set():
                    break
        except OSError as e:  # a file removed or unreadable: the actor's own load will say so properly
            self.skipped = f"stopped: {e}"
            log.info("capture: weight prefetch %s", self.skipped)
        self.seconds = time.perf_counter() - t0

    def stop(self) -> dict[str, float]:
        """Stop reading (if still at it) and return ``prefetch_bytes`` / ``prefetch_seconds`` (nothing if skipped)."""
        self._stop.set()
        if self._thread is None:
            return {}
        self._thread.join()
        return {"prefetch_bytes": float(self.done), "prefetch_total_bytes": float(self.total),
                "prefetch_seconds": round(self.seconds, 3)}
