"""The fault matrix: each test is marked ``fault(KIND)`` and counted; the session ends with one JSON line

    {"bench": "reliability", "figure": "fault_matrix", "kills_survived": "k/n", "corruptions_caught": "k/n", ...}

(k = passed, n = run; a failing test is a fault not survived). Faults are applied to copies of shard sets captured
once per session (``fusion_shards`` in tests/conftest.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

import pyarrow.parquet as pq
import pytest

KINDS = {"kill": "kills_survived", "corruption": "corruptions_caught", "bad_input": "bad_inputs_named",
         "writer": "writer_conflicts_refused", "write_error": "write_errors_clean", "stray": "stray_files_ignored"}
_COUNTS: dict[str, list[int]] = defaultdict(lambda: [0, 0])


def pytest_runtest_makereport(item, call):
    marker = item.get_closest_marker("fault")
    if marker is None or call.when != "call":
        return
    counts = _COUNTS[marker.args[0]]
    counts[1] += 1
    counts[0] += call.excinfo is None


def pytest_terminal_summary(terminalreporter):
    if _COUNTS:
        figures = {KINDS[k]: f"{ok}/{n}" for k, (ok, n) in sorted(_COUNTS.items())}
        terminalreporter.write_line(json.dumps({"bench": "reliability", "figure": "fault_matrix", **figures}))


# ---------------------------------------------------------------------------------------------------- parquet
def byte_offsets(path: Path, column: str = "input_ids") -> dict[str, int]:
    """One byte offset per structural region of a Parquet file: magic, a page header, the middle of a data page
    (compressed values of ``column`` in row group 0), the footer (Thrift metadata), its length, the closing magic."""
    size = path.stat().st_size
    meta = pq.ParquetFile(path).metadata
    names = [meta.schema.column(j).path.split(".")[0] for j in range(meta.num_columns)]
    chunk = meta.row_group(0).column(names.index(column))
    first = chunk.dictionary_page_offset or chunk.data_page_offset
    footer_len = int.from_bytes(path.read_bytes()[-8:-4], "little")
    return {"magic-head": 1, "page-header": first + 1, "data-page": first + chunk.total_compressed_size // 2,
            "footer": size - 8 - footer_len // 2, "footer-length": size - 7, "magic-tail": size - 2}


def copy_set(src: Path, dst: Path) -> Path:
    """A copy of a shard folder (or of a whole output root) to corrupt."""
    shutil.copytree(src, dst)
    return dst


# ---------------------------------------------------------------------------------------------------- tmpfs
@pytest.fixture
def small_tmpfs(tmp_path):
    """A factory mounting a tmpfs of a given size (root only); unmounted after the test."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (mount -t tmpfs); this run is not root")
    mounted: list[Path] = []

    def mount(size: int, options: str = "") -> Path:
        point = tmp_path / f"tmpfs{len(mounted)}"
        point.mkdir()
        opts = f"size={size}" + (f",{options}" if options else "")
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(point)], capture_output=True, text=True)
        if r.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in reversed(mounted):
        subprocess.run(["umount", "-l", str(point)], check=False)
