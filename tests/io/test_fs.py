"""Storage locations: local paths and s3:// URLs against the real S3 test server; one clear error per failure."""

from __future__ import annotations

import pytest

from pipeline.errors import StorageError
from pipeline.io import fs as lfs


def test_redact_hides_user_info_and_secret_query_values():
    assert lfs.redact("s3://AKIA:s3cret@bkt/x and gs://tok@b/y") == "s3://***@bkt/x and gs://***@b/y"
    assert lfs.redact("https://h/x?X-Amz-Signature=abc&a=1") == "https://h/x?X-Amz-Signature=***&a=1"
    assert lfs.redact("http://head:8265 user@example.org") == "http://head:8265 user@example.org"


def test_local_paths_and_url_parsing(tmp_path):
    loc = lfs.location(tmp_path / "a")
    assert loc.local and loc.url == str(tmp_path / "a") and (loc / "b.json").url == str(tmp_path / "a" / "b.json")
    assert (loc / "../../x").path == str(tmp_path.parent / "x")  # manifests may point at ../../data/…
    s = lfs.location("s3://bkt/some/prefix/?endpoint_override=127.0.0.1:1&scheme=http")
    assert (s.scheme, s.path, s.url) == ("s3", "bkt/some/prefix", "s3://bkt/some/prefix")
    assert (s / "part-00000.parquet").url == "s3://bkt/some/prefix/part-00000.parquet"
    # another process resolving the uri reaches the same endpoint
    assert (s / "p").uri == "s3://bkt/some/prefix/p?endpoint_override=127.0.0.1%3A1&scheme=http"
    assert lfs.location((s / "p").uri).options == s.options == (("endpoint_override", "127.0.0.1:1"),
                                                                  ("region", "us-east-1"), ("scheme", "http"))
    assert (s / "../../data/x").url == "s3://bkt/data/x"
    with pytest.raises(StorageError, match=r"s3://\*\*\*@bkt/p: credentials do not belong in the URL"):
        lfs.location("s3://KEY:SECRET@bkt/p")
    with pytest.raises(StorageError, match="unsupported URL scheme 'ftp'"):
        lfs.location("ftp://host/x")
    with pytest.raises(StorageError, match="unknown URL parameter"):
        lfs.location("s3://bkt/p?secret_key=x")
    with pytest.raises(StorageError, match="no bucket"):
        lfs.location("s3:///p")


@pytest.fixture(scope="module")
def bucket(s3):
    return s3.bucket("lf-fs")


def test_object_round_trip_and_listing(bucket):
    root = lfs.location(f"{bucket}/round-trip")
    lfs.check_bucket(root)
    (root / "a" / "x.json").put(b'{"a": 1}')
    assert (root / "a" / "x.json").read_text() == '{"a": 1}' and (root / "a" / "x.json").size() == 8
    assert (root / "a").is_dir() and not (root / "nothing").exists()
    assert [i.base_name for i in (root / "a").list()] == ["x.json"]
    root.rmtree()
    assert not (root / "a" / "x.json").exists()


def test_missing_bucket_wrong_credentials_and_unreachable_endpoint_are_named_without_secrets(bucket, s3,
                                                                                                monkeypatch):
    with pytest.raises(StorageError, match=r"s3://lf-no-such-bucket/x: the bucket 'lf-no-such-bucket' does not"):
        lfs.check_bucket(lfs.location("s3://lf-no-such-bucket/x"))

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    lfs.clear_cache()
    with pytest.raises(StorageError, match=r"s3://lf-fs/x: access denied: check the credentials") as e:
        lfs.check_bucket(lfs.location(f"{bucket}/x"))
    assert "not-the-secret" not in str(e.value) and s3.secret_key not in str(e.value)

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.secret_key)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    lfs.clear_cache()
    with pytest.raises(StorageError, match=r"s3://lf-fs/x: the storage endpoint cannot be reached"):
        lfs.check_bucket(lfs.location(f"{bucket}/x"))
    monkeypatch.undo()
    lfs.clear_cache()
