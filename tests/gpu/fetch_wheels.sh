#!/usr/bin/env bash
# Run on a machine with PyPI before a GPU session: puts into .whl/ (git-ignored) the wheels the device check needs
# that the GPU machine's image lacks (Python 3.12, x86-64; its torch, transformers, accelerate, pyarrow, pandas,
# numpy, tokenizers, tqdm, pyyaml, protobuf, msgpack, click, filelock, requests are used as they are).
# Ray's wheel (79 MB) exceeds what may travel (64 MiB in all), so its Java jar (ray_dist.jar, 35 MB, only for
# Java workers) and the dashboard's source maps are dropped and the wheel repacked (RECORD rewritten to match).
set -eu
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
mkdir -p .whl
PLAT="--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64"
PLAT="$PLAT --platform manylinux_2_27_x86_64 --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64"
PINS=$(grep -iE '^(ray|zstandard|jsonschema|jsonschema-specifications|referencing|rpds-py)==' constraints.txt)
$PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $PLAT -d .whl $PINS
$PY - <<'PYEOF'
import glob, os, zipfile
src = glob.glob(".whl/ray-*.whl")[0]
dst = src + ".tmp"
drop = lambda n: n.startswith("ray/jars/") or n.endswith(".js.map")
with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
    for item in zin.infolist():
        if drop(item.filename):
            continue
        data = zin.read(item.filename)
        if item.filename.endswith(".dist-info/RECORD"):
            data = b"\n".join(l for l in data.split(b"\n") if not drop(l.split(b",")[0].decode()))
        zout.writestr(item, data)
os.replace(dst, src)
PYEOF
du -ch .whl/*.whl | tail -1
