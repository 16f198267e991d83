"""Hypernetworks: predict the parameters of an architecture from its graph (GHN)."""

from metanets.hyper.apply import full_state_dict, functional_forward, recompute_bn_stats
from metanets.hyper.archgraph import ArchGraph
from metanets.hyper.ghn import GHN, GHNConfig

__all__ = ["ArchGraph", "GHN", "GHNConfig", "full_state_dict", "functional_forward", "recompute_bn_stats"]
