"""The actor pool's resource request is checked against the cluster, with errors naming the settings."""

import pytest

from pipeline.capture.placement import actor_resources, check_cluster, check_fits
from pipeline.errors import ConfigError


def test_gpu_requests_that_cannot_be_placed_are_named():
    req = actor_resources(4, 2, 1.0, "cuda")
    assert req.gpus == 8
    check_fits(req, {"GPU": 8, "CPU": 64}, [8])
    with pytest.raises(ConfigError, match=r"num_actors × gpus_per_actor = 4 × 2 = 8 GPUs, but the Ray cluster has 4"):
        check_fits(req, {"GPU": 4, "CPU": 64}, [4])
    with pytest.raises(ConfigError, match=r"gpus_per_actor=4 but the largest node has 2 GPUs"):
        check_fits(actor_resources(1, 4, 1.0, "cuda"), {"GPU": 4, "CPU": 64}, [2, 2])
    with pytest.raises(ConfigError, match=r"hold only 2 actors of gpus_per_actor=3"):
        check_fits(actor_resources(3, 3, 1.0, "cuda"), {"GPU": 10, "CPU": 64}, [4, 4, 2])


def test_cpu_pool_must_leave_room_for_the_tasks():
    check_fits(actor_resources(1, 1, 1.0, "cpu"), {"CPU": 2}, [0])
    with pytest.raises(ConfigError, match=r"2 × 1 plus 0.5 for the tokenize/encode tasks needs 2.5 CPUs.* has 2"):
        check_fits(actor_resources(2, 1, 1.0, "cpu"), {"CPU": 2}, [0])
    with pytest.raises(ConfigError, match="gpus_per_actor=2 needs device=cuda"):
        actor_resources(1, 2, 1.0, "cpu")


@pytest.mark.ray
def test_against_the_running_cluster(ray_session):
    check_cluster(actor_resources(1, 1, 0.5, "cpu"))
    with pytest.raises(ConfigError, match="the Ray cluster has 0 "):
        check_cluster(actor_resources(1, 1, 0.5, "cuda"))
