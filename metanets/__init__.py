"""Metanetworks on parameter graphs: GMN and variants, baselines, task models, hypernetworks.

Nothing here reads or writes files: scripts hand these modules dicts and tensors.
"""

from metanets.config import GRAPH_MODELS, ModelConfig
from metanets.conv import EdgeNodeConv
from metanets.encoders import EncoderConfig, GraphEncoder
from metanets.gmn import GMNBackbone, GMNConfig
from metanets.layers_extra import PNAEdgeConv, RelationalAttentionConv
from metanets.models import Editor, Predictor, build_model, model_from_checkpoint
from metanets.normalize import Normalizer
from metanets.pooling import GraphPool
from metanets.probes import ProbeFeatures

__all__ = [
    "EdgeNodeConv", "Editor", "EncoderConfig", "GMNBackbone", "GMNConfig", "GRAPH_MODELS", "GraphEncoder",
    "GraphPool", "ModelConfig", "Normalizer", "PNAEdgeConv", "Predictor", "ProbeFeatures", "RelationalAttentionConv",
    "build_model", "model_from_checkpoint",
]
