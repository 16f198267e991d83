"""Record the labelled intermediate activations of two networks of one layout on a batch.

The network is exported and traced once (as :func:`graphs.trace` does); the tracer has labelled every
axis of every intermediate value with the same group algebra as the parameters. The exported graph is
then run by an FX interpreter with each network's state_dict bound to its parameter placeholders, and
every input-dependent floating value with a permutable axis is kept with its labels rewritten in the
layout's group ids. This reaches every group that labels some activation axis, whatever module computes
it (heads and head dims of attention, grouped and depthwise convolutions, residual streams), with no
per-module hooks. Of a chain of values with the same labels and shape (pre-activation -> activation ->
dropout) only the last is kept.

Each kept value is standardized per neuron (mean 0, variance 1 over the batch, token and spatial axes),
so the inner products that :func:`graphs.align` maximizes are correlations.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from graphs.errors import LayoutMismatchError
from graphs.layout import Layout, build_layout, canonical_names
from graphs.rules import RULES, fallback
from graphs.tracer import TensorVal, Tracer, export

__all__ = ["label_atoms", "record_activations"]


def record_activations(model: nn.Module, layout: Layout, ref_sd: Mapping[str, torch.Tensor],
                       other_sd: Mapping[str, torch.Tensor], inputs: tuple) -> tuple[list, list]:
    """Standardized activations of both networks on ``inputs``.

    Args:
        model: A module of the architecture (its weights are not used).
        layout: The layout both state_dicts follow.
        ref_sd: Reference state_dict.
        other_sd: The other state_dict.
        inputs: Positional inputs (one batch).

    Returns:
        ``(ref, other)``: lists of ``(tensor, axes)`` with ``axes`` one layout label per tensor axis
        (atoms the layout does not know, such as batch and token axes, become blocks of unit labels).

    Raises:
        LayoutMismatchError: When ``model`` does not trace to ``layout``.
    """
    program = export(model, inputs)
    tracer = Tracer(program, RULES, fallback, canonical_names(model))
    tracer.run()
    traced = build_layout(tracer, model)
    if traced != layout:
        raise LayoutMismatchError(f"the module traces to {traced!r}, not to the layout given ({layout!r}); "
                                  "pass a module of the architecture the layout was traced from")
    gid = _group_ids(tracer, layout)
    permutable = {g.id for g in layout.permutable_groups()}
    keep = _selected(program, tracer, gid, permutable)
    out = []
    for sd in (ref_sd, other_sd):
        values = _run(program, sd, inputs, set(keep))
        out.append([(_standardize(values[name], axes, layout), axes) for name, axes in keep.items()])
    return out[0], out[1]


def _group_ids(tracer: Tracer, layout: Layout) -> dict[int, int]:
    """Union-find root -> layout group id, by walking the parameters' labels beside the layout's."""
    roots: dict[int, int] = {}

    def walk(lab, lay) -> None:
        if lab[0] == "a" and lay[0] == "a":
            roots[lab[1]] = lay[1]
        elif lab[0] == lay[0] and lab[0] in ("p", "c") and len(lab[1]) == len(lay[1]):
            for x, y in zip(lab[1], lay[1], strict=True):
                walk(x, y)

    for p in layout.params:
        rec = tracer.params.get(p.name)
        if rec is not None:
            for lab, lay in zip(rec.labels, p.axes, strict=True):
                walk(tracer.alg.resolve(lab), lay)
    return roots


def _relabel(tracer: Tracer, label, gid: dict[int, int]):
    """A resolved tracer label in layout group ids; unknown atoms become blocks of units (never permuted)."""
    label = tracer.alg.resolve(label)
    if label[0] == "u":
        return ("u",)
    if label[0] == "a":
        if label[1] in gid:
            return ("a", gid[label[1]])
        return ("c", (("u",),) * tracer.alg.size(label))
    return (label[0], tuple(_relabel(tracer, x, gid) for x in label[1]))


def _selected(program, tracer: Tracer, gid: dict[int, int], permutable: set[int]) -> dict[str, tuple]:
    """Node name -> layout labels of the values to record, in graph order."""
    cand: dict[str, tuple] = {}
    for node in program.graph.nodes:
        val = tracer.values.get(node.name)
        meta = node.meta.get("val")
        if node.op != "call_function" or not isinstance(val, TensorVal) or val.weight:
            continue
        if not isinstance(meta, torch.Tensor) or not meta.is_floating_point():
            continue
        axes = tuple(_relabel(tracer, lab, gid) for lab in val.labels)
        if any(label_atoms(a) & permutable for a in axes):
            cand[node.name] = (axes, tuple(meta.shape))
    keep = {}
    for node in program.graph.nodes:
        if node.name not in cand:
            continue
        users = list(node.users)
        if len(users) == 1 and cand.get(users[0].name) == cand[node.name]:
            continue  # the next value of the chain carries the same neurons
        keep[node.name] = cand[node.name][0]
    return keep


@torch.no_grad()
def _run(program, sd: Mapping[str, torch.Tensor], inputs: tuple, wanted: set[str]) -> dict[str, torch.Tensor]:
    args, user = [], iter(inputs)
    for spec in program.graph_signature.input_specs:
        kind = spec.kind.name
        if kind in ("PARAMETER", "BUFFER"):
            args.append(sd[spec.target] if spec.target in sd else program.constants[spec.target])
        elif kind == "CONSTANT_TENSOR":
            args.append(program.constants[spec.target])
        elif kind == "USER_INPUT":
            args.append(next(user))
        else:
            raise LayoutMismatchError(f"activation matching cannot run an exported input of kind {kind}; "
                                      "use method='weights'")
    got: dict[str, torch.Tensor] = {}

    class _Recorder(torch.fx.Interpreter):
        def run_node(self, n):
            out = super().run_node(n)
            if n.name in wanted:
                got[n.name] = out.detach().float()
            return out

    _Recorder(program.graph_module).run(*args)
    return got


def _standardize(x: torch.Tensor, axes: tuple, layout: Layout) -> torch.Tensor:
    """Zero mean and unit variance per neuron: over every axis without a permutable group."""
    permutable = {g.id for g in layout.permutable_groups()}
    reduce = [i for i, a in enumerate(axes) if not (label_atoms(a) & permutable)]
    if not reduce:
        return x
    mean = x.mean(reduce, keepdim=True)
    std = x.std(reduce, keepdim=True, unbiased=False)
    n = 1
    for i in reduce:
        n *= x.shape[i]
    return (x - mean) / (std.clamp(min=1e-8) * n ** 0.5)


def label_atoms(label) -> set[int]:
    """Group ids that occur in an axis label."""
    if label[0] == "a":
        return {label[1]}
    if label[0] == "u":
        return set()
    return {a for x in label[1] for a in label_atoms(x)}
