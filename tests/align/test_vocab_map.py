import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rapidfuzz import process
from rapidfuzz.distance import Levenshtein

from pipeline.align.canonical import canonicalize, tokenizer_fingerprint
from pipeline.align.offsets import align_offsets
from pipeline.align.vocab_map import (build_vocab_map, check_map_matches, gather_cooc, map_array, nearest,
                                      read_vocab_map, summarize, write_vocab_map)
from pipeline.errors import AlignmentError, SchemaError
from schemas import vocab_map as schema_mod


@pytest.fixture(scope="module")
def bpe_to_sp(bpe, sp):
    return build_vocab_map(bpe, sp)


def test_self_map_is_identity(bpe, sp):
    assert np.array_equal(map_array(build_vocab_map(bpe, bpe)), np.arange(len(bpe)))
    table = build_vocab_map(sp, sp)
    canon, ids = canonicalize(sp), map_array(table)
    # a <0xNN> token whose byte is also a regular token maps to the regular one: what the pivot would emit
    redundant = np.array([canon.byte_fallback[i] and ids[i] != i for i in range(len(sp))])
    assert np.array_equal(ids[~redundant], np.flatnonzero(~redundant))
    assert all(canon.token_bytes[ids[i]] == canon.token_bytes[i] and not canon.byte_fallback[ids[i]]
               for i in np.flatnonzero(redundant))
    share = summarize(table)
    assert share["exact"] == pytest.approx(1 - 4 / len(sp)) and share["special"] == pytest.approx(4 / len(sp))


def test_bpe_to_sp_shares_and_rows(bpe, sp, bpe_to_sp):
    share = summarize(bpe_to_sp)
    assert sum(share.values()) == pytest.approx(1.0)
    assert share["exact"] > 0.4 and share["none"] == 0.0 and share["stats"] == 0.0
    src, piv = canonicalize(bpe), canonicalize(sp)
    ids, dist = map_array(bpe_to_sp), bpe_to_sp.column("distance").to_numpy()
    methods = np.asarray(bpe_to_sp.column("method").to_pylist())
    exact = np.flatnonzero(methods == "exact")
    assert all(src.token_bytes[i] == piv.token_bytes[ids[i]] for i in exact) and not dist[exact].any()
    # edit rows: the recorded distance is real and minimal over every regular pivot token
    choices = [t for j, t in enumerate(piv.texts()) if not piv.special[j]]
    edit = np.flatnonzero(methods == "edit")
    for i in edit[:: max(1, edit.size // 60)]:
        q = src.texts([i])[0]
        assert dist[i] == Levenshtein.distance(q, piv.texts([ids[i]])[0]) > 0
        assert dist[i] == process.cdist([q], choices, scorer=Levenshtein.distance).min()
    eos = bpe.get_vocab()["<|endoftext|>"]
    assert ids[eos] == sp.eos_token_id and methods[eos] == "special"


def test_nearest_matches_brute_force():
    rng = np.random.default_rng(0)
    words = ["".join(rng.choice(list("abcde é"), rng.integers(1, 12))) for _ in range(400)]
    queries, choices = words[:150], words[150:]
    full = process.cdist(queries, choices, scorer=Levenshtein.distance)
    for max_d in (None, 2):
        for q, (idx, dist) in enumerate(nearest(queries, choices, k=3, max_distance=max_d)):
            best = full[q].min()
            if max_d is not None and best > max_d:
                assert idx.size == 0
                continue
            assert dist[0] == best == full[q, idx[0]] and np.all(np.diff(dist) >= 0)
            assert np.array_equal(full[q, idx], dist)


def test_cooc_breaks_ties_among_candidates(bpe, sp, bpe_to_sp):
    src, piv = canonicalize(bpe), canonicalize(sp)
    methods = bpe_to_sp.column("method").to_pylist()
    i = next(i for i, m in enumerate(methods) if m == "edit")
    choice_ids = [j for j in range(len(piv)) if not piv.special[j] and not piv.byte_fallback[j]]
    (idx, _), = nearest(src.texts([i]), piv.texts(choice_ids), k=4)
    runner_up = choice_ids[idx[1]]
    table = build_vocab_map(bpe, sp, cooc={(i, runner_up): 5, (i, 10**6): 99})
    assert map_array(table)[i] == runner_up and table.column("method")[i].as_py() == "stats"
    assert summarize(table)["stats"] == pytest.approx(1 / len(bpe))


def test_gather_cooc_counts_aligned_pairs(bpe, sp, text, encode):
    ib, sb, eb = encode(bpe, text)
    ip, sp_, ep = encode(sp, text)
    al = align_offsets(sb, eb, sp_, ep)
    counts = gather_cooc(ib, ip, al.src_index)
    assert sum(counts.values()) == int((al.src_index >= 0).sum())
    j = int(np.flatnonzero(al.src_index >= 0)[0])
    assert counts[(int(ib[al.src_index[j]]), int(ip[j]))] >= 1
    gather_cooc(ib, ip, al.src_index, counts)  # accumulates
    assert sum(counts.values()) == 2 * int((al.src_index >= 0).sum())


def test_write_read_round_trip(bpe_to_sp, tmp_path):
    path = tmp_path / "map.parquet"
    write_vocab_map(bpe_to_sp, path)
    back = read_vocab_map(path)
    assert back.equals(bpe_to_sp) and back.schema.metadata == bpe_to_sp.schema.metadata
    assert [p.name for p in tmp_path.iterdir()] == ["map.parquet"]


@pytest.mark.parametrize("damage, reason", [
    (lambda t: t.replace_schema_metadata({**t.schema.metadata, b"schema": b"logit_shard"}), "not a vocab_map"),
    (lambda t: t.replace_schema_metadata({**t.schema.metadata, b"schema_version": b"2"}), "schema_version"),
    (lambda t: t.replace_schema_metadata({k: v for k, v in t.schema.metadata.items()
                                          if k != b"pivot_fingerprint"}), "pivot_fingerprint"),
    (lambda t: t.drop_columns(["distance"]), "columns"),
    (lambda t: t.set_column(1, "pivot_id", t.column("pivot_id").cast(pa.int64())), "pivot_id"),
    (lambda t: t.slice(1), "rows"),
    (lambda t: t.set_column(1, pa.field("pivot_id", pa.int32(), False),
                            pa.array(np.full(t.num_rows, -1, np.int32))), "exactly"),
])
def test_validation_names_the_fault(bpe_to_sp, tmp_path, damage, reason):
    bad = damage(bpe_to_sp)
    pq.write_table(bad, tmp_path / "bad.parquet")
    with pytest.raises(SchemaError, match=reason):
        read_vocab_map(tmp_path / "bad.parquet")
    with pytest.raises(SchemaError, match=reason):
        write_vocab_map(bad, tmp_path / "out.parquet")


def test_schema_validate_and_unreadable_file(tmp_path):
    schema_mod.validate(schema_mod.schema("a", "b", 3, 4))
    with pytest.raises(SchemaError, match="metadata lacks"):
        schema_mod.validate(schema_mod.SCHEMA)
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(SchemaError, match="junk.parquet"):
        read_vocab_map(tmp_path / "junk.parquet")


def test_map_must_match_tokenizers(bpe, sp, bpe_to_sp):
    check_map_matches(bpe_to_sp, bpe, sp)
    check_map_matches(bpe_to_sp, tokenizer_fingerprint(bpe), tokenizer_fingerprint(sp))
    with pytest.raises(AlignmentError, match="other tokenizers: its pivot"):
        check_map_matches(bpe_to_sp, bpe, bpe)
    with pytest.raises(AlignmentError, match="its source"):
        check_map_matches(bpe_to_sp, sp, sp)
