"""Conditional writes on object stores: the one primitive a lock needs and ``pyarrow.fs`` cannot express.

``create`` succeeds only when the object does not exist (S3 ``PutObject`` with ``If-None-Match: *``, GCS
``ifGenerationMatch=0``), exactly like ``O_CREAT | O_EXCL`` on a local disk; ``replace`` and ``delete`` succeed only
when the object is still the version read (S3 ``If-Match`` on its ETag, GCS ``ifGenerationMatch`` on its generation).
Clients are built from the same environment as the pyarrow filesystems (endpoint, region, the standard credential
chain); every failure other than a lost race is one StorageError naming the URL.
"""

from __future__ import annotations

from contextlib import contextmanager

from pipeline.errors import StorageError
from pipeline.io.fs import Location, bucket_key, explain, redact, s3_client

_LOST_RACE_CODES = {"PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey"}
_LOST_RACE_STATUS = {412, 409}  # not 404: a missing bucket is an error, a missing key (NoSuchKey) a lost race


class ObjectStore:
    """Conditional operations on one object; ``tag`` is its version (S3 ETag, GCS generation)."""

    def __init__(self, loc: Location):
        self.loc = loc
        self.bucket, self.key = bucket_key(loc)

    def create(self, data: bytes) -> str | None:
        """Write ``data`` if the object does not exist; its tag, or None when it exists."""
        raise NotImplementedError

    def read(self) -> tuple[bytes, str] | None:
        """(bytes, tag), or None when the object does not exist."""
        raise NotImplementedError

    def replace(self, data: bytes, tag: str) -> str | None:
        """Overwrite the object if it is still version ``tag``; the new tag, or None when it changed or is gone."""
        raise NotImplementedError

    def delete(self, tag: str) -> bool:
        """Delete the object if it is still version ``tag``; False when it changed or is gone."""
        raise NotImplementedError


class S3Store(ObjectStore):
    def __init__(self, loc: Location):
        super().__init__(loc)
        self.client = s3_client(loc)

    @contextmanager
    def _errors(self):
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except ClientError as e:
            code = str(e.response.get("Error", {}).get("Code", ""))
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in _LOST_RACE_CODES or status in _LOST_RACE_STATUS:
                raise _LostRace() from None
            raise StorageError(f"{redact(self.loc.url)}: {explain(e)}") from None
        except BotoCoreError as e:
            raise StorageError(f"{redact(self.loc.url)}: {explain(e)}") from None

    def create(self, data: bytes) -> str | None:
        try:
            with self._errors():
                return self.client.put_object(Bucket=self.bucket, Key=self.key, Body=data, IfNoneMatch="*")["ETag"]
        except _LostRace:
            return None

    def read(self) -> tuple[bytes, str] | None:
        try:
            with self._errors():
                got = self.client.get_object(Bucket=self.bucket, Key=self.key)
                return got["Body"].read(), got["ETag"]
        except _LostRace:
            return None

    def replace(self, data: bytes, tag: str) -> str | None:
        try:
            with self._errors():
                return self.client.put_object(Bucket=self.bucket, Key=self.key, Body=data, IfMatch=tag)["ETag"]
        except _LostRace:
            return None

    def delete(self, tag: str) -> bool:
        try:
            with self._errors():
                self.client.delete_object(Bucket=self.bucket, Key=self.key, IfMatch=tag)
                return True
        except _LostRace:
            return False


class GcsStore(ObjectStore):
    """GCS through google-cloud-storage's generation preconditions. Not exercised by the tests: there is no GCS
    API server in the test session (the S3 path is tested against a real server)."""

    def __init__(self, loc: Location):
        super().__init__(loc)
        try:
            from google.cloud import storage
        except ImportError:
            raise StorageError(f"{loc.url}: a lock on gs:// needs google-cloud-storage for its conditional writes: "
                               f"pip install google-cloud-storage") from None
        self.blob = storage.Client().bucket(self.bucket).blob(self.key)

    @contextmanager
    def _errors(self):
        from google.api_core import exceptions as gexc

        try:
            yield
        except (gexc.PreconditionFailed, gexc.NotFound):
            raise _LostRace() from None
        except gexc.GoogleAPIError as e:
            raise StorageError(f"{redact(self.loc.url)}: {explain(e)}") from None

    def create(self, data: bytes) -> str | None:
        try:
            with self._errors():
                self.blob.upload_from_string(data, if_generation_match=0)
                return str(self.blob.generation)
        except _LostRace:
            return None

    def read(self) -> tuple[bytes, str] | None:
        try:
            with self._errors():
                data = self.blob.download_as_bytes()  # sets blob.generation to the version read
                return data, str(self.blob.generation)
        except _LostRace:
            return None

    def replace(self, data: bytes, tag: str) -> str | None:
        try:
            with self._errors():
                self.blob.upload_from_string(data, if_generation_match=int(tag))
                return str(self.blob.generation)
        except _LostRace:
            return None

    def delete(self, tag: str) -> bool:
        try:
            with self._errors():
                self.blob.delete(if_generation_match=int(tag))
                return True
        except _LostRace:
            return False


class _LostRace(Exception):
    """The object exists (create), changed or is gone (replace, delete): another writer got there first."""


def store(loc: Location) -> ObjectStore:
    """The conditional-write client of object ``loc`` (s3:// or gs://)."""
    if loc.scheme == "s3":
        return S3Store(loc)
    if loc.scheme == "gs":
        return GcsStore(loc)
    raise StorageError(f"{loc.url}: conditional writes need an object store (s3://, gs://)")
