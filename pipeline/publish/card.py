"""The dataset card (README.md) of a published logit dataset: Hub YAML front matter plus what a reader must know."""

from __future__ import annotations

import yaml

from pipeline.io.resolve import DATA_DIR, META_DIR
from pipeline.publish.discover import ShardSource


def data_pattern(config: str) -> str:
    """The data_files glob of one config (what ``datasets`` and the Hub viewer read)."""
    return f"{DATA_DIR}/{config}/train-*.parquet"


def front_matter(sources: list[ShardSource], license: str) -> dict:
    """Hub metadata: license, tags and one config per shard set (its Parquet files as the train split)."""
    return {
        "license": license,
        "tags": ["logitfuse", "logit-distillation", "knowledge-distillation", "top-k-logits"],
        "configs": [{"config_name": s.config, "data_files": [{"split": "train", "path": data_pattern(s.config)}]}
                    for s in sources],
    }


def _source_model(m) -> str:
    """The source model an aligned set came from (matched by name in its align config)."""
    for spec in m.config.get("sources", []):
        name = spec.get("name") or str(spec.get("shards", "")).rstrip("/").split("/")[-1]
        if name == m.name:
            return spec.get("model", "?")
    return "?"


def _codec_text(c: dict) -> str:
    codec = c.get("codec", "?")
    if codec == "none":
        return "none (k=0: tokens and offsets only)"
    text = f"`{codec}` version {c.get('codec_version')}, vocab {c.get('codec_vocab_size')}"
    text += f", step {c['codec_step']}" if "codec_step" in c else ""
    text += " (typed Parquet lists: any reader)" if codec == "native" else " (compact blobs: logitfuse decodes)"
    return text + (f", converted from `{c['converted_from']}` when published" if "converted_from" in c else "")


def _describe(config: str, m) -> list[str]:
    c = m.codec
    rows = [("kind", m.kind), ("schema", f"`{m.shard_schema}` version {m.shard_schema_version}"),
            ("samples", m.num_samples), ("shards", f"{len(m.shards)} of {m.shard_size} samples"),
            ("tokens (response positions)", m.total_tokens), ("bytes", m.total_bytes),
            ("bytes/token", f"{m.stats.get('bytes_per_token', 0):.2f}"),
            ("plan fingerprint", f"`{m.plan_fingerprint}`"), ("config fingerprint", f"`{m.config_fingerprint}`")]
    if m.kind == "aligned":
        rows += [("source model", f"`{_source_model(m)}`"), ("pivot model", f"`{m.config.get('pivot_model', '?')}`"),
                 ("k", c.get("k", "?")), ("values", "float16 log-probs, plain list columns (no codec)"),
                 ("coverage", f"{m.stats.get('coverage', 0):.1%} of pivot positions aligned")]
        rows += [(f"{k.replace('_', ' ')} fingerprint", f"`{v}`") for k, v in sorted(m.fingerprints.items())]
    else:
        rows += [("model", f"`{m.config.get('model', m.name)}`"), ("source dataset", f"`{m.config.get('input', '?')}`"),
                 ("k", c.get("k", "?")), ("forward dtype", c.get("dtype", "?")), ("codec", _codec_text(c)),
                 ("truncated / skipped", f"{m.counts.get('truncated', 0)} / {m.counts.get('skipped', 0)}")]
        rows += [(f"{k.replace('_', ' ')} fingerprint", f"`{v}`") for k, v in sorted(m.fingerprints.items())
                 if k != "plan"]
    lines = [f"### `{config}`", "", "| | |", "| --- | --- |"]
    return lines + [f"| {k} | {v} |" for k, v in rows] + [""]


_NATIVE = '''### `native` configs: any Parquet reader

`topk_ids` is list<fixed_size_list<int32, k>> and `topk_logprobs` list<fixed_size_list<float32, k>>: per sample,
one list of k per response position (row t = the position predicting response token t), log-probs sorted
descending (log-softmax over the full vocabulary, rounded to fp16: the values the `lossless` codec holds).

polars:

```python
import numpy as np, polars as pl

df = pl.read_parquet("hf://datasets/{repo_id}/{data}/{config}/*.parquet")  # List(Array(Int32, k)) columns
ids = np.array(df["topk_ids"][0].to_list())                                # [n_positions, k] of sample 0
logprobs = np.array(df["topk_logprobs"][0].to_list(), dtype=np.float32)
```

DuckDB (`INTEGER[][]` / `FLOAT[][]`; list indices start at 1):

```python
import duckdb

files = "'hf://datasets/{repo_id}/{data}/{config}/*.parquet'"
ids, logprobs = duckdb.sql(f"SELECT topk_ids, topk_logprobs FROM {{files}} WHERE sample_index = 0").fetchall()[0]
top1 = duckdb.sql(f"SELECT sample_id, list_transform(topk_logprobs, lambda p: exp(p[1])) AS top1_prob "
                  f"FROM {{files}}").pl()
```

`datasets`:

```python
from datasets import load_dataset

rows = load_dataset("{repo_id}", "{config}", split="train").with_format("numpy")
ids, logprobs = rows[0]["topk_ids"], rows[0]["topk_logprobs"]  # [n_positions, k] arrays
```
'''

_DECODE = '''### Compact configs (`lossless`, `quantized`): logitfuse decodes

With logitfuse (decodes the codec, checks the schema; `verify` checks every checksum):

```python
from pipeline.io.reader import ShardSet, decode_topk, verify

shards = ShardSet("hf://datasets/{repo_id}/{config}")   # or a local copy: ShardSet("<folder>/{config}")
assert verify(shards.folder) == []
codec = shards.codec()
for row in shards.iter_rows():
    ids, logprobs = decode_topk(codec, row)   # [n_positions, k] int32 token ids, float32 log-probs
```

With `datasets` alone (the binary columns hold the codec blobs; the codec spec is in the manifest):

```python
import json
from datasets import load_dataset
from huggingface_hub import hf_hub_download
from pipeline.io.codec import CodecSpec, decode

rows = load_dataset("{repo_id}", "{config}", split="train")
manifest = json.load(open(hf_hub_download("{repo_id}", "{meta}/{config}/manifest.json", repo_type="dataset")))
spec = CodecSpec.from_metadata(manifest["codec"])
ids, logprobs = decode(spec, rows[0]["topk_ids"], rows[0]["topk_logprobs"], rows[0]["n_positions"])
```
'''

_ALIGNED = '''Aligned configs (`aligned-<source>`) need no codec: per pivot position t, `mapped_ids[t*k:(t+1)*k]` and
`mapped_logprobs[t*k:(t+1)*k]` are the source's top-k in pivot ids (padded with -1 / -inf), `rank_logprobs` the
source's own sorted top-k, `src_index[t]` the aligned source position (-1: unaligned).
'''


def _example(sources: list[ShardSource], manifests: dict, native: bool) -> str | None:
    """A logits config with top-k of the native (or a compact) codec, for the card's snippets."""
    for s in sources:
        m = manifests[s.config]
        codec = m.codec.get("codec")
        if m.kind == "logits" and codec not in (None, "none") and (codec == "native") == native:
            return s.config
    return None


def render(sources: list[ShardSource], repo_id: str, license: str, manifests: dict | None = None) -> str:
    """The whole README.md; ``manifests``: config -> the staged manifest (default: each source's own)."""
    manifests = manifests or {s.config: s.shards.manifest for s in sources}
    yaml_text = yaml.safe_dump(front_matter(sources, license), sort_keys=False)
    native, compact = _example(sources, manifests, True), _example(sources, manifests, False)
    converted = [s.config for s in sources if "converted_from" in manifests[s.config].codec]
    body = [f"# {repo_id.split('/')[-1]}", "",
            ("Top-k logit shards written by logitfuse (capture: teacher-forced forward pass over prompt + response; "
             "per response position the top-k token ids and log-probabilities, log-softmax over the full "
             "vocabulary, plus the target token), for logit distillation and model fusion (SFT + ULD + GLD). Rows "
             "keep the shard plan: row *i* of every config is the same sample."), "",
            (f"Files: `{DATA_DIR}/<config>/train-XXXXX-of-YYYYY.parquet` (byte-identical to the shards logitfuse "
             f"wrote" + (f"; the top-k of {', '.join(f'`{c}`' for c in converted)} re-encoded when published"
                         if converted else "") +
             f") and `{META_DIR}/<config>/manifest.json` (counts, sha256 per file, fingerprints, the job "
             f"config)."),
            "", "License: " + (f"`{license}`" if license != "other" else
                                "see the source dataset's and the models' terms (`other`)") + ".", "",
            "## Configs", ""]
    for s in sources:
        body += _describe(s.config, manifests[s.config])
    body += ["## Reading it back", ""]
    if native:
        body.append(_NATIVE.format(repo_id=repo_id, config=native, data=DATA_DIR))
    if compact or not native:
        body.append(_DECODE.format(repo_id=repo_id, config=compact or sources[0].config, meta=META_DIR))
    body.append(_ALIGNED)
    return f"---\n{yaml_text}---\n\n" + "\n".join(body)
