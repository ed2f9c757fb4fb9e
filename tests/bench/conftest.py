"""One torch thread for the bench tests: their tensors are tiny, and a second thread only adds waiting, badly so
(10x and more) when other processes share the cores."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
