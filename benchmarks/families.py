"""Benchmark: the converter on every family of networks we have: traced, sound, exact, permutable, time, memory.

Networks: the catalogue (``tests/graphs/catalogue.py``: hand-written models of the shapes of the families people
use, and tiny Hugging Face models when ``transformers`` is installed), the Hugging Face families of
``tests/graphs/test_hf_families.py``, and two full-size networks written in ``benchmarks/trace_time.py``
(ViT-Tiny/16 at 224 x 224 and ResNet-50, traced with a batch of 1).

Per network, in float64 (also the default dtype) on one torch thread:
  * traced: ``graphs.trace`` returns a layout (anything else it raises is counted as a failure, with its type);
  * sound: 3 random symmetries change no output by more than 1e-9 relative (1e-6 for the cases whose norms
    compute in float32; see their catalogue notes);
  * exact: ``to_state_dict(to_graph(...))`` gives back every tensor bit for bit;
  * permutable: the share of parameters on an edge that touches a neuron some symmetry moves;
  * trace s, to_graph s (the first conversion, compiling the layout), peak MiB: the rise of the process's
    resident set during that first ``to_graph`` (``/proc/self/status`` VmHWM after ``clear_refs``).

Usage: python benchmarks/families.py [--out benchmarks/results/families] [--skip-full]
Writes ``<out>.json`` and ``<out>.md`` with the git commit and the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from collections.abc import Callable

import torch
from torch import nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

from trace_time import ResNet50, ViTTiny, _commit, _machine  # noqa: E402

import graphs  # noqa: E402
from tests.equivariance import as_double, output_error  # noqa: E402
from tests.graphs.catalogue import ALL_CASES  # noqa: E402

FAMILY_OF = {
    "MLP and gated MLP": ["mlp_relu", "mlp_dropout", "mlp_activations", "siren", "mlp_nobias_leaky", "linear_only",
                          "mlp_hidden_output", "mlp_two_heads", "two_tower_add", "tied_autoencoder", "sigmoid_gate",
                          "swiglu_rmsnorm", "glu_chunk", "concat_branches", "persistent_buffer_scale",
                          "constant_buffer_fixes", "prelu_channel_scale", "bn1d_mlp", "layernorm_mlp",
                          "weight_shared_recurrent", "weight_norm_layers", "min_max_two_tensor", "inplace_alias_ops"],
    "embedding and RNN": ["embedding_bag", "lstm_classifier"],
    "CNN (1-3d, grouped, depthwise, norms)": [
        "conv1d_flatten", "conv1d_bn_grouped", "conv2d_cnn", "conv3d_cnn", "conv_flatten_channels_last", "grouped_conv",
        "depthwise_conv", "depthwise_multiplier", "pooling_zoo", "conv_scale_prelu_shared", "conv_channel_se",
        "bn2d_cnn", "groupnorm_mixed", "groupnorm_residual_refine", "instancenorm_affine", "std_conv_reshape_as",
        "im2col_col2im", "sliding_window_unfold"],
    "ResNet, DenseNet, U-Net": ["resnet_two_stage", "input_residual", "densenet_concat", "unet_bilinear",
                                "unet_transpose", "hf_resnet_basic", "hf_resnet_bottleneck", "resnet50"],
    "ConvNeXt": ["convnext_blocks", "hf_convnext"],
    "transformer (encoder, decoder, LM)": [
        "mha_packed", "attention_sdpa", "attention_matmul_causal", "attention_mask_kwarg", "split_qkv_attention",
        "gqa_attention", "tiny_lm_tied", "sinusoidal_pe_fixes_stream", "hf_bert", "hf_gpt2", "hf_llama", "hf_t5",
        "hf_mpnet", "hf_xglm", "hf_roformer", "hf_convbert"],
    "vision transformer": ["tiny_vit", "hf_vit", "vit_tiny"],
    "audio (conv + transformer)": ["hf_wav2vec2", "hf_hubert"],
    "mixture of experts": ["moe_batched_experts", "aten_grouped_mm", "moe_grouped_mm", "hf_mixtral"],
}


def _networks(full: bool) -> list[tuple[str, Callable[[], tuple]]]:
    """``(name, make)``: make returns ``(float64 model, inputs, kwargs, rtol)``."""
    out = []
    have_hf = True
    try:
        __import__("transformers")
    except ImportError:
        have_hf = False
    for case in ALL_CASES:
        if case.hf and not have_hf:
            continue

        def make(case=case):
            kwargs = case.kwargs() if case.kwargs else None
            model, inputs, kwargs = as_double(case.build(), case.inputs(), kwargs)
            return model, inputs, kwargs, case.rtol
        out.append((case.name, make))
    if have_hf:
        import transformers

        from tests.graphs.test_hf_families import FAMILIES, Hidden  # optional dependency: needs transformers

        for fam, (model_cls, config_cls, config) in FAMILIES.items():
            def make(model_cls=model_cls, config_cls=config_cls, config=config):
                torch.manual_seed(0)
                model = Hidden(getattr(transformers, model_cls)(getattr(transformers, config_cls)(**config)))
                g = torch.Generator().manual_seed(1)
                x = (torch.randn(2, 400, generator=g) if "conv_dim" in config
                     else torch.randint(1, 64, (2, 8), generator=g))
                return model.double().eval(), (x,), None, 1e-9
            out.append((f"hf_{fam}", make))
    if full:
        def vit():
            torch.manual_seed(0)
            return ViTTiny().double().eval(), (torch.randn(1, 3, 224, 224, dtype=torch.float64),), None, 1e-9

        def resnet():
            torch.manual_seed(0)
            return ResNet50().double().eval(), (torch.randn(1, 3, 224, 224, dtype=torch.float64),), None, 1e-9
        out += [("vit_tiny", vit), ("resnet50", resnet)]
    return out


def _status(field: str) -> int:
    """A ``/proc/self/status`` field in KiB (0 where there is none)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current resident set
    except OSError:
        pass


def permutable_share(layout: graphs.Layout) -> float:
    """Share of parameters on an edge whose source or target neuron some symmetry moves."""
    c = graphs.compile_layout(layout)
    moved = c.node_movable[c.edge_index[0]] | c.node_movable[c.edge_index[1]]
    held = c.edge_mask.sum(1)
    return float(held[moved].sum()) / max(1, layout.num_params)


def measure(make: Callable[[], tuple]) -> dict:
    model, inputs, kwargs, rtol = make()
    row: dict = {"params": sum(p.numel() for p in model.parameters())}
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            layout = graphs.trace(model, inputs, kwargs)
    except Exception as exc:  # noqa: BLE001 - the benchmark reports what failed and how
        row.update(traced=False, error=f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}")
        return row
    row.update(traced=True, trace_s=time.perf_counter() - t0)
    sd = model.state_dict()
    _reset_peak()
    rss = _status("VmRSS")
    t0 = time.perf_counter()
    g = graphs.to_graph(model, layout)
    row["to_graph_s"] = time.perf_counter() - t0
    row["peak_mib"] = max(0, _status("VmHWM") - rss) / 1024
    c = graphs.compile_layout(layout)
    row.update(edges=int(c.edge_index.shape[1]), width=c.width, chunks=c.num_chunks,
               slots_per_param=g.edge_attr.numel() / max(1, layout.num_params))
    back = graphs.to_state_dict(g)
    row["exact"] = set(back) == set(sd) and all(
        back[k].dtype == v.dtype and back[k].shape == v.shape and torch.equal(back[k], v) for k, v in sd.items())
    del g, back
    gen = torch.Generator().manual_seed(0)
    errs = [output_error(model, graphs.apply_symmetry(sd, layout, graphs.random_symmetry(layout, gen)), inputs, kwargs)
            for _ in range(3)]
    row.update(sound=max(errs) < rtol, max_error=max(errs), rtol=rtol, permutable=permutable_share(layout),
               groups=len(layout.group_sizes()))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/families", help="output path without extension")
    parser.add_argument("--skip-full", action="store_true", help="leave out ViT-Tiny and ResNet-50")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)  # some Hugging Face models fill masks in the default dtype
    warnings.simplefilter("ignore")
    graphs.trace(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)), torch.randn(2, 3))  # torch's set-up
    rows = {}
    for name, make in _networks(not args.skip_full):
        rows[name] = r = measure(make)
        if r["traced"]:
            print(f"{name:28s} {r['params']:>11,d} sound={r['sound']!s:5s} exact={r['exact']!s:5s} "
                  f"perm={r['permutable']:.2f} trace {r['trace_s']:.2f}s to_graph {r['to_graph_s']:.2f}s "
                  f"{r['peak_mib']:.1f} MiB K={r['width']} chunks={r['chunks']}", flush=True)
        else:
            print(f"{name:28s} FAILED {r['error']}", flush=True)
    meta = {"commit": _commit(), "machine": _machine()}
    with open(f"{args.out}.json", "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=1)
    lines = ["# The converter by family (benchmarks/families.py)", "",
             f"Commit {meta['commit']}; {meta['machine']}. Float64. 'permutable': share of parameters on an edge "
             "touching a neuron some symmetry moves (min-max over the family). The last four columns are for the "
             "family's largest network; to_graph is the first conversion (compiling the layout), peak its rise "
             "in resident memory.", "",
             "| family | tried | traced | sound | exact | permutable | largest | params | trace s | to_graph s "
             "| peak MiB | K, chunks |", "|---|---:|---:|---:|---:|---|---|---:|---:|---:|---:|---|"]
    placed = {n for names in FAMILY_OF.values() for n in names}
    families = dict(FAMILY_OF)
    other = [n for n in rows if n not in placed]
    if other:
        families["other"] = other
    for fam, names in families.items():
        got = {n: rows[n] for n in names if n in rows}
        if not got:
            continue
        ok = [r for r in got.values() if r["traced"]]
        big_name, big = max(((n, r) for n, r in got.items() if r["traced"]), key=lambda x: x[1]["params"],
                            default=(None, None))
        perm = [r["permutable"] for r in ok]
        cells = [fam, str(len(got)), str(len(ok)), str(sum(r["sound"] for r in ok)), str(sum(r["exact"] for r in ok)),
                 f"{min(perm):.2f}-{max(perm):.2f}" if perm else "-"]
        if big is not None:
            cells += [big_name, f"{big['params']:,}", f"{big['trace_s']:.2f}", f"{big['to_graph_s']:.2f}",
                      f"{big['peak_mib']:.1f}", f"{big['width']}, {big['chunks']}"]
        lines.append("| " + " | ".join(cells) + " |")
    failed = [f"{n}: {r['error']}" for n, r in rows.items() if not r["traced"]]
    unsound = [f"{n}: {r['max_error']:.2g}" for n, r in rows.items() if r["traced"] and not r["sound"]]
    lines += ["", f"Failed to trace: {'; '.join(failed) or 'none'}. Unsound: {'; '.join(unsound) or 'none'}.", ""]
    with open(f"{args.out}.md", "w") as f:
        f.write("\n".join(lines))


if __name__ == "__main__":
    main()
