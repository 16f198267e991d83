"""Command line: ``python -m graphs inspect TARGET`` and ``python -m graphs demo``.

TARGET is ``module:factory`` (a Python callable returning an ``nn.Module``; its module may define
``example_inputs()``), a layout ``.json`` file, or a checkpoint (``.pt``/``.pth``/``.safetensors``),
for which ``--model`` names the architecture.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys

import torch

__all__ = ["build_from_factory", "load_factory", "main", "parse_input_shapes"]


def load_factory(spec: str):
    """Import ``module:factory`` (``module`` may be a path to a ``.py`` file) and return ``(factory, module)``."""
    if ":" not in spec:
        raise ValueError(f"expected module:factory, got {spec!r} (e.g. mypkg.models:resnet18 or nets.py:MLP)")
    mod_name, attr = spec.rsplit(":", 1)
    if mod_name.endswith(".py"):
        path = os.path.abspath(mod_name)
        if not os.path.isfile(path):
            raise ValueError(f"no such file: {mod_name}")
        spec_ = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(path))[0], path)
        module = importlib.util.module_from_spec(spec_)
        spec_.loader.exec_module(module)
    else:
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        try:
            module = importlib.import_module(mod_name)
        except ImportError as exc:
            raise ValueError(f"cannot import {mod_name!r}: {exc}; run from the folder that holds it, install it, "
                             "or give a file path (nets.py:make_net)") from exc
    if not hasattr(module, attr):
        raise ValueError(f"{mod_name} has no attribute {attr!r}, so no callable {attr!r} builds the network")
    return getattr(module, attr), module


def build_from_factory(spec: str, input_shapes: list[str] | None) -> tuple[torch.nn.Module, tuple]:
    """The network ``module:factory`` builds, and example inputs to trace it with.

    The inputs come from ``input_shapes`` (``--input-shape`` values) or else from ``example_inputs()``
    defined beside the factory; neither is a ValueError that says how to give them.
    """
    factory, module = load_factory(spec)
    model = factory()
    if input_shapes:
        return model, parse_input_shapes(input_shapes)
    if hasattr(module, "example_inputs"):
        return model, module.example_inputs()
    raise ValueError("no example inputs: pass --input-shape 1,3,32,32 (repeat for several inputs; "
                     "long:1,16 for token ids) or define example_inputs() beside the factory")


def parse_input_shapes(specs: list[str]) -> tuple[torch.Tensor, ...]:
    """``["1,3,32,32", "long:1,16"]`` -> example tensors (float by default; ``long:`` for token ids)."""
    out = []
    for s in specs:
        dtype = torch.float32
        if ":" in s:
            kind, s = s.split(":", 1)
            dtype = {"long": torch.long, "int": torch.long, "float": torch.float32, "double": torch.float64}[kind]
        shape = tuple(int(x) for x in s.split(",") if x)
        out.append(torch.randint(0, 2, shape) if dtype == torch.long else torch.randn(shape, dtype=dtype))
    return tuple(out)


def _layout_for(args):
    import graphs

    target = args.target
    if target.endswith(".json"):
        with open(target) as f:
            return graphs.Layout.from_json(f.read()), None
    factory_spec = args.model or (target if ":" in target and not os.path.exists(target) else None)
    if factory_spec is None:
        sd = graphs.load_checkpoint(target)
        n = sum(v.numel() for v in sd.values())
        raise ValueError(f"{target}: {len(sd)} tensors, {n:,} values; symmetries need the architecture: "
                         "pass --model module:factory (and --input-shape if the module has no example_inputs())")
    model, inputs = build_from_factory(factory_spec, args.input_shape)
    layout = graphs.trace(model, inputs)
    sd = graphs.load_checkpoint(target) if os.path.isfile(target) else None
    return layout, sd


def _inspect(args) -> int:
    import graphs
    from graphs.inspect import summarize

    layout, sd = _layout_for(args)
    print(summarize(layout, max_rows=args.rows))
    if sd is not None:
        g = graphs.to_graph(sd, layout)
        print(f"  checkpoint {args.target}: converted to {g.num_nodes:,} nodes, {g.edge_index.shape[1]:,} edges")
    if args.save_layout:
        with open(args.save_layout, "w") as f:
            f.write(layout.to_json())
        print(f"  layout written to {args.save_layout}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (errors print one line and return 2)."""
    import graphs

    parser = argparse.ArgumentParser(prog="python -m graphs", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("inspect", help="summarize the symmetry structure of a network")
    p.add_argument("target", help="module:factory, layout .json, or checkpoint file")
    p.add_argument("--model", help="module:factory building the architecture of a checkpoint")
    p.add_argument("--input-shape", action="append", help="example input shape, e.g. 1,3,32,32 or long:1,16")
    p.add_argument("--rows", type=int, default=40, help="parameters/groups to list")
    p.add_argument("--save-layout", help="write the layout JSON here")
    d = sub.add_parser("demo", help="trace the built-in example networks and check them")
    d.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        if args.cmd == "inspect":
            return _inspect(args)
        from graphs.demo import run_demo

        return run_demo(seed=args.seed)
    except (ValueError, graphs.UnsupportedNetworkError, graphs.CheckpointError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
