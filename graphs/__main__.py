"""Command line: ``python -m graphs inspect TARGET`` and ``python -m graphs demo``.

TARGET is ``module:factory`` (a Python callable returning an ``nn.Module``; its module may define
``example_inputs()``), a layout ``.json`` file, or a checkpoint (``.pt``/``.pth``/``.safetensors``),
for which ``--model`` names the architecture.
"""

from __future__ import annotations

import argparse
import os
import sys

from graphs.checkpoints import load_checkpoint, strip_wrapper_prefix
from graphs.cli import add_example_input_argument, build_from_factory, check_output, run_cli
from graphs.convert import layout_keys, to_graph
from graphs.demo import run_demo
from graphs.inspect import summarize
from graphs.layout import Layout
from graphs.trace import trace

__all__ = ["main"]


def _layout_for(args: argparse.Namespace) -> tuple[Layout, dict | None]:
    target = args.target
    if target.endswith(".json"):
        with open(target) as f:
            return Layout.from_json(f.read()), None
    factory_spec = args.model or (target if ":" in target and not os.path.exists(target) else None)
    if factory_spec is None:
        sd = load_checkpoint(target)
        n = sum(v.numel() for v in sd.values())
        raise ValueError(f"{target}: {len(sd)} tensors, {n:,} values; symmetries need the architecture: "
                         "pass --model module:factory (and --example-input-shape unless its first layer tells it)")
    model, inputs = build_from_factory(factory_spec, args.example_input_shape, "--example-input-shape")
    layout = trace(model, inputs)
    sd = strip_wrapper_prefix(load_checkpoint(target), layout_keys(layout))[0] if os.path.isfile(target) else None
    return layout, sd


def _inspect(args: argparse.Namespace) -> int:
    if args.save_layout:
        check_output(args.save_layout, args.overwrite, what="layout file")
    layout, sd = _layout_for(args)
    print(summarize(layout, max_rows=args.rows))
    if sd is not None:
        g = to_graph(sd, layout)
        print(f"  checkpoint {args.target}: converted to {g.num_nodes:,} nodes, {g.edge_index.shape[1]:,} edges")
    if args.save_layout:
        tmp = f"{args.save_layout}.tmp-{os.getpid()}"
        try:
            with open(tmp, "w") as f:
                f.write(layout.to_json())
            os.replace(tmp, args.save_layout)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        print(f"  layout written to {args.save_layout}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m graphs`` argument parser."""
    parser = argparse.ArgumentParser(prog="python -m graphs", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("inspect", help="summarize the symmetry structure of a network")
    p.add_argument("target", help="module:factory, layout .json, or checkpoint file")
    p.add_argument("--model", help="module:factory building the architecture of a checkpoint")
    add_example_input_argument(p, "example input shape, e.g. 1,3,32,32 or long:1,16 (repeat for several inputs; "
                                  "default: guessed from the first layer)")
    p.add_argument("--rows", type=int, default=40, help="parameters/groups to list")
    p.add_argument("--save-layout", help="write the layout JSON here (refused if it exists, unless --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --save-layout file")
    p.set_defaults(func=_inspect)
    d = sub.add_parser("demo", help="trace the built-in example networks and check them")
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(func=lambda args: run_demo(seed=args.seed))
    return parser


def _run(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (user errors print one line and return 2)."""
    return run_cli(_run, argv)


if __name__ == "__main__":
    sys.exit(main())
