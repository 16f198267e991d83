r"""Probe features as node inputs: every neuron's activations on P probe inputs, computed by running the networks.

:class:`ProbeFeatures` reads the weights of each graph of a PyG batch back into flat rows, runs the
architecture's exported program on the probes (:class:`graphs.probes.ProbeNet`, batched with
``torch.vmap``) and stores the result as ``batch.probe [num_nodes, P]``. The GMN encoder adds
:math:`W_p\,a_v` to node ``v``'s embedding when built with ``GMNConfig.probe_dim = P``. Activations
permute with their neurons, so this keeps every graph metanetwork equivariant (and its pooled readout
invariant). Probes are fixed (a buffer: e.g. inputs drawn from the zoo's training data, or grid
coordinates for INRs) or learned (an ``nn.Parameter`` trained with the metanetwork, gradients flowing
through the input networks' function).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn
from torch_geometric.data import Batch

from graphs.batch import batch_to_rows
from graphs.compile import compile_layout
from graphs.errors import LayoutMismatchError
from graphs.probes import ProbeNet

__all__ = ["ProbeFeatures"]


class ProbeFeatures(nn.Module):
    r"""Attach probe features :math:`a_v \in \mathbb{R}^P` to every node of a batch of ParamGraphs.

    .. math:: a_v[p] = \operatorname{mean}_{\text{positions}}\ f_{\theta}^{(v)}(x_p)

    (the activation of neuron ``v`` of the graph's network :math:`f_\theta` on probe :math:`x_p`; zero for
    nodes without one, e.g. parameter nodes), optionally squashed with :math:`\operatorname{asinh}`.

    Args:
        nets: The :class:`graphs.probes.ProbeNet` of every network function the batches hold: one for
            a zoo of one architecture; several for a mixed zoo whose networks take the same inputs.
            Networks with one layout may still compute different functions (the activation has no
            weights): give each such function its own ProbeNet and each graph its index into ``nets``
            as ``batch.program [num_graphs]``. Without ``batch.program`` a graph uses the one ProbeNet
            of its layout.
        probes: ``[P, *sample_shape]`` probe inputs, or the number ``P`` (zeros of the networks' input
            shape, to be filled by ``load_state_dict`` from a checkpoint).
        learned: Train the probes (an ``nn.Parameter``) instead of keeping them fixed (a buffer). Both
            are stored in the state_dict under ``probes``.
        squash: Apply ``asinh`` to the activations (keeps the sign, compresses large values).

    Shapes:
        input: a batch of ParamGraphs (``x``, ``edge_attr``, ``ptr``, ``layout`` per graph; optionally
        ``program``).
        output: a shallow copy of the batch with ``probe [num_nodes, P]``.
    """

    def __init__(self, nets: ProbeNet | Sequence[ProbeNet], probes: torch.Tensor | int, learned: bool = False,
                 squash: bool = False) -> None:
        super().__init__()
        nets = [nets] if isinstance(nets, ProbeNet) else list(nets)
        if not nets:
            raise ValueError("ProbeFeatures needs the ProbeNet of at least one architecture")
        if any(n.num_inputs != 1 for n in nets):
            raise ValueError("ProbeFeatures supports networks of one input; call graphs.probes.probe_features "
                             "directly for networks of several inputs")
        self.nets = nets
        if isinstance(probes, int):
            probes = torch.zeros(probes, *nets[0].sites.input_shapes[0][1:])
        probes = probes.detach().clone()
        for n in nets:
            if tuple(n.sites.input_shapes[0][1:]) != tuple(probes.shape[1:]):
                raise ValueError(f"probes have shape {tuple(probes.shape)} but architecture {n.layout.fingerprint} "
                                 f"takes inputs of shape {tuple(n.sites.input_shapes[0][1:])}")
        if learned:
            self.probes = nn.Parameter(probes)
        else:
            self.register_buffer("probes", probes)
        self.learned, self.squash = learned, squash

    @property
    def num_probes(self) -> int:
        """``P``: features per node."""
        return int(self.probes.shape[0])

    def programs(self, batch: Batch, fps: list[str]) -> list[int]:
        """Index into ``nets`` of every graph of ``batch`` (``batch.program``, else by layout)."""
        given = getattr(batch, "program", None)
        if given is not None:
            idx = [int(i) for i in torch.as_tensor(given).reshape(-1).tolist()]
            if len(idx) != len(fps) or any(not 0 <= i < len(self.nets) for i in idx):
                raise ValueError(f"batch.program must give each of the {len(fps)} graphs an index into the "
                                 f"{len(self.nets)} ProbeNets")
            bad = [i for i, fp in zip(idx, fps, strict=True) if self.nets[i].layout.fingerprint != fp]
            if bad:
                raise LayoutMismatchError(f"batch.program names ProbeNet {bad[0]} for a graph of another layout")
            return idx
        by_fp: dict[str, list[int]] = {}
        for i, n in enumerate(self.nets):
            by_fp.setdefault(n.layout.fingerprint, []).append(i)
        for fp in fps:
            if fp not in by_fp:
                raise LayoutMismatchError(f"the batch holds graphs of architecture {fp} that this model has no "
                                          f"exported program for; build ProbeFeatures with the ProbeNet of every "
                                          f"architecture of the zoo (known: {sorted(by_fp)})")
            if len(by_fp[fp]) > 1:
                raise ValueError(f"{len(by_fp[fp])} ProbeNets share layout {fp}; say which one runs each graph "
                                 "with batch.program [num_graphs]")
        return [by_fp[fp][0] for fp in fps]

    def features(self, batch: Batch) -> torch.Tensor:
        """``[num_nodes, P]`` probe features of every node of ``batch``."""
        layouts = batch.layout if isinstance(batch.layout, (list, tuple)) else [batch.layout]
        fps = [lay.fingerprint for lay in layouts]
        which = self.programs(batch, fps)
        if len(set(which)) == 1:  # one function: one gather back to rows (graphs.batch.batch_to_rows)
            feats = self._run(self.nets[which[0]], batch_to_rows(batch, layouts[0]))
            return feats.reshape(-1, feats.shape[-1]).to(batch.x.dtype)
        ptr = batch.ptr.tolist() if hasattr(batch, "ptr") and batch.ptr is not None else [0, batch.num_nodes]
        edge_counts = [compile_layout(lay).edge_index.shape[1] for lay in layouts]
        edge_start = [0]
        for e in edge_counts:
            edge_start.append(edge_start[-1] + e)
        if edge_start[-1] != batch.edge_attr.shape[0] or ptr[-1] != batch.x.shape[0]:
            raise LayoutMismatchError("batch sizes do not match its graphs' layouts; build batches with "
                                      "graphs.batch.rows_to_batch or datasets.ZooDataset")
        out = batch.x.new_zeros(batch.x.shape[0], self.num_probes)
        for k in sorted(set(which)):
            net = self.nets[k]
            rows, nodes = _rows(batch, net, [i for i, w in enumerate(which) if w == k], ptr, edge_start)
            feats = self._run(net, rows)
            out = out.index_copy(0, nodes, feats.reshape(-1, feats.shape[-1]).to(out.dtype))
        return out

    def _run(self, net: ProbeNet, rows: torch.Tensor) -> torch.Tensor:
        """``[G, N, P]`` features of rows of one architecture."""
        feats = net(rows, self.probes)
        return torch.asinh(feats) if self.squash else feats

    def forward(self, batch: Batch) -> Batch:
        out = copy.copy(batch)
        out.probe = self.features(batch)
        return out


def _rows(batch: Batch, net: ProbeNet, ids: list[int], ptr: list[int], edge_start: list[int]
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat parameter rows ``[G, num_params]`` of graphs ``ids`` (one layout) and their node indices ``[G * N]``."""
    c = compile_layout(net.layout)
    k, n, e = c.width, c.num_nodes, c.edge_index.shape[1]
    dev = batch.x.device
    ea, x = batch.edge_attr[:, :k], batch.x[:, :k]
    flat = torch.cat([ea.reshape(-1), x.reshape(-1)])
    es = torch.tensor([edge_start[i] for i in ids], device=dev)
    ns = torch.tensor([ptr[i] for i in ids], device=dev)
    local = torch.cat([es[:, None] * k + torch.arange(e * k, device=dev),
                       ea.shape[0] * k + ns[:, None] * k + torch.arange(n * k, device=dev)], dim=1)
    rows = flat[local[:, c.inverse.to(dev)]]
    nodes = (ns[:, None] + torch.arange(n, device=dev)).reshape(-1)
    return rows, nodes
