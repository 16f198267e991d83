"""Metanetworks on parameter graphs: GMN and variants, baselines, task models, checkpoints."""

from metanets.conv import EdgeNodeConv
from metanets.encoders import EncoderConfig, GraphEncoder
from metanets.gmn import GMNBackbone, GMNConfig
from metanets.layers_extra import PNAEdgeConv, RelationalAttentionConv
from metanets.models import GRAPH_MODELS, Editor, ModelConfig, Predictor, build_model, load_checkpoint
from metanets.normalize import Normalizer
from metanets.pooling import GraphPool

__all__ = [
    "EdgeNodeConv", "Editor", "EncoderConfig", "GMNBackbone", "GMNConfig", "GRAPH_MODELS", "GraphEncoder",
    "GraphPool", "ModelConfig", "Normalizer", "PNAEdgeConv", "Predictor", "RelationalAttentionConv",
    "build_model", "load_checkpoint",
]
