"""One writer per output folder: a lock file next to the folder that names its holder.

``<parent>/.<name>.lock`` holds one JSON object: host, pid, the process's start time, when the lock was taken, the
config fingerprint and what is writing (``capture``, ``align``, ``train``, ``publish``). It lives beside the folder,
not in it, so ``overwrite=true`` (which empties the folder) and publish staging (which uploads the folder) never see
it. Rules:

- The lock is created with ``O_CREAT | O_EXCL``: of two writers racing, exactly one creates it. A second writer, with
  or without ``overwrite``, is refused with a LockError naming the holder while the holder lives.
- A holder on this host whose pid is gone, or whose pid now belongs to a process started at another time (pid
  reused), is dead: its lock is taken over with a message on stderr. Takeover is serialised by a second exclusive
  file (``….lock.takeover``), so two writers that both find a dead holder cannot both take over. A holder on another
  host cannot be checked from here: the error says so and names the file to remove once that run is known dead.
- Released on exit of the context manager (any exception included) only if the file still holds our own record.

On object storage (s3, gs) the same design is a conditional write (:mod:`pipeline.io.conditional`): the lock object
``.<name>.lock`` beside the folder is created with ``If-None-Match: *`` (S3 ``PutObject``, GCS
``ifGenerationMatch=0``), which fails when it exists, exactly like ``O_EXCL``; a dead holder (same host, pid gone or
reused) is taken over by overwriting the lock only if it is still the version read (``If-Match`` on its ETag /
generation), so of two writers taking over exactly one wins; it is released by a delete conditional on our own
version. A holder on another host is refused, naming the object to delete once that run is known dead.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from pipeline.errors import LockError
from pipeline.io.fs import Location, is_url, location

TAKEOVER_STALE_S = 30.0  # a takeover marker older than this was left by a writer killed mid-takeover


def lock_path(folder: str | Path) -> Path:
    """The lock file of output folder ``folder``."""
    folder = Path(folder).resolve()
    return folder.parent / f".{folder.name}.lock"


def _process_start(pid: int) -> str | None:
    """Start time of ``pid`` in clock ticks since boot (Linux); None where /proc is not available."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22 of stat; the command name may hold spaces


def this_process() -> dict:
    """Host, pid and process start time of this process: what :func:`process_alive` checks later."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "process_start": _process_start(os.getpid())}


def process_alive(holder: dict) -> bool | None:
    """True/False for a process of this host (a reused pid counts as gone); None when it cannot be told (another
    host)."""
    if holder.get("host") != socket.gethostname():
        return None
    pid = int(holder.get("pid", -1))
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    started = holder.get("process_start")
    return started is None or _process_start(pid) in (None, started)


def _describe(holder: dict | None) -> str:
    if not isinstance(holder, dict):
        return "an unreadable lock record"
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("started", 0)))
    return (f"{holder.get('what', '?')} pid {holder.get('pid', '?')} on {holder.get('host', '?')}, started {when}, "
            f"config {holder.get('fingerprint') or '?'}")


def _create(path: Path, record: dict) -> bool:
    """Exclusive create of ``path`` holding ``record``; False when it exists."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    except OSError as e:
        raise LockError(f"cannot create the lock {path}: {e.strerror} (is {path.parent} a writable folder?)") from None
    try:
        os.write(fd, json.dumps(record).encode())
        os.fsync(fd)
    except OSError as e:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise LockError(f"cannot write the lock {path}: {e.strerror}") from None
    os.close(fd)
    return True


def _read(path: Path) -> dict | None:
    try:
        record = json.loads(path.read_text() or "null")
        return record if isinstance(record, dict) and record else None
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        return None  # being written this instant, or garbage


def _take_over(path: Path, seen: dict) -> bool:
    """Remove the dead holder's lock ``seen`` (if it is still that one); True when removed."""
    marker = path.with_name(path.name + ".takeover")
    try:
        if time.time() - marker.stat().st_mtime > TAKEOVER_STALE_S:
            marker.unlink(missing_ok=True)
    except FileNotFoundError:
        pass
    if not _create(marker, {"pid": os.getpid(), "host": socket.gethostname()}):
        return False  # another writer is taking over; the caller tries again
    try:
        if _read(path) != seen:
            return False
        path.unlink(missing_ok=True)
        print(f"taking over the lock {path} of a dead writer ({_describe(seen)})", file=sys.stderr)
        return True
    finally:
        marker.unlink(missing_ok=True)


def lock_location(folder: str | Path | Location) -> Location:
    """The lock file or object of output folder ``folder``."""
    loc = location(folder)
    if loc.local:
        return location(lock_path(loc.path))
    return loc.parent / f".{loc.name}.lock"


def folder_lock(folder: str | Path | Location, what: str, fingerprint: str = "", wait_s: float = 2.0):
    """Hold the one-writer lock of ``folder`` (a local path or an object-store URL) for the duration of the block;
    LockError when another live writer holds it. ``wait_s``: how long a lock being created or taken over this
    instant is waited for."""
    if isinstance(folder, Location) or is_url(folder):
        loc = location(folder)
        if not loc.local:
            return _object_lock(loc, what, fingerprint, wait_s)
        folder = loc.path
    return _file_lock(folder, what, fingerprint, wait_s)


def _refuse_live(folder, holder: dict | None, lock, remove: str) -> None:
    """LockError when ``holder`` (the lock's record) is a live writer, or one on a host that cannot be checked from
    here (``remove``: how to clear such a lock); returns when there is no holder or it is dead."""
    alive = process_alive(holder) if holder else None
    if holder and alive:
        raise LockError(f"{folder} is being written by {_describe(holder)} (lock {lock}); wait for it to "
                        f"finish or stop it (overwrite=true does not take a live writer's folder)")
    if holder and alive is None:
        raise LockError(f"{folder} is being written by {_describe(holder)} (lock {lock}); that host cannot be "
                        f"checked from here: {remove} once that run is known to be dead")


@contextmanager
def _object_lock(folder: Location, what: str, fingerprint: str, wait_s: float) -> Iterator[Location]:
    from pipeline.io.conditional import store

    lock = lock_location(folder)
    obj = store(lock)
    record = this_process() | {"started": time.time(), "fingerprint": fingerprint, "what": what, "folder": folder.url}
    body = json.dumps(record).encode()
    deadline = time.monotonic() + wait_s
    while (tag := obj.create(body)) is None:
        got = obj.read()
        if got is None:
            continue  # released between our create and our read: try again
        try:
            holder = json.loads(got[0] or b"null")
            holder = holder if isinstance(holder, dict) and holder else None
        except ValueError:
            holder = None
        _refuse_live(folder, holder, lock, f"delete the lock object {lock}")
        if holder or time.monotonic() > deadline:  # dead, or unreadable for longer than writing a lock takes
            if (tag := obj.replace(body, got[1])) is not None:
                print(f"taking over the lock {lock} of a dead writer ({_describe(holder)})", file=sys.stderr)
                break
        time.sleep(0.05)
    try:
        yield lock
    finally:
        try:
            obj.delete(tag)  # only if still ours
        except LockError:
            raise
        except Exception as e:  # noqa: BLE001 - never hide the block's own error behind a failed release
            print(f"could not release the lock {lock}: {e}", file=sys.stderr)


@contextmanager
def _file_lock(folder: str | Path, what: str, fingerprint: str = "", wait_s: float = 2.0) -> Iterator[Path]:
    path = lock_path(folder)
    if not path.parent.is_dir():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            blocking = next((p for p in (path.parent, *path.parent.parents) if p.exists() and not p.is_dir()), None)
            why = f"{blocking} exists and is not a folder" if blocking else e.strerror
            raise LockError(f"cannot create the output folder {path.parent}: {why}") from None
    record = this_process() | {"started": time.time(), "fingerprint": fingerprint, "what": what,
                               "folder": str(Path(folder))}
    deadline = time.monotonic() + wait_s
    while not _create(path, record):
        holder = _read(path)
        _refuse_live(folder, holder, path, "remove the lock file")
        if holder or (holder is None and time.monotonic() > deadline):
            if not _take_over(path, holder):  # dead, or unreadable for longer than writing a lock takes
                time.sleep(0.05)
        elif time.monotonic() > deadline + wait_s:
            raise LockError(f"{folder}: could not take the lock {path} within {2 * wait_s:g} s")
        else:
            time.sleep(0.05)
    try:
        yield path
    finally:
        if _read(path) == record:
            path.unlink(missing_ok=True)
