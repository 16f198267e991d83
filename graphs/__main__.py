"""Command line: ``python -m graphs inspect|demo|align|interpolate|merge``.

``inspect TARGET``: TARGET is ``module:factory`` (a Python callable returning an ``nn.Module``; its module
may define ``example_inputs()``), a layout ``.json`` file, or a checkpoint (``.pt``/``.pth``/``.safetensors``),
for which ``--model`` names the architecture.

``align A B --model F OUT``: write B aligned to A (same function, weights closest to A).
``interpolate A B --model F --data D``: loss and accuracy along the path from A to B, naive and aligned.
``merge A B [C ...] --model F OUT``: align every network to A and average them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

from graphs.align import align, merge, similarity
from graphs.checkpoints import load_checkpoint, save_checkpoint, strip_wrapper_prefix
from graphs.cli import add_example_input_argument, build_from_factory, check_output, run_cli
from graphs.convert import layout_keys, to_graph
from graphs.demo import run_demo
from graphs.errors import LayoutMismatchError
from graphs.inspect import summarize
from graphs.interpolate import has_running_stats, interpolation_path, load_class_data, plot_paths, shape_inputs
from graphs.layout import Layout
from graphs.symmetry import apply_symmetry
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


def _networks(args: argparse.Namespace, paths: list[str]) -> tuple[torch.nn.Module, tuple, Layout, list[dict]]:
    """The factory's module and example inputs, its layout, and the checkpoints (each checked to fit it)."""
    model, inputs = build_from_factory(args.model, args.example_input_shape, flag="--example-input-shape")
    layout = trace(model, inputs)
    sds = []
    for path in paths:
        sd = load_checkpoint(path)
        _fits(model, sd, path, args.model)
        sds.append(sd)
    return model, inputs, layout, sds


def _fits(model: torch.nn.Module, sd: dict, path: str, spec: str) -> None:
    want = model.state_dict()
    missing, extra = [k for k in want if k not in sd], [k for k in sd if k not in want]
    bad = [k for k in want if k in sd and tuple(sd[k].shape) != tuple(want[k].shape)]
    if missing or extra or bad:
        what = (f"lacks {missing[0]!r}" if missing else f"has an extra tensor {extra[0]!r}" if extra else
                f"has {bad[0]!r} of shape {tuple(sd[bad[0]].shape)}, not {tuple(want[bad[0]].shape)}")
        raise LayoutMismatchError(f"{path} does not fit the network {spec} builds: it {what}; the checkpoints must "
                                  "all be networks of the architecture --model names")


def _alignment_data(args: argparse.Namespace, inputs: tuple):
    if args.method != "activations":
        return None
    if not args.data:
        raise ValueError("--method activations needs --data digits, mnist1d or a .pt file of inputs")
    x = load_class_data(args.data).x_train[: args.batch]
    return shape_inputs(x, inputs[0])


def _align_cmd(args: argparse.Namespace) -> int:
    check_output(args.out, args.overwrite, what="checkpoint")
    model, inputs, layout, (sd_a, sd_b) = _networks(args, [args.a, args.b])
    start = time.perf_counter()
    perm = align(sd_a, sd_b, layout, args.method, _alignment_data(args, inputs), model, seed=args.seed,
                 normalize=args.normalize)
    out = apply_symmetry(sd_b, layout, perm)
    print(f"aligned {args.b} to {args.a} in {time.perf_counter() - start:.2f} s ({len(perm)} groups, "
          f"{sum(int((p != torch.arange(p.numel())).any()) for p in perm.values())} moved); cosine similarity "
          f"{similarity(sd_a, sd_b, layout):.4f} -> {similarity(sd_a, out, layout):.4f}")
    save_checkpoint(out, args.out)
    print(f"  written to {args.out}")
    return 0


def _merge_cmd(args: argparse.Namespace) -> int:
    if len(args.checkpoints) < 3:
        raise ValueError(f"merge needs at least two checkpoints and an output file, got {len(args.checkpoints)} "
                         "paths: python -m graphs merge A.pt B.pt [C.pt ...] --model FILE.py:make OUT.pt")
    *paths, out_path = args.checkpoints
    check_output(out_path, args.overwrite, what="checkpoint")
    model, inputs, layout, sds = _networks(args, paths)
    merged = merge(sds, layout, args.method, _alignment_data(args, inputs), model, seed=args.seed,
                   normalize=args.normalize)
    save_checkpoint(merged, out_path)
    print(f"merged {len(sds)} networks (aligned to {paths[0]}) into {out_path}")
    return 0


def _interpolate_cmd(args: argparse.Namespace) -> int:
    if args.steps < 2:
        raise ValueError(f"--steps must be at least 2, got {args.steps}")
    os.makedirs(args.out, exist_ok=True)
    for name in ("interpolate.json", "interpolate.png"):
        check_output(os.path.join(args.out, name), args.overwrite, what="result")
    model, inputs, layout, (sd_a, sd_b) = _networks(args, [args.a, args.b])
    data = load_class_data(args.data)
    data.x_train, data.x_test = shape_inputs(data.x_train, inputs[0]), shape_inputs(data.x_test, inputs[0])
    start = time.perf_counter()
    act = data.x_train[: args.batch] if args.method == "activations" else None
    perm = align(sd_a, sd_b, layout, args.method, act, model, seed=args.seed, normalize=args.normalize)
    aligned = apply_symmetry(sd_b, layout, perm)
    seconds = time.perf_counter() - start
    norm = has_running_stats(model)
    paths = {"naive": interpolation_path(model, sd_a, sd_b, data, args.steps, reset_stats=norm),
             "aligned": interpolation_path(model, sd_a, aligned, data, args.steps, reset_stats=norm)}
    if norm:
        paths["aligned, stale BN stats"] = interpolation_path(model, sd_a, aligned, data, args.steps, False)
    os.makedirs(args.out, exist_ok=True)
    result = {"a": args.a, "b": args.b, "model": args.model, "data": args.data, "method": args.method,
              "normalize": args.normalize, "align_seconds": seconds, "norm_stats_recomputed": norm, "paths": paths}
    with open(os.path.join(args.out, "interpolate.json"), "w") as f:
        json.dump(result, f, indent=1)
    plot_paths(paths, os.path.join(args.out, "interpolate.png"), f"{os.path.basename(args.a)} -> "
               f"{os.path.basename(args.b)} on {args.data}")
    print(f"aligned in {seconds:.2f} s; {'normalization statistics recomputed at every t' if norm else ''}")
    for name, p in paths.items():
        mid = p["acc"][len(p["t"]) // 2]
        print(f"  {name:24s} loss barrier {p['loss_barrier']:.4f}  accuracy barrier {p['acc_barrier']:.4f}  "
              f"midpoint accuracy {mid:.4f}")
    print(f"  written to {os.path.join(args.out, 'interpolate.json')} and interpolate.png")
    return 0


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="FILE.py:factory or module:factory building the architecture")
    add_example_input_argument(p, "example input shape for tracing, e.g. 1,1,8,8 (default: the module's "
                                  "example_inputs(), else guessed from the first layer)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--method", choices=("weights", "activations"), default="weights", help="alignment method")
    p.add_argument("--batch", type=int, default=512, help="inputs for activation matching")
    p.add_argument("--seed", type=int, default=0, help="seed of the group order")
    p.add_argument("--normalize", action="store_true",
                   help="weight matching: every parameter tensor weighs the same (helps BatchNorm networks)")


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
    a = sub.add_parser("align", help="write B aligned to A (same function, weights closest to A)")
    a.add_argument("a", help="reference checkpoint")
    a.add_argument("b", help="checkpoint to align")
    a.add_argument("out", help="output checkpoint (.pt or .safetensors)")
    _add_common(a)
    a.add_argument("--data", help="inputs for --method activations: digits, mnist1d or a .pt file")
    a.set_defaults(func=_align_cmd)
    i = sub.add_parser("interpolate", help="loss and accuracy along the path from A to B, naive and aligned")
    i.add_argument("a", help="first checkpoint")
    i.add_argument("b", help="second checkpoint")
    _add_common(i)
    i.add_argument("--data", required=True, help="digits, mnist1d, or a .pt file with {'x': ..., 'y': ...}")
    i.add_argument("--steps", type=int, default=11, help="points on the path")
    i.add_argument("--out", default=".", help="folder for interpolate.json and interpolate.png")
    i.set_defaults(func=_interpolate_cmd)
    m = sub.add_parser("merge", help="align every network to the first and average them")
    m.add_argument("checkpoints", nargs="+", help="A.pt B.pt [C.pt ...] OUT.pt")
    _add_common(m)
    m.add_argument("--data", help="inputs for --method activations: digits, mnist1d or a .pt file")
    m.set_defaults(func=_merge_cmd)
    return parser


def _run(argv: list[str] | None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.cmd == "merge" and not any(x.startswith("-") for x in extra):
        args.checkpoints += extra  # OUT.pt after the options
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args.func(args)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (user errors print one line and return 2)."""
    return run_cli(_run, argv)


if __name__ == "__main__":
    sys.exit(main())
