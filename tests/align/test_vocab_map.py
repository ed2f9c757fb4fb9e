import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rapidfuzz import process
from rapidfuzz.distance import Levenshtein

from pipeline.align.nearest import candidates, nearest, nearest_same_start
from pipeline.align.offsets import align_offsets
from pipeline.align.vocab_map import (build_vocab_map, check_map_matches, fan_in, gather_cooc, map_array,
                                      read_vocab_map, summarize, write_vocab_map)
from pipeline.errors import AlignmentError, SchemaError
from pipeline.modeling.canonical import canonicalize, tokenizer_fingerprint
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
    # edit rows (the pivot has <0xNN> tokens, so a byte prefix always exists): the longest pivot token that is a
    # byte prefix of the source token, and the recorded distance is the byte edit distance to it
    pivot_bytes = {b for j, b in enumerate(piv.token_bytes) if not piv.special[j]}
    for i in np.flatnonzero(methods == "edit"):
        q, got = src.token_bytes[i], piv.token_bytes[ids[i]]
        longest = max(n for n in range(1, len(q)) if q[:n] in pivot_bytes)
        assert got == q[:longest] and dist[i] == Levenshtein.distance(q, got) == len(q) - longest
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
    choice_ids = [j for j in range(len(piv)) if not piv.special[j] and not piv.byte_fallback[j]]
    edit = [i for i, m in enumerate(methods) if m == "edit"]
    found = candidates([src.token_bytes[i] for i in edit], [piv.token_bytes[j] for j in choice_ids], k=4)
    i, idx = next((i, idx) for i, (idx, _) in zip(edit, found) if idx.size >= 2)
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
    (lambda t: t.replace_schema_metadata({**t.schema.metadata, b"schema_version": b"9"}), "schema_version"),
    (lambda t: t.replace_schema_metadata({**t.schema.metadata, b"schema_version": b"1"}), "overwrite=true"),
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


def test_multibyte_tokens_map_to_their_leading_bytes(multilingual, bpe):
    """CJK, Hangul, emoji and accented source tokens onto a byte-level pivot trained on English-like text: each maps to
    a pivot token its bytes start with (never to an unrelated id such as '!'), and no pivot id receives more source
    ids than there are source tokens starting with its bytes."""
    table = build_vocab_map(multilingual, bpe)
    src, piv = canonicalize(multilingual), canonicalize(bpe)
    ids, methods = map_array(table), np.asarray(table.column("method").to_pylist())
    mapped = np.flatnonzero(np.isin(methods, ["exact", "edit"]))
    multibyte = [i for i in mapped if max(src.token_bytes[i]) >= 0x80]
    scripts = {"cjk": b"\xe4", "hangul": b"\xea", "emoji": b"\xf0\x9f", "accented": b"\xc3"}
    for name, lead in scripts.items():  # the vocabulary really holds each kind, mapped by edit distance
        assert any(lead in src.token_bytes[i] and methods[i] == "edit" for i in multibyte), name
    for i in mapped:
        assert src.token_bytes[i].startswith(piv.token_bytes[ids[i]]), (src.tokens[i], piv.tokens[ids[i]])
    # the bound: a pivot id only receives source tokens that start with its bytes
    starts_with = {p: sum(src.token_bytes[i].startswith(piv.token_bytes[p]) for i in mapped) for p, _ in
                   fan_in(table, top=20) if not piv.special[p]}
    for p, received in fan_in(table, top=20):
        assert piv.special[p] or received <= starts_with[p]
    bang = bpe.get_vocab()["!"]
    assert (ids == bang).sum() == sum(src.token_bytes[i].startswith(b"!") for i in mapped)
    # the report: fan_in lists the largest receivers, most first, with their true counts
    top = fan_in(table, top=3)
    counts = np.bincount(ids[ids >= 0])
    assert [c for _, c in top] == sorted(counts, reverse=True)[:3] and all(counts[p] == c for p, c in top)


def test_edit_search_on_bytes_prefers_the_tokens_leading_bytes():
    han = "中".encode()  # e4 b8 ad
    one, pair = "一".encode(), han[:2]  # 一 = e4 b8 80: one substitution away, like the byte pair e4 b8
    choices = [b"!", one, b" ", pair, han[:1]]
    (idx, dist), = nearest_same_start([han], choices, k=2)
    assert idx.tolist() == [3, 1] and dist.tolist() == [1, 1]  # tie at 1: the prefix of the query first
    (idx, _), = nearest_same_start([b"\xea\xb0\x80"], choices)  # no choice starts with 0xEA: searched among all
    assert idx.size == 1
    (idx, dist), = candidates([han + b"x"], choices, k=3)  # byte prefixes, longest first
    assert idx.tolist() == [3, 4] and dist.tolist() == [2, 3]
    (idx, _), = candidates([han + b"x"], choices, max_distance=2)
    assert idx.tolist() == [3]
