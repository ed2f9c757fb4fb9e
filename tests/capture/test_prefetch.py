"""Weight prefetch: which files it reads, that it reads all of them, stops when told, and skips what cannot fit."""

import json
import os

from _hub_cache import hub_cache, offline_hub_cache  # noqa: F401 (a fixture)

from pipeline.capture.prefetch import Prefetch, weight_files


def _folder(path, sizes: dict[str, int]):
    path.mkdir()
    for name, size in sizes.items():
        (path / name).write_bytes(os.urandom(size))
    return path


def test_weight_files_are_those_from_pretrained_loads(tmp_path, offline_hub_cache):
    index = json.dumps({"metadata": {}, "weight_map": {"a": "model-1.safetensors", "b": "model-2.safetensors",
                                                       "c": "model-1.safetensors"}})
    sharded = _folder(tmp_path / "sharded", {"model-2.safetensors": 10, "model-1.safetensors": 10, "config.json": 2,
                                             "optimizer.pt": 30, "rng_state.pth": 3, "consolidated.safetensors": 20,
                                             "pytorch_model.bin": 10})
    (sharded / "model.safetensors.index.json").write_text(index)
    assert [f.name for f in weight_files(str(sharded))] == ["model-1.safetensors", "model-2.safetensors"]
    single = _folder(tmp_path / "single", {"model.safetensors": 10, "pytorch_model.bin": 10, "training_args.bin": 1})
    assert [f.name for f in weight_files(str(single))] == ["model.safetensors"]  # safetensors before pickles
    pickles = _folder(tmp_path / "pickles", {"pytorch_model.bin": 10, "optimizer.pt": 10})
    assert [f.name for f in weight_files(str(pickles))] == ["pytorch_model.bin"]
    broken = _folder(tmp_path / "broken", {"model-1.safetensors": 10})
    (broken / "model.safetensors.index.json").write_text("{not json")
    assert weight_files(str(broken)) == []  # the actor's load will name the bad index
    hub_cache(tmp_path, "org/model", "1" * 40, b"{}", {"model.safetensors": b"w" * 100})
    found = weight_files("org/model")
    assert [f.name for f in found] == ["model.safetensors"] and found[0].stat().st_size == 100  # through the link
    assert weight_files("org/not-cached") == [] and weight_files("tiny:tiny-gpt2-bpe") == []
    assert weight_files("s3://bucket/model") == []


def test_reads_every_byte_then_reports_it(tmp_path):
    folder = _folder(tmp_path / "m", {"model-00001.safetensors": 40 << 20 | 123, "model-00002.safetensors": 5})
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {
        "x": "model-00001.safetensors", "y": "model-00002.safetensors"}}))
    p = Prefetch(weight_files(str(folder)), memory=1 << 40)
    p._thread.join()
    stats = p.stop()
    total = (40 << 20 | 123) + 5  # more than two 16 MiB blocks
    assert stats["prefetch_bytes"] == stats["prefetch_total_bytes"] == total and stats["prefetch_seconds"] >= 0
    assert p.stop() == stats  # a second stop (the job's finally) changes nothing


def test_stops_when_the_job_no_longer_needs_it(tmp_path):
    big = tmp_path / "model.safetensors"
    with open(big, "wb") as f:  # sparse: 64 GiB on paper, read as zeros
        f.truncate(64 << 30)
    p = Prefetch([big], memory=1 << 40)
    stats = p.stop()
    assert 0 <= stats["prefetch_bytes"] < stats["prefetch_total_bytes"] == 64 << 30 and not p._thread.is_alive()


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
    assert prefetch.node_may_host_actors("local", "cuda", 8)
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


def test_a_containers_memory_limit_counts_not_only_the_hosts(tmp_path):
    from pipeline.capture.prefetch import cgroup_free_bytes

    v2, v1 = tmp_path / "v2", tmp_path / "v1"
    (v2 / "kubepods" / "pod1").mkdir(parents=True)
    (v2 / "kubepods" / "pod1" / "memory.max").write_text("8589934592\n")
    (v2 / "kubepods" / "pod1" / "memory.current").write_text("2147483648\n")
    (tmp_path / "cg2").write_text("0::/kubepods/pod1\n")
    assert cgroup_free_bytes(v2, tmp_path / "cg2") == 6 << 30
    (v1 / "memory" / "docker" / "c1").mkdir(parents=True)
    (v1 / "memory" / "docker" / "c1" / "memory.limit_in_bytes").write_text("9223372036854771712\n")  # no limit
    (v1 / "memory" / "docker" / "c1" / "memory.usage_in_bytes").write_text("1\n")
    (tmp_path / "cg1").write_text("5:pids:/\n4:memory:/docker/c1\n0::/\n")
    assert cgroup_free_bytes(v1, tmp_path / "cg1") is None
    (v1 / "memory" / "docker" / "c1" / "memory.limit_in_bytes").write_text("1000\n")
    assert cgroup_free_bytes(v1, tmp_path / "cg1") == 999
    assert cgroup_free_bytes(v1, tmp_path / "missing") is None
