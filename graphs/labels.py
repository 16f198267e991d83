"""Axis labels and their union-find: the algebra behind symmetry derivation.

Every axis of every tensor in a traced network carries a *label*. A label is one of

* an **atom** ``("a", id)``: a group of ``size`` units. A non-fixed atom may be permuted by any
  permutation, applied to every axis carrying it; a fixed atom allows the identity only.
* a **product** ``("p", (l1, l2, ...))``: unit ``(i1, i2, ...)`` (row-major) moves to
  ``(s1(i1), s2(i2), ...)``. Produced by reshapes (channels x positions, heads x head_dim) and
  by grouped ops (blocks x within-block).
* a **concatenation** ``("c", (l1, l2, ...))``: units of each block permute within their block.

Unifying two labels says "these two axes must be permuted identically". Atoms merge; an atom
unified with a structured label is *constrained* to that structure (a sound subgroup); two
products unify factor by factor after splitting factors to a common refinement. Anything that
cannot be matched exactly is fixed, which is always sound.
"""

from __future__ import annotations

from collections.abc import Iterable

Label = tuple

UNIT: Label = ("u",)
"""The label of a size-1 axis: nothing to permute."""

# Atom kinds record where an atom came from. They explain fixed groups to users and decide
# which fixed factors become edge-vector slots (``spatial``) rather than graph nodes.
INPUT, OUTPUT, SPATIAL, CONSTANT, HIDDEN, OPAQUE = (
    "input", "output", "spatial", "constant", "hidden", "opaque")


class AxisAlgebra:
    """Union-find over axis atoms, with structured (product / concatenation) refinements.

    Atoms are integers. Each root atom has a size, a ``fixed`` flag, a set of kinds, the reasons
    it was fixed, and optionally a ``struct``: a label it has been refined into.
    """

    def __init__(self) -> None:
        self._parent: list[int] = []
        self._size: list[int] = []
        self._fixed: list[bool] = []
        self._kinds: list[set[str]] = []
        self._reasons: list[list[str]] = []
        self._struct: list[Label | None] = []
        self._members: list[int] = []

    # ------------------------------------------------------------------ atoms
    def new(self, size: int, kind: str = HIDDEN, fixed: bool = False, reason: str | None = None) -> Label:
        """Return a fresh atom label of ``size`` units.

        Size-1 atoms are real (a single input channel or output unit is still a neuron), but they are
        dropped from products, where they carry no structure.
        """
        if size < 1:
            return ("c", ())
        self._parent.append(len(self._parent))
        self._size.append(int(size))
        self._fixed.append(fixed)
        self._kinds.append({kind})
        self._reasons.append([reason] if (fixed and reason) else [])
        self._struct.append(None)
        self._members.append(1)
        return ("a", len(self._parent) - 1)

    def fixed_atom(self, size: int, kind: str, reason: str) -> Label:
        """Return a fresh fixed atom (identity only)."""
        return self.new(size, kind=kind, fixed=True, reason=reason)

    def find(self, a: int) -> int:
        """Return the root of atom ``a`` (with path halving)."""
        parent = self._parent
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    def is_singleton(self, label: Label) -> bool:
        """True for an atom that was never unified with another axis (e.g. a broadcast size-1 axis)."""
        label = self.resolve(label)
        return label[0] == "a" and self._members[label[1]] == 1 and not self._fixed[label[1]]

    def atom_info(self, root: int) -> tuple[int, bool, frozenset[str], tuple[str, ...]]:
        """Size, fixed flag, kinds and fix reasons of a root atom."""
        return self._size[root], self._fixed[root], frozenset(self._kinds[root]), tuple(self._reasons[root])

    # ---------------------------------------------------------------- resolve
    def resolve(self, label: Label) -> Label:
        """Rewrite ``label`` in terms of current roots, expanding refinements and normalizing.

        Normal form: products are flat, without unit factors, and never start with a
        concatenation (``P(C(a, b), x) == C(P(a, x), P(b, x))``); concatenations are flat and
        without empty blocks; single-element products/concatenations are unwrapped.
        """
        tag = label[0]
        if tag == "u":
            return UNIT
        if tag == "a":
            r = self.find(label[1])
            s = self._struct[r]
            return ("a", r) if s is None else self.resolve(s)
        parts = [self.resolve(x) for x in label[1]]
        if tag == "c":
            flat: list[Label] = []
            for p in parts:
                if p[0] == "c":
                    flat.extend(p[1])
                elif self.size(p) > 0:
                    flat.append(p)
            return flat[0] if len(flat) == 1 else ("c", tuple(flat))
        flat = []
        for p in parts:
            if p[0] == "p":
                flat.extend(p[1])
            elif p != UNIT and self.size(p) != 1:
                flat.append(p)
        if not flat:
            return UNIT
        if flat[0][0] == "c" and len(flat) > 1:
            rest = flat[1:]
            return self.resolve(("c", tuple(("p", (blk, *rest)) for blk in flat[0][1])))
        return flat[0] if len(flat) == 1 else ("p", tuple(flat))

    def size(self, label: Label) -> int:
        """Number of units of ``label``."""
        tag = label[0]
        if tag == "u":
            return 1
        if tag == "a":
            return self._size[self.find(label[1])]
        n = 1 if tag == "p" else 0
        for x in label[1]:
            n = n * self.size(x) if tag == "p" else n + self.size(x)
        return n

    def atoms(self, label: Label) -> list[int]:
        """Root atoms appearing in the resolved ``label``, in order."""
        label = self.resolve(label)
        if label[0] == "a":
            return [label[1]]
        if label[0] == "u":
            return []
        out: list[int] = []
        for x in label[1]:
            out.extend(self.atoms(x))
        return out

    def is_fixed(self, label: Label) -> bool:
        """True when every atom of ``label`` is fixed (identity is the only permutation)."""
        return all(self._fixed[a] for a in self.atoms(label))

    # ------------------------------------------------------------------- fix
    def fix(self, label: Label, reason: str, kind: str | None = None) -> None:
        """Fix every atom of ``label``; ``reason`` is kept to explain the fixed group."""
        for a in self.atoms(label):
            if not self._fixed[a]:
                self._fixed[a] = True
                self._reasons[a].append(reason)
            if kind is not None:
                self._kinds[a].add(kind)

    def mark(self, label: Label, kind: str) -> None:
        """Add ``kind`` to every atom of ``label``."""
        for a in self.atoms(label):
            self._kinds[a].add(kind)

    # ----------------------------------------------------------------- unify
    def unify(self, x: Label, y: Label, reason: str) -> None:
        """Require axes labelled ``x`` and ``y`` to be permuted identically.

        Args:
            x: First label.
            y: Second label (same size as ``x``).
            reason: Human-readable origin, recorded if the unification has to fix atoms.
        """
        x, y = self.resolve(x), self.resolve(y)
        if x == y:
            return
        sx, sy = self.size(x), self.size(y)
        if sx != sy:  # an op whose rule mis-matched sizes: stay sound
            self.fix(x, f"{reason} (size mismatch {sx} vs {sy})")
            self.fix(y, f"{reason} (size mismatch {sx} vs {sy})")
            return
        if x == UNIT or y == UNIT or sx == 1 and (x[0] != "a" or y[0] != "a"):
            return
        if x[0] == "a" and y[0] == "a":
            self._union(x[1], y[1])
        elif x[0] == "a":
            self._refine(x[1], y, reason)
        elif y[0] == "a":
            self._refine(y[1], x, reason)
        elif x[0] == y[0]:
            self._unify_structured(x, y, reason)
        else:
            self.fix(x, f"{reason} (product meets concatenation)")
            self.fix(y, f"{reason} (product meets concatenation)")

    def _union(self, a: int, b: int) -> None:
        if a == b:
            return
        # keep the older atom as root so labels stay stable across equivalent traces
        if b < a:
            a, b = b, a
        self._parent[b] = a
        self._members[a] += self._members[b]
        self._fixed[a] = self._fixed[a] or self._fixed[b]
        self._kinds[a] |= self._kinds[b]
        self._reasons[a].extend(r for r in self._reasons[b] if r not in self._reasons[a])

    def _refine(self, a: int, structured: Label, reason: str) -> None:
        """Constrain atom ``a`` to the structure ``structured`` (a sound subgroup)."""
        if self._fixed[a]:
            self.fix(structured, self._reasons[a][0] if self._reasons[a] else reason)
        for k in self._kinds[a]:
            self.mark(structured, k)
        self._struct[a] = structured

    def _split(self, label: Label, sizes: list[int]) -> list[Label] | None:
        """Split ``label`` into a row-major product of ``sizes``; None if impossible."""
        if len(sizes) == 1:
            return [label]
        if label[0] != "a":
            return None
        a = label[1]
        fixed, kinds = self._fixed[a], self._kinds[a]
        parts = [self.new(s, fixed=fixed) for s in sizes]
        for p in parts:
            for k in kinds:
                self.mark(p, k)
            if fixed:
                self.fix(p, self._reasons[a][0] if self._reasons[a] else "split of a fixed axis")
        self._struct[a] = ("p", tuple(parts))
        return parts

    def _unify_structured(self, x: Label, y: Label, reason: str) -> None:
        xs, ys = list(x[1]), list(y[1])
        if x[0] == "c":
            if [self.size(b) for b in xs] == [self.size(b) for b in ys]:
                for bx, by in zip(xs, ys, strict=True):
                    self.unify(bx, by, reason)
                return
            px, py = self._cat_refine(xs, ys), self._cat_refine(ys, xs)
            if px is None or py is None:
                self.fix(x, f"{reason} (misaligned concatenations)")
                self.fix(y, f"{reason} (misaligned concatenations)")
                return
            for bx, by in zip(px, py, strict=True):
                self.unify(bx, by, reason)
            return
        rx, ry = self._prod_refine(xs, ys), self._prod_refine(ys, xs)
        if rx is None or ry is None:
            self.fix(x, f"{reason} (reshape without a common refinement)")
            self.fix(y, f"{reason} (reshape without a common refinement)")
            return
        for fx, fy in zip(rx, ry, strict=True):
            self.unify(fx, fy, reason)

    def _prod_refine(self, fs: list[Label], other: list[Label]) -> list[Label] | None:
        """Refine product factors ``fs`` so that their prefix products include ``other``'s."""
        marks = _prefix_products([self.size(f) for f in other])
        out: list[Label] = []
        acc = 1
        for f in fs:
            n = self.size(f)
            cuts = [m for m in marks if acc < m < acc * n]
            pieces, prev = [], acc
            for m in [*cuts, acc * n]:
                if m % prev:
                    return None
                pieces.append(m // prev)
                prev = m
            parts = self._split(f, pieces)
            if parts is None:
                return None
            out.extend(parts)
            acc *= n
        return out

    def _cat_refine(self, bs: list[Label], other: list[Label]) -> list[Label] | None:
        """Split concatenation blocks ``bs`` at the block boundaries of ``other``."""
        bounds = set(_prefix_sums([self.size(b) for b in other]))
        out: list[Label] = []
        start = 0
        for b in bs:
            n = self.size(b)
            cuts = sorted(c for c in bounds if start < c < start + n)
            if not cuts:
                out.append(b)
            else:
                pieces = self.split_cat(b, [c - start for c in cuts])
                if pieces is None:
                    return None
                out.extend(pieces)
            start += n
        return out

    def split_cat(self, label: Label, cuts: Iterable[int]) -> list[Label] | None:
        """Refine a label into consecutive blocks at offsets ``cuts``; None if impossible."""
        label = self.resolve(label)
        n = self.size(label)
        edges = [0, *sorted(set(c for c in cuts if 0 < c < n)), n]
        if len(edges) == 2:
            return [label]
        if label[0] == "c":
            out: list[Label] = []
            start = 0
            for b in label[1]:
                m = self.size(b)
                inner = [e - start for e in edges if start < e < start + m]
                sub = self.split_cat(b, inner)
                if sub is None:
                    return None
                out.extend(sub)
                start += m
            return out
        if label[0] != "a":
            return None
        a = label[1]
        blocks = [self.new(hi - lo) for lo, hi in zip(edges[:-1], edges[1:], strict=True)]
        for blk in blocks:
            for k in self._kinds[a]:
                self.mark(blk, k)
            if self._fixed[a]:
                self.fix(blk, self._reasons[a][0] if self._reasons[a] else "split of a fixed axis")
        self._struct[a] = ("c", tuple(blocks))
        return blocks

    def blocks_at(self, label: Label, start: int, stop: int) -> Label | None:
        """The label of units ``[start, stop)`` if they form whole concatenation blocks."""
        pieces = self.split_cat(label, [start, stop])
        if pieces is None:
            return None
        out, pos = [], 0
        for p in pieces:
            m = self.size(p)
            if start <= pos and pos + m <= stop:
                out.append(p)
            pos += m
        return self.resolve(("c", tuple(out)))


def _prefix_products(sizes: list[int]) -> list[int]:
    out, acc = [], 1
    for s in sizes:
        acc *= s
        out.append(acc)
    return out


def _prefix_sums(sizes: list[int]) -> list[int]:
    out, acc = [], 0
    for s in sizes:
        acc += s
        out.append(acc)
    return out
