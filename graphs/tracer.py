"""The tracer: export a network with ``torch.export`` and walk it, labelling every tensor axis.

The exported (aten-level) graph is walked once in topological order. Every tensor value gets one
label per axis (see :mod:`graphs.labels`); each op's rule (:mod:`graphs.rules`) relates the labels
of its inputs, parameters and outputs. Network inputs and outputs are fixed. After the walk, the
labels of every parameter axis, resolved through the union-find, are the symmetry structure that
:class:`graphs.Layout` records.
"""

from __future__ import annotations

import logging
import operator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.fx import config as fx_config

from graphs.errors import UnsupportedNetworkError
from graphs.labels import CONSTANT, INPUT, OUTPUT, AxisAlgebra, Label

__all__ = ["ParamRecord", "TensorVal", "Tracer", "export"]


@dataclass
class TensorVal:
    """What the tracer knows about one tensor value.

    Attributes:
        labels: One label per axis.
        shape: Concrete shape.
        weight: Depends on parameters/buffers and not on any network input.
        src: For a direct view of one parameter: ``(name, axes)`` where ``axes[i]`` is the
            parameter axis that this value's axis ``i`` is (``None`` for an added unit axis).
    """

    labels: list[Label]
    shape: tuple[int, ...]
    weight: bool = False
    src: tuple[str, tuple[int | None, ...]] | None = None


@dataclass
class ParamRecord:
    """A parameter or persistent buffer met in the exported graph."""

    name: str
    labels: list[Label]
    is_buffer: bool
    direction: tuple[int, int] | None = None  # (in_axis, out_axis) when a rule knows them
    roles: list[str] = field(default_factory=list)
    group_input: Label | None = None  # grouped convolution: label of the input channel axis


def export(model: nn.Module, example_inputs: Any, kwargs: dict | None = None) -> torch.export.ExportedProgram:
    """Export ``model`` in eval mode with ``torch.export`` (non-strict), restoring its mode after.

    Nodes get no ``stack_trace`` metadata (the tracer reads ``nn_module_stack`` only): recording Python stack
    traces is a sixth to a quarter of the export time of a ViT or a ResNet.

    Raises:
        UnsupportedNetworkError: When ``torch.export`` cannot capture the network.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"trace() needs an nn.Module, got {type(model).__name__}; to trace a state_dict, "
                        "build the module it belongs to and load the state_dict into it")
    args = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
    was_training = model.training
    model.eval()
    quiet = logging.getLogger("torch._subclasses.fake_tensor")  # logs a traceback before raising
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    stack_flag = getattr(fx_config, "do_not_emit_stack_traces", None)  # absent in older torch
    if stack_flag is not None:
        fx_config.do_not_emit_stack_traces = True
    try:
        return torch.export.export(model, args, kwargs or {}, strict=False)
    except Exception as exc:  # torch raises many types here; all mean "not exportable"
        raise UnsupportedNetworkError(
            f"torch.export could not capture {type(model).__name__}: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}",
            hint="check that the example inputs run the model, avoid data-dependent Python control flow, "
                 "and for Hugging Face models set use_cache=False in the config") from exc
    finally:
        model.train(was_training)
        quiet.setLevel(level)
        if stack_flag is not None:
            fx_config.do_not_emit_stack_traces = stack_flag


class Tracer:
    """Walks an exported program and unifies axis labels op by op."""

    def __init__(self, program: torch.export.ExportedProgram, rules: dict, fallback,
                 canonical: dict[str, str] | None = None) -> None:
        self.program = program
        self.rules, self.fallback = rules, fallback  # op name -> rule; the rule of ops with none
        self.canonical = canonical or {}  # tied-weight alias -> the name the layout stores
        self.alg = AxisAlgebra()
        self.values: dict[str, Any] = {}
        self.params: dict[str, ParamRecord] = {}
        self.node: torch.fx.Node | None = None
        self.read: set[str] = set()  # parameters/buffers that some node of the exported graph reads
        self.unread: list[str] = []  # the others (their axes are fixed after the walk)
        self._origin: dict[torch.fx.Node, tuple[bool, bool]] = {}
        self._rule_of: dict[Any, Any] = {}  # op target -> its rule (looked up once per target)
        self._context_node: torch.fx.Node | None = None
        self._context = ""

    # ------------------------------------------------------------ utilities
    def where(self, node: torch.fx.Node | None = None) -> str:
        """Module path of ``node`` (the innermost module in its ``nn_module_stack``)."""
        node = node or self.node
        stack = (node.meta.get("nn_module_stack") or {}) if node is not None else {}
        if not stack:
            return ""
        path = list(stack.values())[-1][0]
        return path if isinstance(path, str) else str(path)

    def op_name(self, node: torch.fx.Node | None = None) -> str:
        """Printable name of the op of ``node``, e.g. ``aten.conv2d.default``."""
        target = (node or self.node).target
        return str(target) if not hasattr(target, "name") else target.name().replace("::", ".")

    def reason(self, what: str) -> str:
        """A fix reason naming the current op and module."""
        node = self.node
        if node is None or node.op != "call_function":
            return what
        if node is not self._context_node:  # once per node: rules ask for it at every unify
            mod = self.where()
            self._context_node, self._context = node, f" ({self.op_name()}{' in ' + mod if mod else ''})"
        return what + self._context

    def fresh(self, size: int) -> Label:
        """A new permutable group."""
        return self.alg.new(size)

    def fixed(self, size: int, kind: str, why: str) -> Label:
        """A new fixed group."""
        return self.alg.fixed_atom(size, kind, self.reason(why))

    def unify(self, a: Label, b: Label, why: str = "unified") -> None:
        """Tie two labels (see :meth:`AxisAlgebra.unify`)."""
        self.alg.unify(a, b, self.reason(why))

    def fix(self, label: Label, why: str, kind: str | None = None) -> None:
        """Fix every atom of ``label``."""
        self.alg.fix(label, self.reason(why), kind)

    def tensor(self, labels: list[Label], shape, weight: bool = False, src=None) -> TensorVal:
        """Build a :class:`TensorVal`."""
        return TensorVal(list(labels), tuple(int(s) for s in shape), weight, src)

    def note_direction(self, val: TensorVal, in_axis: int, out_axis: int) -> None:
        """Record which parameter axes are a weight's input/output (edge source/target)."""
        if val.src is None:
            return
        name, axes = val.src
        pin, pout = axes[in_axis % len(axes)], axes[out_axis % len(axes)]
        rec = self.params[name]
        if rec.direction is None and pin is not None and pout is not None:
            rec.direction = (pin, pout)

    def param_only(self, node: torch.fx.Node) -> bool:
        """True when ``node`` is computed from parameters/persistent buffers and no network input."""
        has_param, has_input = self._origins(node)
        return has_param and not has_input

    def _origins(self, node: torch.fx.Node) -> tuple[bool, bool]:
        got = self._origin.get(node)
        if got is not None:
            return got
        if node.op == "placeholder":
            val = self.values.get(node.name)
            is_param = isinstance(val, TensorVal) and val.src is not None
            got = (is_param, isinstance(val, TensorVal) and not val.weight)
        else:
            flags = [self._origins(n) for n in node.all_input_nodes]
            got = (any(f[0] for f in flags), any(f[1] for f in flags))
        self._origin[node] = got
        return got

    def note_role(self, val: TensorVal | None, role: str) -> None:
        """Record the role (edge type) a parameter plays, e.g. ``conv`` or ``norm_weight``."""
        if isinstance(val, TensorVal) and val.src is not None:
            roles = self.params[val.src[0]].roles
            if role not in roles:
                roles.append(role)

    # ------------------------------------------------------------------ walk
    def run(self) -> None:
        """Label every value of the exported graph."""
        sig = self.program.graph_signature
        specs = {spec.arg.name: spec for spec in sig.input_specs if hasattr(spec.arg, "name")}
        state = self.program.state_dict
        consts = self.program.constants
        for node in self.program.graph.nodes:
            self.node = node
            if node.op == "placeholder":
                self.values[node.name] = self._placeholder(node, specs.get(node.name), state, consts)
            elif node.op == "output":
                for val in _flatten(torch.fx.node.map_arg(node.args, lambda n: self.values.get(n.name))):
                    if isinstance(val, TensorVal):
                        for lab in val.labels:
                            self.fix(lab, "network output", OUTPUT)
            else:
                self._step(node, self.program.graph_module)
        self.node = None
        self.fix_unread()

    def fix_unread(self) -> None:
        """Fix every axis of the parameters that no node reads (listed in :attr:`unread`).

        The graph may read a tensor derived from such a parameter as a constant (a cache filled on an
        earlier eval forward); permuting the parameter alone would then change the real network.
        """
        self.unread = sorted(name for name in self.params if name not in self.read)
        for name in self.unread:
            for lab in self.params[name].labels:
                self.alg.fix(lab, f"'{name}' is never read by the exported graph", CONSTANT)

    def _step(self, node: torch.fx.Node, owner: torch.nn.Module) -> None:
        """Label the outputs of one ``get_attr``/``call_function`` node."""
        if node.op == "get_attr":
            self.values[node.name] = _Sub(getattr(owner, node.target))
            return
        if node.op != "call_function":
            raise UnsupportedNetworkError(
                f"exported graph has a '{node.op}' node ({node.target}) that the tracer does not handle",
                module=self.where(node), hint="export with strict=False")
        args = torch.fx.node.map_arg(node.args, lambda n: self.values.get(n.name))
        kwargs = torch.fx.node.map_arg(node.kwargs, lambda n: self.values.get(n.name))
        subs = [a for a in args if isinstance(a, _Sub)]
        if node.target is operator.getitem:
            seq = args[0]
            self.values[node.name] = seq[args[1]] if isinstance(seq, (list, tuple)) else None
        elif len(subs) == 1:  # a higher-order op wrapping one subgraph (autocast, set_grad_enabled)
            operands = list(args[args.index(subs[0]) + 1:])
            self.values[node.name] = self._inline(subs[0].module, operands)
        elif subs:
            self.values[node.name] = _fix_all(self, node, args, kwargs)  # control flow (cond/while_loop)
        elif not _returns_tensors(node):
            self.values[node.name] = None
        else:
            rule = self._rule_of.get(node.target)
            if rule is None:
                rule = self._rule_of[node.target] = self.rule_for(node.target)
            try:
                self.values[node.name] = _checked(rule(self, node, args, kwargs), node)
            except UnsupportedNetworkError:
                raise
            except Exception as exc:  # a rule met a pattern it does not expect: say where, never a raw error
                raise UnsupportedNetworkError(
                    f"the symmetry rule '{getattr(rule, '__name__', rule)}' failed on this op "
                    f"({type(exc).__name__}: {_first_line(exc)})", op=self.op_name(node), module=self.where(node),
                    hint="this is a weightgraph bug: please report it with the op and module named here; "
                         "meanwhile write that module with other ops") from exc

    def rule_for(self, target) -> Any:
        """The rule of an op: its ``name.overload`` entry (``max.other``), else its ``name`` entry, else fallback."""
        name = _rule_key(target)
        overload = getattr(target, "_overloadname", None)
        rule = self.rules.get(f"{name}.{overload}") if overload else None
        return rule or self.rules.get(name, self.fallback)

    def _inline(self, module: torch.fx.GraphModule, operands: list) -> tuple:
        """Walk a wrapped subgraph with its placeholders bound to ``operands``; return its outputs."""
        outer, outer_node = self.values, self.node
        self.values = dict(outer)
        it = iter(operands)
        result: tuple = ()
        for node in module.graph.nodes:
            self.node = node
            if node.op == "placeholder":
                self.values[node.name] = next(it, None)
            elif node.op == "output":
                result = tuple(_flatten(torch.fx.node.map_arg(node.args, lambda n: self.values.get(n.name))))
            else:
                self._step(node, module)
        self.values, self.node = outer, outer_node
        return result

    def _placeholder(self, node, spec, state, consts) -> TensorVal | None:
        val = node.meta.get("val")
        if not isinstance(val, torch.Tensor):
            return None
        shape = tuple(val.shape)
        kind = spec.kind.name if spec is not None else "USER_INPUT"
        if kind in ("PARAMETER", "BUFFER"):
            name = self.canonical.get(spec.target, spec.target)
            persistent = kind == "PARAMETER" or spec.persistent is not False
            if persistent and val.is_floating_point():
                if node.users:
                    self.read.add(name)
                labels = [self.fresh(s) for s in shape]
                if name not in self.params:
                    self.params[name] = ParamRecord(name, labels, kind == "BUFFER")
                else:  # the same tensor bound twice: tie it
                    for a, b in zip(self.params[name].labels, labels, strict=True):
                        self.unify(a, b, "tied parameter")
                return self.tensor(labels, shape, weight=True, src=(name, tuple(range(len(shape)))))
            why = ("non-persistent buffer (not in the state_dict, cannot be permuted with the weights)"
                   if not persistent else "integer buffer")
            return self.tensor([self.fixed(s, CONSTANT, f"{why} '{name}'") for s in shape], shape, weight=True)
        if kind in ("CONSTANT_TENSOR", "CUSTOM_OBJ"):
            return self.tensor([self.fixed(s, CONSTANT, "constant tensor") for s in shape], shape, weight=True)
        return self.tensor([self.fixed(s, INPUT, f"network input '{node.name}'") for s in shape], shape)


class _Sub:
    """A subgraph module referenced by a higher-order op."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.module = module


def _fix_all(t: Tracer, node, args, kwargs):
    return t.fallback(t, node, tuple(a for a in args if not isinstance(a, _Sub)), kwargs)


def _rule_key(target) -> str:
    if hasattr(target, "_schema"):
        name = target._schema.name.split("::")[-1]
        return name
    return getattr(target, "__name__", str(target))


def _checked(result, node: torch.fx.Node):
    """Return a rule's result after checking it has one label per axis of each output (ValueError if not)."""
    vals = node.meta.get("val")
    outs = result if isinstance(result, tuple) else (result,)
    metas = vals if isinstance(vals, (list, tuple)) else (vals,)
    for out, meta in zip(outs, metas, strict=False):
        if isinstance(out, TensorVal) and isinstance(meta, torch.Tensor) and (
                len(out.labels) != meta.dim() or len(out.shape) != meta.dim()):
            raise ValueError(f"the rule gave {len(out.labels)} axis labels for an output of rank {meta.dim()}")
    return result


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "no message"


def _returns_tensors(node: torch.fx.Node) -> bool:
    val = node.meta.get("val")
    if isinstance(val, torch.Tensor):
        return True
    if isinstance(val, (list, tuple)):
        return any(isinstance(v, torch.Tensor) for v in val)
    return False


def _flatten(obj) -> list:
    if isinstance(obj, (list, tuple)):
        out = []
        for o in obj:
            out.extend(_flatten(o))
        return out
    return [obj]
