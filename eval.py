"""Evaluate a trained checkpoint, or use it on your own networks: one pipeline for every task.

    python eval.py runs/run/best.pt                          # the split it was validated on -> test
    python eval.py runs/run/best.pt --data zoo.h5 --split test
    python eval.py runs/run/best.pt --predict path/to/checkpoints/ --model mynets.py:make_net
    python eval.py runs/ghn/best.pt --max-archs 20     # a GHN: predicted vs. random init, per split
    python eval.py runs/ghn/best.pt --save my.safetensors --model mynets.py:make_net --bn-data digits

Reads top to bottom: checkpoint -> data -> metrics -> table and plot. Needs nothing but the
checkpoint (it holds the model and training configs, the input normalization and target scaling).
Prints a markdown table and writes a JSON file, per-model predictions (CSV) and a plot (which,
depends on the task: ``tasks/``). Python: ``eval.evaluate("runs/run/best.pt", split="val")``.
"""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # our `datasets`, not Hugging Face's

from graphs.cli import run_cli  # noqa: E402
from tasks import TASKS, EvalContext, read_checkpoint, task_config  # noqa: E402
from tasks.config import EvalConfig, build_parser, from_dict  # noqa: E402
from tasks.runtime import Runtime  # noqa: E402

__all__ = ["evaluate", "main", "run"]


CONFIGS = {name: task.EvalConfig for name, task in TASKS.items()}


def task_of(ckpt: dict, path: str) -> type:
    """The task class of a checkpoint."""
    if ckpt["task"] not in TASKS:
        raise ValueError(f"{path} is a checkpoint of task {ckpt['task']!r}, which this version does not know "
                         f"(tasks: {', '.join(TASKS)})")
    return TASKS[ckpt["task"]]


def evaluate(checkpoint: str, **options) -> dict:
    """Python API: ``evaluate("runs/run/best.pt", split="val", no_plot=True)``; options as the flags."""
    ckpt = read_checkpoint(checkpoint)
    task = task_of(ckpt, checkpoint)
    common, opts = from_dict(EvalConfig, CONFIGS, {"checkpoint": checkpoint, **options}, task=task.name)
    return run(ckpt, task, common, opts)


def run(ckpt: dict, task, common: EvalConfig, options) -> dict:
    """Checkpoint -> data -> metrics -> table and plot; returns what the JSON file holds."""
    runtime = Runtime.start(common.device, threads=common.threads, amp=False)
    out = common.out or os.path.dirname(os.path.abspath(common.checkpoint))
    os.makedirs(out, exist_ok=True)
    ctx = EvalContext(ckpt, task_config(ckpt, task.Config), common, options, runtime, out)

    # ----------------------------------------------------------------- data
    data = task.eval_data(ctx)
    model = task.eval_model(ctx, data).to(runtime.device)

    # -------------------------------------------------------------- metrics
    report = task.evaluate(model, data, ctx)

    # ------------------------------------------------------- table and plot
    print(report.markdown())
    result = {"checkpoint": os.path.abspath(common.checkpoint), **report.result}
    written = [os.path.join(out, report.json_name)]
    with open(written[0], "w") as f:
        json.dump(result, f, indent=2)
    if report.plot is not None and not common.no_plot:
        written.append(os.path.join(out, report.plot_name))
        report.plot(written[-1])
    print("wrote " + ", ".join(written + report.files))
    return result


def main(argv: list[str] | None = None) -> dict:
    """Parse the command line (the checkpoint first: its task decides the options) and evaluate."""
    parser = build_parser(EvalConfig, CONFIGS, __doc__.split("\n\n")[0], positional=("checkpoint",))
    namespace = parser.parse_args(argv)
    ckpt = read_checkpoint(namespace.checkpoint)
    task = task_of(ckpt, namespace.checkpoint)
    try:
        common, options = from_dict(EvalConfig, CONFIGS, vars(namespace), task=task.name)
    except ValueError as exc:
        parser.error(str(exc))
    return run(ckpt, task, common, options)


if __name__ == "__main__":
    sys.exit(run_cli(main))  # user errors (missing files, foreign checkpoints) print one line, exit code 2
