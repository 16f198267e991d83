"""Evaluate a trained checkpoint, or use it on your own networks: one pipeline for every task.

    python eval.py runs/run/best.pt                          # the split it was validated on -> test
    python eval.py runs/run/best.pt --data zoo.h5 --split test
    python eval.py runs/run/best.pt --predict path/to/checkpoints/ --model mynets.py:make_net
    python eval.py runs/ghn/best.pt --max-archs 20     # a GHN: predicted vs. random init, per split
    python eval.py runs/ghn/best.pt --save my.safetensors --model mynets.py:make_net --bn-data digits

Reads top to bottom: checkpoint -> data -> metrics -> table and plot. Needs nothing but the
checkpoint (it holds the model and training configs, the input normalization and target scaling).
Prints a markdown table and writes a JSON file and a plot (which, depends on the task: ``tasks/``).
"""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # our `datasets`, not Hugging Face's

from graphs.cli import run_cli  # noqa: E402
from metanets import model_from_checkpoint  # noqa: E402
from tasks import TASKS, EvalContext, read_checkpoint, task_config  # noqa: E402
from tasks.config import EvalConfig, build_parser, parse  # noqa: E402
from tasks.runtime import Runtime  # noqa: E402

__all__ = ["evaluate", "main"]


def evaluate(argv: list[str] | None = None) -> dict:
    """Evaluate the checkpoint that ``argv`` names; returns what the JSON file holds."""
    # ----------------------------------------------------------- checkpoint
    configs = {name: task.EvalConfig for name, task in TASKS.items()}
    parser = build_parser(EvalConfig, configs, __doc__.split("\n\n")[0], positional=("checkpoint",))
    namespace = parser.parse_args(argv)
    ckpt = read_checkpoint(namespace.checkpoint)
    if ckpt["task"] not in TASKS:
        raise ValueError(f"{namespace.checkpoint} is a checkpoint of task {ckpt['task']!r}, which this version "
                         f"does not know (tasks: {', '.join(TASKS)})")
    task = TASKS[ckpt["task"]]
    common, options = parse(parser, namespace, EvalConfig, configs, task=task.name)
    run = Runtime.start(common.device, threads=common.threads, amp=False)
    out = common.out or os.path.dirname(os.path.abspath(common.checkpoint))
    os.makedirs(out, exist_ok=True)
    ctx = EvalContext(ckpt, task_config(ckpt, task.Config), common, options, run, out)
    model = model_from_checkpoint(ckpt).to(run.device)

    # ----------------------------------------------------------------- data
    data = task.eval_data(ctx)

    # -------------------------------------------------------------- metrics
    report = task.evaluate(model, data, ctx)

    # ------------------------------------------------------- table and plot
    print(report.markdown())
    result = {"checkpoint": os.path.abspath(common.checkpoint), **report.result}
    with open(os.path.join(out, report.json_name), "w") as f:
        json.dump(result, f, indent=2)
    if report.plot is not None and not common.no_plot:
        report.plot(os.path.join(out, report.plot_name))
    return result


def main(argv: list[str] | None = None) -> dict:
    """Entry point (see :func:`evaluate`)."""
    return evaluate(argv)


if __name__ == "__main__":
    sys.exit(run_cli(main))  # user errors (missing files, foreign checkpoints) print one line, exit code 2
