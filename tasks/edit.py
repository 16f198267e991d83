"""``--task edit``: an equivariant weight-to-weight map that edits what INRs draw.

The metanetwork maps an INR's weights to new weights; the loss is the MSE between the image the
edited INR draws and the edited image (``--edit dilate`` or ``contrast``) of the original INR, both
rendered on a ``--image-size`` grid. ``best.pt`` has the lowest validation MSE. Eval writes the
first edited INRs as loadable ``.safetensors`` state_dicts and plots INR / target / edited INR.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn
from torch_geometric.data import Batch

import graphs
from graphs.batch import batch_to_rows
from metanets.inr import EDITS, SirenRenderer, edit_image
from tasks import plots
from tasks.base import EvalContext, Report
from tasks.config import opt
from tasks.metanet import MetanetConfig, MetanetTask, ZooEval

__all__ = ["EditConfig", "EditTask", "edit_images"]


@dataclass
class EditConfig(MetanetConfig):
    """Options of ``--task edit``."""

    edit: str = opt("dilate", "the image edit the edited INRs should draw", EDITS)
    image_size: int = opt(8, "INR render resolution (pixels per side)")


def edit_images(model: nn.Module, batch: Batch, layout: graphs.Layout, renderer: SirenRenderer,
                edit: str) -> tuple[torch.Tensor, ...]:
    """(INR image, target = edit(image), image drawn by the edited INR), each ``[B, H, W]``."""
    before = renderer(batch_to_rows(batch, layout))
    target = edit_image(edit, before).detach()
    after = renderer(batch_to_rows(model(batch), layout))
    return before.detach(), target, after


class EditTask(MetanetTask):
    """Weight-to-weight editing of INRs."""

    name = "edit"
    Config = EditConfig
    select, higher_is_better = "mse", False
    probe_features = False  # the equivariant editor takes weights only

    def load_data(self) -> None:
        """The zoo (one architecture: an INR zoo) and the renderer of its INRs."""
        super().load_data()
        if not self.single:
            raise ValueError("--task edit needs a zoo of one architecture (an INR zoo)")
        self.layout = self.layouts[0]
        self.renderer = SirenRenderer(self.layout, (self.tc.image_size, self.tc.image_size)).to(self.device)

    def loss(self, module: nn.Module, batch: Batch) -> tuple[torch.Tensor, int, dict[str, float]]:
        """MSE between the edited INR's image and the edited image."""
        _, target, after = edit_images(module, batch, self.layout, self.renderer, self.tc.edit)
        return torch.nn.functional.mse_loss(after.float(), target), batch.num_graphs, {}

    @torch.no_grad()
    def validate(self, model: nn.Module) -> dict[str, float]:
        """``mse`` of the edited INRs and ``mse_identity``: the error of leaving them unedited, for scale."""
        model.eval()
        sq, sq0, n = 0.0, 0.0, 0
        for batch in self.val_loader:
            batch = batch.to(self.device, non_blocking=True)
            with self.run.autocast():
                before, target, after = edit_images(model, batch, self.layout, self.renderer, self.tc.edit)
            sq += float((after.float() - target).square().mean((1, 2)).sum())
            sq0 += float((before - target).square().mean((1, 2)).sum())
            n += batch.num_graphs
        return {"mse": sq / max(n, 1), "mse_identity": sq0 / max(n, 1)}

    @classmethod
    @torch.no_grad()
    def evaluate(cls, model: nn.Module, data: ZooEval, ctx: EvalContext, n_write: int = 8) -> Report:
        """MSE of the edited INRs' images; the first ``n_write`` edited INRs go to ``out/edited/``."""
        task_cfg, runtime, out = ctx.task_cfg, ctx.runtime, ctx.out
        if data.paths is not None:
            raise ValueError("--predict scores checkpoints with predict or classify models; an edit model "
                             "edits a zoo split (drop --predict)")
        layout = graphs.Layout.from_json(ctx.ckpt["model_config"]["layout_json"])
        renderer = SirenRenderer(layout, (task_cfg.image_size, task_cfg.image_size)).to(runtime.device)
        sq, sq0, n, shown, files = 0.0, 0.0, 0, None, []
        os.makedirs(os.path.join(out, "edited"), exist_ok=True)
        for batch in data.loader:
            batch = batch.to(runtime.device)
            edited = batch_to_rows(model(batch), layout)
            before = renderer(batch_to_rows(batch, layout))
            target, after = edit_image(task_cfg.edit, before), renderer(edited)
            sq += float((after - target).square().mean((1, 2)).sum())
            sq0 += float((before - target).square().mean((1, 2)).sum())
            for i in range(min(batch.num_graphs, n_write - n)):
                sd = graphs.unflatten_state_dict(edited[i].cpu(), layout)
                files.append(os.path.join(out, "edited", f"{int(batch.zoo_index[i])}.safetensors"))
                graphs.save_checkpoint(sd, files[-1])
            if shown is None:
                shown = (before[:6].cpu(), target[:6].cpu(), after[:6].cpu())
            n += batch.num_graphs
        metrics = {"mse": sq / max(n, 1), "mse_identity": sq0 / max(n, 1)}
        title = f"{task_cfg.model}: {task_cfg.edit}, mse {metrics['mse']:.4f} (unedited {metrics['mse_identity']:.4f})"
        return Report(title=f"{task_cfg.model} on {os.path.basename(data.data)} [{data.split}, task edit "
                            f"{task_cfg.edit}]",
                      header=["metric", "value"], rows=[[k, v] for k, v in metrics.items()],
                      result={"data": os.path.abspath(data.data), "split": data.split, "model": task_cfg.model,
                              "task": "edit", "target": task_cfg.target, **metrics},
                      plot=lambda path: plots.edit_grid(shown, path, title), plot_name=f"{data.split}_edit.png",
                      files=files)
