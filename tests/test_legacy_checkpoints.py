"""Checkpoints written by train.py before tasks became modules (commit 941760d) still load and predict the same.

The fixtures hold a GMN predictor and a GHN trained then, three zoo rows, and the outputs the old
code computed for them (``tests/fixtures/legacy/expected.json``).
"""

import json
import os

import numpy as np
import torch
from torch import nn
from torch_geometric.data import Batch

import graphs
import tasks
from metanets.hyper import ArchGraph
from tasks.ghn import GHNTrainConfig
from tasks.predict import PredictConfig

HERE = os.path.join(os.path.dirname(__file__), "fixtures", "legacy")
EXPECTED = json.load(open(os.path.join(HERE, "expected.json")))


def test_a_predictor_checkpoint_of_941760d_predicts_what_it_did():
    path = os.path.join(HERE, "predict_gmn_941760d.pt")
    ckpt = tasks.read_checkpoint(path)
    assert ckpt["task"] == "predict"  # filled in from the old flat train_config
    cfg = tasks.task_config(ckpt, PredictConfig)  # the 35 old fields -> the task's own
    assert cfg.model == "gmn" and cfg.target == "test_acc"
    layout = graphs.Layout.from_json(ckpt["model_config"]["layout_json"])
    rows = np.load(os.path.join(HERE, "predict_rows.npy"))
    batch = Batch.from_data_list([graphs.to_graph(graphs.unflatten_state_dict(torch.from_numpy(r), layout), layout)
                                  for r in rows])
    with torch.no_grad():
        got = tasks.load_model(path)(batch)[:, 0]
    assert torch.allclose(got, torch.tensor(EXPECTED["predict"]), rtol=0, atol=1e-6), got
    assert got.std() > 0  # the three networks get different predictions


def test_a_ghn_checkpoint_of_941760d_predicts_the_same_parameters():
    path = os.path.join(HERE, "ghn_941760d.pt")
    ckpt = tasks.read_checkpoint(path)
    assert ckpt["task"] == "ghn" and tasks.task_config(ckpt, GHNTrainConfig).hops == ckpt["model_config"]["ghn"]["hops"]
    ghn = tasks.load_model(path)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))
    layout = graphs.trace(net, torch.randn(2, 1, 8, 8))
    with torch.no_grad():
        params = ghn(ArchGraph.of(layout, ghn.config.hops))
    for name, norm in EXPECTED["ghn_mlp_param_norms"].items():
        assert abs(float(params[name].norm()) - norm) < 1e-6 * max(1.0, norm), name
        assert abs(float(params[name].flatten()[0]) - EXPECTED["ghn_mlp_param_first"][name]) < 1e-6, name
