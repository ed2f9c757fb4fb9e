"""Weight prefetch: which files it reads, that it reads all of them, stops when told, and skips what cannot fit."""

import os

from _hub_cache import hub_cache, offline_hub_cache  # noqa: F401 (a fixture)

from pipeline.capture.prefetch import Prefetch, weight_files


def _folder(path, sizes: dict[str, int]):
    path.mkdir()
    for name, size in sizes.items():
        (path / name).write_bytes(os.urandom(size))
    return path


def test_weight_files_of_a_folder_and_of_a_cached_hub_id(tmp_path, offline_hub_cache):
    folder = _folder(tmp_path / "m", {"model-2.safetensors": 10, "model-1.safetensors": 10, "config.json": 2,
                                      "tokenizer.json": 2, "pytorch_model.bin": 3})
    assert [f.name for f in weight_files(str(folder))] == ["model-1.safetensors", "model-2.safetensors",
                                                           "pytorch_model.bin"]
    hub_cache(tmp_path, "org/model", "1" * 40, b"{}", {"model.safetensors": b"w" * 100})
    found = weight_files("org/model")
    assert [f.name for f in found] == ["model.safetensors"] and found[0].stat().st_size == 100  # through the link
    assert weight_files("org/not-cached") == [] and weight_files("tiny:tiny-gpt2-bpe") == []
    assert weight_files("s3://bucket/model") == []


def test_reads_every_byte_then_reports_it(tmp_path):
    folder = _folder(tmp_path / "m", {"a.safetensors": 40 << 20 | 123, "b.safetensors": 5})  # > 2 blocks
    p = Prefetch(weight_files(str(folder)), memory=1 << 40)
    p._thread.join()
    stats = p.stop()
    assert stats["prefetch_bytes"] == (40 << 20 | 123) + 5 and stats["prefetch_seconds"] >= 0
    assert p.stop() == stats  # a second stop (the job's finally) changes nothing


def test_stops_when_the_job_no_longer_needs_it(tmp_path):
    big = tmp_path / "model.safetensors"
    with open(big, "wb") as f:  # sparse: 64 GiB on paper, read as zeros
        f.truncate(64 << 30)
    p = Prefetch([big], memory=1 << 40)
    stats = p.stop()
    assert 0 <= stats["prefetch_bytes"] < 64 << 30 and not p._thread.is_alive()


def test_weights_over_half_the_available_memory_are_not_read(tmp_path, caplog):
    folder = _folder(tmp_path / "m", {"model.safetensors": 1000})
    with caplog.at_level("INFO", logger="logitfuse.capture"):
        p = Prefetch(weight_files(str(folder)), memory=1999)
    assert p._thread is None and p.stop() == {}
    assert "over half the available memory" in caplog.text
    assert Prefetch([]).stop() == {}  # nothing local to read: silent, no figures


def test_on_a_cluster_only_a_node_that_can_host_the_actors_reads(tmp_path, monkeypatch):
    from pipeline.capture import prefetch

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert prefetch.node_may_host_actors(None, "cuda", 8)  # a local Ray: the actors run here
    gpus = tmp_path / "gpus"
    gpus.mkdir()
    monkeypatch.setattr(prefetch, "NVIDIA_GPUS", gpus)
    monkeypatch.setenv("RAY_ADDRESS", "http://head:8265")  # as `logitfuse submit` runs the driver
    assert not prefetch.node_may_host_actors(None, "auto", 1)  # a head node without GPUs
    assert prefetch.node_may_host_actors(None, "cpu", 1)
    for i in range(2):
        (gpus / f"0000:0{i}:00.0").mkdir()
    assert prefetch.node_may_host_actors("ray://head:10001", "cuda", 2)
    assert not prefetch.node_may_host_actors("ray://head:10001", "cuda", 4)
