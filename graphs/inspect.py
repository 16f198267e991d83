"""Readable summaries of a Layout: groups, sizes, node/edge counts, what is fixed and why."""

from __future__ import annotations

from collections import Counter, defaultdict

from graphs.compile import _atoms, compile_layout
from graphs.layout import Layout
from graphs.param_graph import EDGE_TYPES, NodeType

__all__ = ["summarize"]


def _fmt(layout: Layout, label) -> str:
    tag = label[0]
    if tag == "u":
        return "1"
    if tag == "a":
        g = layout.groups[label[1]]
        return f"{'F' if g.fixed else 'G'}{g.id}[{g.size}]"
    sep = " x " if tag == "p" else " | "
    inner = sep.join(_fmt(layout, x) for x in label[1])
    return f"({inner})" if tag == "p" else f"[{inner}]"


def summarize(layout: Layout, max_rows: int = 40) -> str:
    """A multi-line, human-readable report of ``layout``."""
    c = compile_layout(layout)
    users: dict[int, list[str]] = defaultdict(list)
    for p in layout.params:
        for lab in p.axes:
            for a in _atoms(lab):
                if p.name not in users[a]:
                    users[a].append(p.name)
    lines = [
        f"layout {layout.name or '?'}  fingerprint {layout.fingerprint}",
        f"  parameters: {len(layout.params)} tensors, {layout.num_params:,} values ({layout.float_dtype})"
        + (f", {len(layout.int_buffers)} integer buffers" if layout.int_buffers else ""),
        f"  symmetry: {len(layout.permutable_groups())} permutable groups, sizes {layout.group_sizes()}",
        f"  permutable neurons: {layout.num_permutable_neurons():,}",
    ]
    nt = Counter(NodeType(int(t)).name.lower() for t in c.node_type)
    et = Counter(EDGE_TYPES[int(t)] for t in c.edge_type)
    lines.append(f"  graph: {c.num_nodes:,} nodes ({', '.join(f'{k} {v:,}' for k, v in sorted(nt.items()))}), "
                 f"{c.edge_index.shape[1]:,} edges ({', '.join(f'{k} {v:,}' for k, v in sorted(et.items()))}), "
                 f"edge width {c.width}")
    lines.append("  parameters (axis labels: G = permutable group, F = fixed, (A x B) product, [A | B] blocks):")
    for p in layout.params[:max_rows]:
        axes = ", ".join(_fmt(layout, lab) for lab in p.axes) or "scalar"
        alias = f"  (tied: {', '.join(p.aliases)})" if p.aliases else ""
        lines.append(f"    {p.name:<40} {str(tuple(p.shape)):<18} {p.role:<12} {axes}{alias}")
    if len(layout.params) > max_rows:
        lines.append(f"    ... {len(layout.params) - max_rows} more")
    fixed = [g for g in layout.groups if g.fixed and g.size > 1 and "spatial" not in g.kinds]
    if fixed:
        lines.append("  fixed groups (not permutable) and why:")
        for g in fixed[:max_rows]:
            why = "; ".join(g.reasons) or ", ".join(g.kinds)
            lines.append(f"    F{g.id}[{g.size}] used by {', '.join(users[g.id][:3]) or '-'}: {why}")
    spatial = [g for g in layout.groups if g.spatial]
    if spatial:
        lines.append(f"  spatial axes (kernel offsets, positions; packed into edge vectors): {len(spatial)}")
    return "\n".join(lines)
