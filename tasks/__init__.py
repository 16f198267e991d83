"""One module per task: what ``train.py`` and ``eval.py`` do differently for each.

A task (:class:`tasks.base.Task`) owns its config fields, data, model building, loss, validation
metrics, evaluation report and plots; the two scripts are one loop each over whichever task a run
names. Add a task by writing a module with a ``Task`` subclass and listing it in :data:`TASKS`.
"""

from tasks.base import EvalContext, Report, Task
from tasks.checkpoint import load_model, read_checkpoint, save_checkpoint, task_config
from tasks.classify import ClassifyTask
from tasks.edit import EditTask
from tasks.ghn import GHNTask
from tasks.neumeta import NeuMetaTask
from tasks.predict import PredictTask

TASKS: dict[str, type[Task]] = {t.name: t for t in (PredictTask, ClassifyTask, EditTask, GHNTask, NeuMetaTask)}
"""Every task, by its ``--task`` name."""

__all__ = ["TASKS", "EvalContext", "Report", "Task", "load_model", "read_checkpoint", "save_checkpoint",
           "task_config"]
