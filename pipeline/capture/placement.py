"""What the capture actor pool asks Ray for, checked against the cluster before anything starts.

Ray would otherwise wait forever for actors it can never place (an 8-GPU request on a 4-GPU cluster, a 4-GPU actor
on nodes of 2), and on a small CPU machine actors holding every CPU starve the tokenize tasks: Ray Data deadlocks.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.errors import ConfigError

TASK_CPUS = 0.5  # the tokenize and encode tasks' share (job.py); at least one must fit beside the actors


@dataclass(frozen=True)
class ActorResources:
    """Resources of one forward actor and how many the pool holds."""

    num_actors: int
    gpus_per_actor: int  # 0 on CPU
    cpus_per_actor: float

    @property
    def gpus(self) -> int:
        """GPUs the whole job uses."""
        return self.num_actors * self.gpus_per_actor


def actor_resources(num_actors: int, gpus_per_actor: int, cpus_per_actor: float, device: str) -> ActorResources:
    """The pool's request; ``gpus_per_actor > 1`` on CPU is a ConfigError (nothing to span)."""
    if device != "cuda" and gpus_per_actor > 1:
        raise ConfigError(f"capture: gpus_per_actor={gpus_per_actor} needs device=cuda (the device is {device})")
    return ActorResources(num_actors, gpus_per_actor if device == "cuda" else 0, cpus_per_actor)


def check_fits(req: ActorResources, total: dict[str, float], gpus_per_node: list[float]) -> None:
    """ConfigError naming the settings when ``req`` cannot be placed: ``total`` is ``ray.cluster_resources()``,
    ``gpus_per_node`` the GPU count of each alive node (an actor's GPUs must all be on one node)."""
    if req.gpus:
        have = total.get("GPU", 0)
        if req.gpus > have:
            raise ConfigError(f"capture: num_actors × gpus_per_actor = {req.num_actors} × {req.gpus_per_actor} = "
                              f"{req.gpus} GPUs, but the Ray cluster has {have:g} (ray.cluster_resources()); "
                              f"lower num_actors or gpus_per_actor")
        largest = max(gpus_per_node, default=0)
        if req.gpus_per_actor > largest:
            raise ConfigError(f"capture: gpus_per_actor={req.gpus_per_actor} but the largest node has {largest:g} "
                              f"GPUs: one model spans the GPUs of one node")
        fit = sum(int(g // req.gpus_per_actor) for g in gpus_per_node)
        if req.num_actors > fit:
            raise ConfigError(f"capture: the nodes' GPUs {sorted(gpus_per_node, reverse=True)} hold only {fit} "
                              f"actors of gpus_per_actor={req.gpus_per_actor}, not num_actors={req.num_actors}")
    cpus = total.get("CPU", 0)
    need = req.num_actors * req.cpus_per_actor + TASK_CPUS
    if need > cpus:
        raise ConfigError(f"capture: num_actors × cpus_per_actor = {req.num_actors} × {req.cpus_per_actor:g} plus "
                          f"{TASK_CPUS} for the tokenize/encode tasks needs {need:g} CPUs, the Ray cluster has "
                          f"{cpus:g}; lower cpus_per_actor (fractions work) or num_actors")


def check_cluster(req: ActorResources) -> None:
    """``check_fits`` against the running Ray cluster."""
    import ray

    nodes = [n.get("Resources", {}).get("GPU", 0) for n in ray.nodes() if n.get("Alive")]
    check_fits(req, ray.cluster_resources(), nodes)
