"""Probe features: each neuron's activation on probe inputs, read from the network's exported program.

Where a neuron's activation lives comes from the tracer's axis labels, not from per-layer code. The
exported (aten) program is walked once more with the symmetry rules; every input-dependent float value
whose axis label resolves to graph nodes (see :func:`graphs.compile.axis_maps`) is a candidate *site*
for those nodes. Each node reads the **last** site in program order that carries it: the output of
the activation after a linear/conv (or the pooling after it), the residual stream after its last
block, the network output for output neurons, the network input for input neurons. Axes other than
the batch (probe) axis and the channel axis (spatial positions, tokens) are averaged; so are the
several indices of a product axis (channels x positions after a flatten) that belong to one node.

Running the program needs no user source code: :class:`ProbeNet` rewrites a copy of the program's
graph to return the chosen sites and evaluates it as a pure function of the parameters, batched over
a zoo of one architecture with ``torch.vmap`` (a loop where vmap fails). Under a neuron symmetry each
site's channel axis is permuted as its label says, so the features are equivariant by construction:
``feats(apply_symmetry(sd, layout, perm)) == feats(sd)[:, node_permutation(layout, perm)]``.

Example::

    layout = graphs.trace(model, x)
    program = torch.export.export(model.eval(), (x,))     # what a zoo stores (torch.export.save)
    feats = probe_features(program, [model.state_dict()], layout, probes)   # [1, num_nodes, P]
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.export.passes import move_to_device_pass

from graphs.batch import flatten_state_dicts
from graphs.compile import axis_maps, compile_layout
from graphs.errors import LayoutMismatchError
from graphs.layout import Layout
from graphs.rules import RULES, fallback
from graphs.tracer import TensorVal, Tracer, export

__all__ = ["ProbeNet", "ProbeSite", "ProbeSites", "find_probe_sites", "probe_features"]

SITES_FORMAT = "weightgraph-probe-sites"


@dataclass(frozen=True)
class ProbeSite:
    """One intermediate value of the exported program that carries the activations of some graph nodes.

    Attributes:
        value: Name of the fx node (in ``program.graph``) that computes the value.
        batch_axis: Its probe (batch) axis; None when the program was exported with batch size 1.
        channel_axis: The axis whose units are graph neurons.
        nodes: Graph node of every index along ``channel_axis`` (-1: read from another site or none).
    """

    value: str
    batch_axis: int | None
    channel_axis: int
    nodes: tuple[int, ...]


@dataclass(frozen=True)
class ProbeSites:
    """Where every graph node's activation lives in one exported program (JSON-serializable).

    Attributes:
        layout: Fingerprint of the layout the node indices refer to.
        num_nodes: Nodes of that layout's graph.
        input_shapes: Shape of every user input of the program (its example batch first).
        sites: The values to read, in program order.
    """

    layout: str
    num_nodes: int
    input_shapes: tuple[tuple[int, ...], ...]
    sites: tuple[ProbeSite, ...]

    @property
    def batch_size(self) -> int:
        """The batch size the program was exported with (probes run in chunks of it)."""
        return self.input_shapes[0][0] if self.input_shapes and self.input_shapes[0] else 1

    def covered(self) -> torch.Tensor:
        """``[num_nodes]`` bool: nodes that some site reads (the others get zero features)."""
        out = torch.zeros(self.num_nodes, dtype=torch.bool)
        for s in self.sites:
            idx = torch.tensor([n for n in s.nodes if n >= 0], dtype=torch.long)
            out[idx] = True
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serializable dict (see :meth:`from_dict`)."""
        return {"format": SITES_FORMAT, "version": 1, "layout": self.layout, "num_nodes": self.num_nodes,
                "input_shapes": [list(s) for s in self.input_shapes],
                "sites": [[s.value, s.batch_axis, s.channel_axis, list(s.nodes)] for s in self.sites]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ProbeSites:
        """Inverse of :meth:`to_dict` (checks the format tag)."""
        if d.get("format") != SITES_FORMAT or d.get("version") != 1:
            raise ValueError(f"not probe sites of this weightgraph (format {d.get('format')!r} version "
                             f"{d.get('version')!r}); recompute them with graphs.probes.find_probe_sites")
        return cls(d["layout"], int(d["num_nodes"]), tuple(tuple(int(x) for x in s) for s in d["input_shapes"]),
                   tuple(ProbeSite(v, None if b is None else int(b), int(c), tuple(int(n) for n in nodes))
                         for v, b, c, nodes in d["sites"]))


# ------------------------------------------------------------------ where activations live
def find_probe_sites(program: torch.export.ExportedProgram, layout: Layout) -> ProbeSites:
    """Locate every graph node's activation in ``program`` (an export of ``layout``'s architecture).

    Args:
        program: ``torch.export`` program of the network (eval mode), e.g. from a zoo.
        layout: The network's Layout (traced from the same architecture).

    Returns:
        The sites to read, each node from the last value in program order whose axis carries it.

    Raises:
        LayoutMismatchError: When the program's parameters do not match ``layout``.
    """
    if not isinstance(program, torch.export.ExportedProgram):
        raise TypeError(f"find_probe_sites() needs a torch.export.ExportedProgram, got {type(program).__name__}; "
                        "export the network with graphs.tracer.export(model, example_inputs)")
    canonical = {a: p.name for p in layout.params for a in p.aliases}
    tracer = Tracer(program, RULES, fallback, canonical)
    tracer.run()
    reader = _SiteReader(tracer, layout)
    sig = program.graph_signature
    user = [n for n in program.graph.nodes if n.op == "placeholder" and n.name in sig.user_inputs]
    shapes = tuple(tuple(int(s) for s in n.meta["val"].shape) for n in user
                   if isinstance(n.meta.get("val"), torch.Tensor))
    batch_roots = {reader.root(tracer.values[n.name].labels[0]) for n in user
                   if isinstance(tracer.values.get(n.name), TensorVal) and tracer.values[n.name].shape
                   and tracer.values[n.name].shape[0] > 1}
    batched = bool(shapes and shapes[0] and shapes[0][0] > 1)

    candidates: list[tuple[str, int | None, int, list[int]]] = []
    for node in program.graph.nodes:
        val, meta = tracer.values.get(node.name), node.meta.get("val")
        if not isinstance(val, TensorVal) or val.weight or not isinstance(meta, torch.Tensor):
            continue  # weights and constants are not activations
        if not meta.is_floating_point() or len(val.labels) != meta.dim():
            continue
        batch_axis = None
        if batched:
            batch_axis = next((i for i, lab in enumerate(val.labels) if reader.root(lab) in batch_roots), None)
            if batch_axis is None:
                continue  # batch merged into another axis or reduced away: not one activation per probe
        for ax, lab in enumerate(val.labels):
            nodes = None if ax == batch_axis else reader.nodes(lab, val.shape[ax])
            if nodes is not None:
                candidates.append((node.name, batch_axis, ax, nodes))
    return ProbeSites(layout.fingerprint, reader.num_nodes, shapes, _last_sites(candidates, reader.num_nodes))


def _last_sites(candidates: list, num_nodes: int) -> tuple[ProbeSite, ...]:
    """Every node read from the last candidate (in program order) that carries it."""
    owner = [-1] * num_nodes
    for i, (_, _, _, nodes) in enumerate(candidates):
        for n in nodes:
            if n >= 0:
                owner[n] = i
    sites = []
    for i, (name, b, ax, nodes) in enumerate(candidates):
        mine = tuple(n if n >= 0 and owner[n] == i else -1 for n in nodes)
        if any(n >= 0 for n in mine):
            sites.append(ProbeSite(name, b, ax, mine))
    return tuple(sites)


class _SiteReader:
    """Tracer labels in layout terms: which graph node each index of a labelled axis is."""

    def __init__(self, tracer: Tracer, layout: Layout) -> None:
        self.alg, self.layout = tracer.alg, layout
        self.gid = _group_map(tracer, layout)
        c = compile_layout(layout)
        first: dict[int, int] = {}
        for n, s in enumerate(c.node_space.tolist()):
            first.setdefault(s, n)
        self.offset = {key: first[i] for i, key in enumerate(c.spaces)}
        self.num_nodes = c.num_nodes

    def root(self, lab) -> int | None:
        """The root atom of a label that is one atom (None otherwise)."""
        lab = self.alg.resolve(lab)
        return lab[1] if lab[0] == "a" else None

    def relabel(self, lab):
        """The label in layout group ids; None when it has an atom no parameter axis carries."""
        lab = self.alg.resolve(lab)
        if lab[0] == "u":
            return ("u",)
        if lab[0] == "a":
            g = self.gid.get(lab[1])
            return None if g is None else ("a", g)
        kids = [self.relabel(x) for x in lab[1]]
        return None if any(k is None for k in kids) else (lab[0], tuple(kids))

    def nodes(self, lab, size: int) -> list[int] | None:
        """Graph node of every index of an axis (-1 for none); None when the axis carries no node."""
        if self.alg.size(lab) != size:
            return None
        label = self.relabel(lab)
        if label is None:
            return None
        keys, units, _slots, _v = axis_maps(self.layout, label)
        nodes = [self.offset[k] + int(u) if k is not None and k in self.offset else -1
                 for k, u in zip(keys, units, strict=True)]
        return nodes if any(n >= 0 for n in nodes) else None


def _group_map(tracer: Tracer, layout: Layout) -> dict[int, int]:
    """Tracer root atom -> layout group id, by matching every parameter axis label with the layout's."""
    alg, gid = tracer.alg, {}
    known = {p.name: p for p in layout.params}
    for name, rec in tracer.params.items():
        p = known.get(name)
        if p is None or len(rec.labels) != len(p.axes):
            raise LayoutMismatchError(
                f"the program's parameter {name!r} is not in layout {layout.fingerprint} (or has another rank); "
                f"export the architecture the layout was traced from")
        for ax, (lab, want) in enumerate(zip(rec.labels, p.axes, strict=True)):
            if want == ("u",):
                continue
            if not _match(alg.resolve(lab), want, gid):
                raise LayoutMismatchError(
                    f"axis {ax} of {name!r} has another symmetry structure in the program than in layout "
                    f"{layout.fingerprint}; export the architecture the layout was traced from")
    return gid


def _match(got, want, gid: dict[int, int]) -> bool:
    if got[0] != want[0]:
        return False
    if got[0] == "u":
        return True
    if got[0] == "a":
        return gid.setdefault(got[1], want[1]) == want[1]
    return len(got[1]) == len(want[1]) and all(_match(a, b, gid) for a, b in zip(got[1], want[1], strict=True))


# ----------------------------------------------------------------------------- running
class ProbeNet:
    """A network's exported program, rewritten to return its probe sites, run as a function of its weights.

    Args:
        program: The network's ``torch.export`` program (eval mode). Its parameter and buffer values are
            used for everything the layout does not hold (integer buffers, constants).
        layout: The network's Layout.
        sites: Precomputed sites (default: :func:`find_probe_sites`).

    Call it with ``rows [B, num_params]`` (or state_dicts) and ``probes`` (one ``[P, *sample_shape]``
    tensor per user input of the program, in its order: positional inputs, then keyword inputs such as
    an attention mask) to get ``[B, num_nodes, P]``.
    """

    def __init__(self, program: torch.export.ExportedProgram, layout: Layout, sites: ProbeSites | None = None
                 ) -> None:
        self.layout = layout
        self.sites = sites if sites is not None else find_probe_sites(program, layout)
        if self.sites.layout != layout.fingerprint:
            raise LayoutMismatchError(f"probe sites were computed for layout {self.sites.layout}, not "
                                      f"{layout.fingerprint}")
        sig = program.graph_signature
        names = {p.name for p in layout.params}
        names |= {a for p in layout.params for a in p.aliases}
        canonical = {a: p.name for p in layout.params for a in p.aliases}
        # per placeholder: ("param", layout name) | ("fixed", tensor) | ("input", index); the program's
        # dtypes rule (its ops may assert them): weights and float probes are cast to the placeholder's dtype
        self._slots: list[tuple[str, Any]] = []
        self._dtypes: list[torch.dtype | None] = []
        n_in = 0
        holders = [n for n in program.graph.nodes if n.op == "placeholder"]
        for spec, holder in zip(sig.input_specs, holders, strict=True):
            kind, target = spec.kind.name, spec.target
            val = holder.meta.get("val")
            self._dtypes.append(val.dtype if isinstance(val, torch.Tensor) and val.is_floating_point() else None)
            if kind in ("PARAMETER", "BUFFER") and target in names:
                self._slots.append(("param", canonical.get(target, target)))
            elif kind in ("PARAMETER", "BUFFER"):
                value = program.state_dict[target] if target in program.state_dict else program.constants[target]
                self._slots.append(("fixed", value))
            elif kind in ("CONSTANT_TENSOR", "CUSTOM_OBJ"):
                self._slots.append(("fixed", program.constants[target]))
            elif kind == "USER_INPUT":
                self._slots.append(("input", n_in))
                n_in += 1
            else:
                raise ValueError(f"exported program has a {kind} input that probing does not support; export "
                                 "the network without it (eval mode, no buffer mutation)")
        self.num_inputs = n_in
        self.program = program
        home = next((t.device for t in program.state_dict.values()), torch.device("cpu"))
        self._modules = {home: self._reader(program)}  # other devices: a moved copy, made on first use
        index = [n for s in self.sites.sites for n in s.nodes]
        idx = torch.tensor(index, dtype=torch.long)
        self._keep = (idx >= 0).nonzero().view(-1)
        self._node = idx[self._keep]
        counts = torch.zeros(self.sites.num_nodes).index_add_(0, self._node, torch.ones(len(self._node)))
        self._weight = 1.0 / counts[self._node]
        self._fixed_cache: dict = {}
        self.vmap_ok: bool | None = None  # None: not tried yet; False: vmap failed once, loop from now on

    @classmethod
    def from_module(cls, model: nn.Module, layout: Layout, example_inputs: Any) -> ProbeNet:
        """Export ``model`` (eval mode) with ``example_inputs`` (any batch size) and prepare it."""
        return cls(export(model, example_inputs), layout)

    # -------------------------------------------------------------- helpers
    def _reader(self, program: torch.export.ExportedProgram) -> torch.fx.GraphModule:
        """A copy of the program's graph that returns the site values instead of the network's outputs."""
        graph = torch.fx.Graph()
        val_map: dict = {}
        graph.graph_copy(program.graph, val_map)
        by_name = {n.name: n for n in program.graph.nodes}
        missing = [s.value for s in self.sites.sites if s.value not in by_name]
        if missing:
            raise LayoutMismatchError(f"probe sites name values {missing[:3]} that this program does not have; "
                                      "recompute them with find_probe_sites(program, layout)")
        graph.output(tuple(val_map[by_name[s.value]] for s in self.sites.sites))
        graph.eliminate_dead_code()
        return torch.fx.GraphModule(program.graph_module, graph)

    def module(self, device: torch.device) -> torch.fx.GraphModule:
        """The site reader for ``device`` (ops that name a device, e.g. a mask's ``arange``, are moved)."""
        device = torch.device(device)
        got = self._modules.get(device)
        if got is None:
            with warnings.catch_warnings():  # deepcopy of a program warns about a deprecated pytree check
                warnings.simplefilter("ignore", FutureWarning)
                program = copy.deepcopy(self.program)
            moved = move_to_device_pass(program, device)  # the pass works in place: move a copy
            got = self._reader(moved)
            self._modules[device] = got
        return got

    def _params(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        return {p.name: rows[:, p.offset:p.offset + p.numel].reshape(rows.shape[0], *p.shape)
                for p in self.layout.params}

    def _fixed(self, value: torch.Tensor, device: torch.device) -> torch.Tensor:
        key = (id(value), device)
        got = self._fixed_cache.get(key)
        if got is None:
            got = self._fixed_cache[key] = value.to(device)
        return got

    def _run_one(self, params: Mapping[str, torch.Tensor], inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        """One network on one chunk of ``batch_size`` probes: ``[batch_size, num_reads]`` pooled activations."""
        device = inputs[0].device
        args = []
        for (kind, what), dtype in zip(self._slots, self._dtypes, strict=True):
            if kind == "fixed":
                args.append(self._fixed(what, device))
                continue
            x = params[what] if kind == "param" else inputs[what]
            args.append(x.to(dtype) if dtype is not None and x.is_floating_point() else x)
        outs = self.module(device)(*args)
        pooled = []
        for site, out in zip(self.sites.sites, outs, strict=True):
            if site.batch_axis is None:
                v = out.movedim(site.channel_axis, 0).reshape(1, out.shape[site.channel_axis], -1)
            else:
                v = out.movedim((site.batch_axis, site.channel_axis), (0, 1))
                v = v.reshape(v.shape[0], v.shape[1], -1)
            pooled.append(v.mean(-1))
        return torch.cat(pooled, dim=1)

    def _inputs(self, probes) -> tuple[list[torch.Tensor], int]:
        """Probes as chunks ``[n_chunks, batch_size, *sample]`` per input (last chunk padded by repetition)."""
        probes = list(probes) if isinstance(probes, (tuple, list)) else [probes]
        if len(probes) != self.num_inputs:
            raise ValueError(f"the network takes {self.num_inputs} inputs but {len(probes)} probe tensors were "
                             "given; pass one [P, *sample_shape] tensor per input")
        want = self.sites.input_shapes
        n = probes[0].shape[0] if probes[0].dim() else 0
        for i, (p, shape) in enumerate(zip(probes, want, strict=True)):
            if not isinstance(p, torch.Tensor) or tuple(p.shape[1:]) != tuple(shape[1:]) or p.shape[0] != n:
                got = tuple(p.shape) if isinstance(p, torch.Tensor) else type(p).__name__
                need = ", ".join(str(d) for d in shape[1:])
                raise ValueError(f"probe input {i} has shape {got}; the network needs [P, {need}] with the same "
                                 "P for every input")
        if n < 1:
            raise ValueError("no probes: pass at least one probe input")
        b0 = self.sites.batch_size
        chunks = -(-n // b0)
        pad = chunks * b0 - n
        out = []
        for p in probes:
            if pad:
                p = torch.cat([p, p[torch.arange(pad, device=p.device) % n]])
            out.append(p.reshape(chunks, b0, *p.shape[1:]))
        return out, n

    # ---------------------------------------------------------------- call
    def __call__(self, weights, probes, vmap: bool = True) -> torch.Tensor:
        """Probe features ``[B, num_nodes, P]`` of ``weights`` (rows ``[B, num_params]`` or state_dicts).

        Args:
            weights: Flat parameter rows of the layout, or one state_dict, or a list of them.
            probes: ``[P, *sample_shape]`` (or a tuple, one per network input), on the rows' device. An
                ``nn.Parameter`` gets gradients (learned probes).
            vmap: Batch over networks with ``torch.vmap`` (falls back to a loop when vmap fails).
        """
        rows = _rows(weights, self.layout)
        chunks, n = self._inputs(probes)
        chunks = [c.to(rows.device) for c in chunks]
        params = self._params(rows)
        vals = None
        if vmap and self.vmap_ok is not False:
            def per_net(ps, xs):
                return torch.vmap(lambda *x: self._run_one(ps, x))(*xs)
            try:
                vals = torch.vmap(per_net, in_dims=(0, None))(params, chunks)
                self.vmap_ok = True
            except Exception:  # an op without a batching rule, random ops...: the loop below is exact
                if self.vmap_ok:
                    raise
                self.vmap_ok = False
        if vals is None:
            vals = torch.stack([torch.stack([self._run_one({k: v[b] for k, v in params.items()},
                                                           [c[j] for c in chunks])
                                             for j in range(chunks[0].shape[0])])
                                for b in range(rows.shape[0])])
        vals = vals.reshape(rows.shape[0], -1, vals.shape[-1])[:, :n]  # [B, P, reads]
        picked = vals.index_select(2, self._keep.to(rows.device)) * self._weight.to(rows.device, vals.dtype)
        feats = vals.new_zeros(rows.shape[0], n, self.sites.num_nodes).index_add(2, self._node.to(rows.device),
                                                                                   picked)
        return feats.transpose(1, 2).to(rows.dtype)


def _rows(weights, layout: Layout) -> torch.Tensor:
    if isinstance(weights, torch.Tensor):
        rows = weights[None] if weights.dim() == 1 else weights
        if rows.dim() != 2 or rows.shape[1] != layout.num_params:
            raise LayoutMismatchError(f"rows have shape {tuple(weights.shape)}, layout {layout.fingerprint} needs "
                                      f"(B, {layout.num_params})")
        return rows
    if isinstance(weights, Mapping):
        weights = [weights]
    if isinstance(weights, Sequence) and weights and all(isinstance(w, Mapping) for w in weights):
        return flatten_state_dicts(list(weights), layout)
    raise TypeError(f"expected parameter rows [B, num_params], a state_dict or a list of state_dicts, got "
                    f"{type(weights).__name__}")


def probe_features(program_or_module, weights, layout: Layout, probes, vmap: bool = True) -> torch.Tensor:
    """Every graph node's activation on each probe input: ``[B, num_nodes, P]`` (zeros for nodes with none).

    Args:
        program_or_module: The network's ``torch.export.ExportedProgram`` (no source code needed), an
            ``nn.Module`` of the layout's architecture (exported here with the probes as example inputs),
            or a prepared :class:`ProbeNet` (cheapest when called repeatedly).
        weights: Flat parameter rows ``[B, num_params]`` of the layout, a state_dict, or a list of them.
        layout: The architecture's Layout.
        probes: ``[P, *sample_shape]`` tensor (a tuple of them for several inputs); may be an
            ``nn.Parameter`` (learned probes: gradients flow through the network's function).
        vmap: Batch over networks with ``torch.vmap`` (a loop where vmap fails).

    Returns:
        ``[B, num_nodes, P]``: node ``n``'s mean activation (over positions/tokens) on probe ``p``.
    """
    if isinstance(program_or_module, ProbeNet):
        net = program_or_module
    elif isinstance(program_or_module, torch.export.ExportedProgram):
        net = ProbeNet(program_or_module, layout)
    elif isinstance(program_or_module, nn.Module):
        xs = probes if isinstance(probes, (tuple, list)) else (probes,)
        xs = tuple(x.detach() for x in xs)
        if xs[0].shape[0] < 2:  # a batch of one hides the batch axis: export with two copies
            xs = tuple(torch.cat([x, x]) for x in xs)
        net = ProbeNet.from_module(program_or_module, layout, xs)
    else:
        raise TypeError(f"probe_features() needs an ExportedProgram, an nn.Module or a ProbeNet, got "
                        f"{type(program_or_module).__name__}")
    return net(weights, probes, vmap=vmap)
