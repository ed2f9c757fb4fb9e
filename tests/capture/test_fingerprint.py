"""Model fingerprint: config and weight identity without reading whole weight files; which method was used."""

import os
import shutil

from _hub_cache import hub_cache, offline_hub_cache  # noqa: F401 (a fixture)

from pipeline.modeling.fingerprint import SAMPLE, WHOLE_FILE_LIMIT, model_fingerprint
from pipeline.tiny.models import ensure_tiny


def test_local_folder_content_then_copy_keeps_and_edit_changes_it(tmp_path):
    src = tmp_path / "m"
    shutil.copytree(ensure_tiny("tiny-gpt2-bpe"), src)
    fp, how = model_fingerprint(str(src))
    assert how == "content" and len(fp) == 16
    copy = tmp_path / "copy"
    shutil.copytree(src, copy, copy_function=shutil.copyfile)  # new mtimes: a copy on another node
    assert model_fingerprint(str(copy)) == (fp, how)
    weights = next(copy.glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    assert model_fingerprint(str(copy))[0] != fp
    (src / "config.json").write_text((src / "config.json").read_text().replace("}", ', "x": 1}', 1))
    assert model_fingerprint(str(src))[0] != fp


def test_large_weight_files_are_sampled_not_read(tmp_path):
    big = tmp_path / "model-00001-of-00001.safetensors"
    with open(big, "wb") as f:  # sparse: 65 MiB on paper, nothing on disk
        f.truncate(WHOLE_FILE_LIMIT + SAMPLE)
    (tmp_path / "config.json").write_text("{}")
    fp, how = model_fingerprint(str(tmp_path))
    assert how == "size+sampled"
    with open(big, "r+b") as f:  # a byte in the middle is not seen (documented) ...
        f.seek(WHOLE_FILE_LIMIT // 2)
        f.write(b"\1")
    assert model_fingerprint(str(tmp_path))[0] == fp
    with open(big, "r+b") as f:  # ... one in the last MiB is
        f.seek(WHOLE_FILE_LIMIT + SAMPLE - 10)
        f.write(b"\1")
    assert model_fingerprint(str(tmp_path))[0] != fp


def test_hf_cache_blob_names_are_the_file_hashes(tmp_path):
    blobs, snap = tmp_path / "blobs", tmp_path / "snapshots" / "abc123"
    blobs.mkdir()
    snap.mkdir(parents=True)
    for name, sha in (("model.safetensors", "a" * 64), ("config.json", "b" * 64)):
        (blobs / sha).write_bytes(b"{}" if name.endswith(".json") else b"weights")
        os.symlink(blobs / sha, snap / name)
    fp, how = model_fingerprint(str(snap))
    assert how == "blob-sha256"
    os.rename(blobs / ("a" * 64), blobs / ("c" * 64))  # same bytes under another hash name: another file
    os.remove(snap / "model.safetensors")
    os.symlink(blobs / ("c" * 64), snap / "model.safetensors")
    assert model_fingerprint(str(snap)) == (model_fingerprint(str(snap))[0], "blob-sha256")
    assert model_fingerprint(str(snap))[0] != fp


def test_hub_id_offline_and_uncached_is_weak_and_says_so():
    fp, how = model_fingerprint("no-such-org/no-such-model", "v1")
    assert how == "hub-id" and fp != model_fingerprint("no-such-org/no-such-model", "v2")[0]


def test_hub_id_in_the_local_cache_is_its_commit_offline(tmp_path, offline_hub_cache):
    first, second = "1" * 40, "2" * 40
    hub_cache(tmp_path, "org/model", first, b'{"model_type": "qwen2"}')
    fp, how = model_fingerprint("org/model")
    assert how == f"hub-commit {first}"
    assert model_fingerprint("org/model", first) == (fp, how)  # the commit itself as the revision
    (tmp_path / "models--org--model" / "refs" / "main").write_text(second)  # main moved on: a new checkpoint
    snap = tmp_path / "models--org--model" / "snapshots" / second
    snap.mkdir()
    (snap / "config.json").write_bytes(b'{"model_type": "qwen2"}')
    fp2, how2 = model_fingerprint("org/model")
    assert how2 == f"hub-commit {second}" and fp2 != fp
    assert model_fingerprint("org/model", "v9")[1] == "hub-id"  # a revision the cache does not hold: weak
