"""Where artifacts live: a local folder, ``s3://bucket/prefix``, ``gs://bucket/prefix`` (read and write) or
``hf://datasets/…`` (read only, resolved by :mod:`pipeline.io.resolve`), all through ``pyarrow.fs``.

Every path a user gives goes through :func:`location`, which returns a :class:`Location`: the pyarrow filesystem,
the path inside it and the URL to print. Credentials come the standard way and never from the URL:

- S3: the AWS chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_SESSION_TOKEN``, ``~/.aws/credentials``
  and ``AWS_PROFILE``, instance or pod roles); the endpoint of an S3-compatible store (MinIO, R2, Ceph, a local
  test server) from ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``, or ``?endpoint_override=host:port`` on the URL;
  the region from ``AWS_REGION`` / ``AWS_DEFAULT_REGION``.
- GCS: Google's default credentials (``GOOGLE_APPLICATION_CREDENTIALS``, gcloud, the metadata server).

A URL carrying a secret (``s3://KEY:SECRET@bucket``) is refused, and :func:`redact` strips user info and secret-like
query parameters from anything printed. Storage failures become one :class:`~pipeline.errors.StorageError` naming the
URL and the likely cause (wrong credentials, missing bucket, unreachable endpoint).
"""

from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

import pyarrow.fs as pafs

from pipeline.errors import StorageError

OBJECT_SCHEMES = ("s3", "gs")
S3_PUT_MAX = 5 << 30  # the largest object one S3 PutObject may carry
_SECRET_QUERY = re.compile(r"(?i)([?&](?:access_key|secret_key|session_token|token|sig|signature|x-amz-[a-z-]+)=)[^&\s]*")
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s'\"]*@")


def redact(text: str) -> str:
    """``text`` with URL user info (``user:secret@``) and secret-looking query values replaced by ``***``."""
    return _SECRET_QUERY.sub(r"\1***", _USERINFO.sub(r"\1***@", str(text)))


def is_url(spec: str | os.PathLike) -> bool:
    """True for ``scheme://…`` (object stores, ``hf://``); False for local paths."""
    return "://" in str(spec) and not str(spec).startswith("file://")


@dataclass(frozen=True)
class Location:
    """One file or folder: ``fs`` and ``path`` for pyarrow, ``url`` to print, ``uri`` to pass to other processes.

    Pass ``uri`` (never the filesystem object) to Ray tasks and workers: each process resolves it again, so no
    credential is ever pickled; ``uri`` is ``url`` plus the URL parameters the user gave (``?endpoint_override=…``),
    which the other process needs to reach the same store."""

    fs: pafs.FileSystem
    path: str
    url: str
    options: tuple = field(default=(), compare=False, repr=False)  # endpoint/region the fs was built with
    query: str = field(default="", compare=False, repr=False)  # URL parameters given explicitly (endpoint_override…)

    def __str__(self) -> str:
        return self.url

    def __fspath__(self) -> str:
        """The local path, so a local Location works wherever a path does (``open``, ``pq.read_table``, polars);
        StorageError for an object-store location, whose callers must go through ``fs`` / :meth:`open_input`."""
        return str(self.as_path())

    def __truediv__(self, name: str) -> "Location":
        path = posixpath.normpath(posixpath.join(self.path, name))  # manifests may name ../../data/… files
        url = (posixpath.normpath(posixpath.join(self.url, name)) if self.local
               else f"{self.scheme}://{path}")
        return Location(self.fs, path, url, self.options, self.query)

    @property
    def uri(self) -> str:
        """``url`` with the URL parameters it was given: what another process resolves to reach the same store."""
        return f"{self.url}?{self.query}" if self.query else self.url

    @property
    def scheme(self) -> str:
        return "file" if self.local else self.url.split("://", 1)[0]

    @property
    def local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    @property
    def name(self) -> str:
        return posixpath.basename(self.path.rstrip("/"))

    @property
    def parent(self) -> "Location":
        return self / ".."

    def as_path(self) -> Path:
        """The local path; StorageError for an object-store location (a caller that needs a real folder)."""
        if not self.local:
            raise StorageError(f"{self.url}: this step needs a local folder, not an object-store URL")
        return Path(self.path)

    # -- queries -----------------------------------------------------------------------------------------------
    def info(self) -> pafs.FileInfo:
        with storage_errors(self):
            return self.fs.get_file_info(self.path)

    def exists(self) -> bool:
        return self.info().type != pafs.FileType.NotFound

    def is_file(self) -> bool:
        return self.info().type == pafs.FileType.File

    def is_dir(self) -> bool:
        """A local folder, or an object-store prefix holding at least one object (prefixes are not objects)."""
        return self.info().type == pafs.FileType.Directory

    def size(self) -> int:
        return self.info().size

    def list(self, recursive: bool = False) -> list[pafs.FileInfo]:
        """Entries below this folder (none when it does not exist)."""
        with storage_errors(self):
            return self.fs.get_file_info(pafs.FileSelector(self.path, allow_not_found=True, recursive=recursive))

    # -- whole-object reads and writes -------------------------------------------------------------------------
    def read_bytes(self) -> bytes:
        with storage_errors(self), self.fs.open_input_stream(self.path) as f:
            return f.read()

    def read_text(self) -> str:
        return self.read_bytes().decode()

    def open_input(self):
        """A seekable file (Parquet readers, streamed hashing)."""
        with storage_errors(self):
            return self.fs.open_input_file(self.path)

    def put(self, data: bytes) -> None:
        """Write ``data`` as this object in one request (all or nothing on an object store). Local callers want
        :func:`pipeline.io.atomic.write_bytes` instead (tmp, fsync, rename).

        On s3 this is one ``PutObject`` (boto3; up to 5 GiB): a failed request publishes nothing. pyarrow's output
        stream would upload parts and, closed after an error, complete the object with the parts it had."""
        if self.scheme == "s3" and len(data) <= S3_PUT_MAX:
            from botocore.exceptions import BotoCoreError, ClientError

            bucket, key = bucket_key(self)
            try:
                s3_client(self).put_object(Bucket=bucket, Key=key, Body=data)
            except (BotoCoreError, ClientError) as e:
                raise StorageError(f"{redact(self.url)}: {explain(e)}") from None
            return
        with storage_errors(self), self.fs.open_output_stream(self.path) as f:
            f.write(data)

    def mkdir(self) -> None:
        """Create the folder (a no-op on object stores, where prefixes exist through their objects)."""
        if self.local:
            with storage_errors(self):
                self.fs.create_dir(self.path, recursive=True)

    def delete(self, missing_ok: bool = True) -> None:
        with storage_errors(self):
            try:
                self.fs.delete_file(self.path)
            except FileNotFoundError:
                if not missing_ok:
                    raise

    def rmtree(self) -> None:
        """Delete the folder and everything below it (nothing when it does not exist)."""
        if self.info().type == pafs.FileType.NotFound:
            return
        with storage_errors(self):
            self.fs.delete_dir(self.path)


class storage_errors:
    """Context manager turning a pyarrow / OS failure on ``where`` into one StorageError naming its URL (redacted)
    and the likely cause. FileNotFoundError passes through unchanged (callers decide what missing means)."""

    def __init__(self, where: Location | str):
        self.where = where

    def __enter__(self):
        return self

    def __exit__(self, kind, err, tb):
        if err is None or isinstance(err, (FileNotFoundError, StorageError)) or not isinstance(err, OSError):
            return False
        raise StorageError(f"{redact(self.where)}: {explain(err)}") from None


def explain(err: BaseException) -> str:
    """One line saying what a storage failure most likely means (the server's words follow, redacted)."""
    text = redact(str(err))
    low = text.lower()
    if any(s in low for s in ("invalidaccesskeyid", "signaturedoesnotmatch", "access_denied", "accessdenied",
                              "forbidden", "invalid_access_key", "expiredtoken", "unauthenticated", "403")):
        cause = "access denied: check the credentials (AWS_ACCESS_KEY_ID / AWS_PROFILE, GOOGLE_APPLICATION_CREDENTIALS)"
    elif "no_such_bucket" in low or "nosuchbucket" in low or "bucket does not exist" in low:
        cause = "the bucket does not exist"
    elif any(s in low for s in ("network_connection", "could not connect", "could not resolve", "timed out",
                                "timeout", "connection refused", "curlcode")):
        cause = "the storage endpoint cannot be reached (check AWS_ENDPOINT_URL / endpoint_override and the network)"
    elif isinstance(err, PermissionError) or "permission denied" in low or "read-only" in low:
        cause = "permission denied"
    elif isinstance(err, NotADirectoryError) or "not a directory" in low:
        cause = "a file is where a folder should be"
    elif "no space left" in low:
        cause = "the disk is full"
    else:
        cause = "storage error"
    return f"{cause} ({text.strip().splitlines()[0] if text.strip() else type(err).__name__})"


def _s3_endpoint(query: dict) -> dict:
    opts: dict = {}
    endpoint = query.get("endpoint_override") or os.environ.get("AWS_ENDPOINT_URL_S3") \
        or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        opts["endpoint_override"] = parts.netloc
        opts["scheme"] = query.get("scheme") or parts.scheme
    region = query.get("region") or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        opts["region"] = region
    elif endpoint:
        opts["region"] = "us-east-1"  # S3-compatible stores ignore it; avoids a region lookup against AWS
    return opts


@lru_cache(maxsize=32)
def _filesystem(scheme: str, options: tuple) -> pafs.FileSystem:
    opts = dict(options)
    if scheme == "s3":
        return pafs.S3FileSystem(connect_timeout=5, request_timeout=60,
                                 retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=3), **opts)
    if scheme == "gs":
        return pafs.GcsFileSystem(retry_time_limit=pafs_timedelta(60), **opts)
    return pafs.LocalFileSystem()


def pafs_timedelta(seconds: float):
    from datetime import timedelta

    return timedelta(seconds=seconds)


def location(spec: str | os.PathLike | Location) -> Location:
    """Resolve a user-given path or URL (see the module docstring). ``hf://`` is not a storage location: resolve
    it with :func:`pipeline.io.resolve.resolve_shard_folder` first."""
    if isinstance(spec, Location):
        return spec
    text = os.fspath(spec)
    if text.startswith("file://"):
        text = text[len("file://"):]
    if not is_url(text):
        path = str(Path(text).expanduser().absolute())
        return Location(_filesystem("file", ()), path, path)
    parts = urlsplit(text)
    scheme = {"gcs": "gs"}.get(parts.scheme, parts.scheme)
    if scheme not in OBJECT_SCHEMES:
        raise StorageError(f"{redact(text)}: unsupported URL scheme {parts.scheme!r}; use a local path, s3://, gs:// "
                           f"(or hf://datasets/… where a shard set is read)")
    if "@" in parts.netloc:
        raise StorageError(f"{redact(text)}: credentials do not belong in the URL; use the standard environment "
                           f"variables or config files (see README, 'Object storage')")
    if not parts.netloc:
        raise StorageError(f"{redact(text)}: no bucket in the URL (expected {scheme}://BUCKET/PREFIX)")
    query = dict(parse_qsl(parts.query))
    unknown = set(query) - {"endpoint_override", "scheme", "region"}
    if unknown:
        raise StorageError(f"{redact(text)}: unknown URL parameter(s) {sorted(unknown)}; known: endpoint_override, "
                           f"scheme, region")
    opts = _s3_endpoint(query) if scheme == "s3" else {}
    path = posixpath.normpath(f"{parts.netloc}/{parts.path.lstrip('/')}").rstrip("/")
    options = tuple(sorted(opts.items()))
    return Location(_filesystem(scheme, options), path, f"{scheme}://{path}", options, urlencode(sorted(query.items())))


def check_bucket(loc: Location) -> None:
    """StorageError naming the URL when the bucket of ``loc`` is missing, denied or unreachable (a no-op locally).
    Jobs call it on every object-store input and output before any work starts."""
    if loc.local:
        return
    bucket = loc.path.split("/", 1)[0]
    with storage_errors(loc):
        info = loc.fs.get_file_info(bucket)
    if info.type == pafs.FileType.NotFound:
        raise StorageError(f"{loc.url}: the bucket {bucket!r} does not exist (or these credentials cannot see it)")


def s3_client(loc: Location):
    """A boto3 S3 client for ``loc`` built from the same environment as its pyarrow filesystem (endpoint, region,
    the standard credential chain): for the few calls pyarrow.fs cannot make (conditional writes, listing
    unfinished uploads)."""
    opts = dict(loc.options)
    endpoint = f"{opts.get('scheme', 'https')}://{opts['endpoint_override']}" if "endpoint_override" in opts else None
    return _boto3_client(endpoint, opts.get("region"))


@lru_cache(maxsize=8)
def _boto3_client(endpoint: str | None, region: str | None):
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint, region_name=region,
        config=Config(connect_timeout=5, read_timeout=60, retries={"max_attempts": 3, "mode": "standard"}))


def bucket_key(loc: Location) -> tuple[str, str]:
    """(bucket, key) of an object-store location."""
    bucket, _, key = loc.path.partition("/")
    return bucket, key


def abort_uploads(folder: Location) -> int:
    """Abort the unfinished multipart uploads below an s3 ``folder`` (left by a writer killed mid-upload; they are
    invisible to readers but cost storage); returns how many. Best effort: 0 locally, on gs, or when listing
    uploads is not allowed."""
    if folder.scheme != "s3":
        return 0
    bucket, prefix = bucket_key(folder)
    try:
        client = s3_client(folder)
        uploads = client.list_multipart_uploads(Bucket=bucket, Prefix=prefix.rstrip("/") + "/").get("Uploads", [])
        for u in uploads:
            client.abort_multipart_upload(Bucket=bucket, Key=u["Key"], UploadId=u["UploadId"])
        return len(uploads)
    except Exception:  # noqa: BLE001 - housekeeping must never fail a finished run
        return 0


def clear_cache() -> None:
    """Forget resolved filesystems and clients (tests that change the endpoint or credentials environment)."""
    _filesystem.cache_clear()
    _boto3_client.cache_clear()
