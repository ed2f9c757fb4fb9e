"""Peak bytes of the tensors torch ops allocate inside a block (CPU), counted by a dispatch mode.

tracemalloc does not see torch's allocator and RSS is blurred by the allocator's caching; this counts the storages
the ops themselves create (views and in-place results of existing storages are not new memory) and frees them when
the last tensor seen on them dies. Parameters and inputs made before the block are not counted.
"""

from __future__ import annotations

import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


class LiveBytes(TorchDispatchMode):
    """``with LiveBytes() as m: ...`` then ``m.peak``: the most bytes alive at once in op-created storages."""

    def __init__(self):
        super().__init__()
        self.live: dict[int, list[int]] = {}  # storage address -> [bytes, tensors seen on it]
        self.now = self.peak = 0
        self.largest = 0  # the largest single storage created

    def _release(self, key: int) -> None:
        entry = self.live.get(key)
        if entry is not None:
            entry[1] -= 1
            if entry[1] == 0:
                self.now -= entry[0]
                del self.live[key]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        inputs = {t.untyped_storage().data_ptr() for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if not isinstance(t, torch.Tensor):
                continue
            st = t.untyped_storage()
            key = st.data_ptr()
            if key == 0:
                continue
            if key in self.live:
                self.live[key][1] += 1
            elif key in inputs:
                continue  # a view or in-place result of a storage made before the block
            else:
                self.live[key] = [st.nbytes(), 1]
                self.now += st.nbytes()
                self.peak = max(self.peak, self.now)
                self.largest = max(self.largest, st.nbytes())
            weakref.finalize(t, self._release, key)
        return out
