"""convert adds models in blocks of rows: the zoo of adding them one by one, and the first bad model's error."""

import importlib

import numpy as np
import pytest
import torch
from cli_helpers import FACTORY_MODULE, assert_one_line_error, cli, install_factories
from zoo_models import make_mlp

from datasets import ZooReader, ZooWarning, ZooWriter
from datasets.convert import convert_folder

RUN = ("--workers", "0", "--quiet")


@pytest.fixture
def factories(tmp_path, monkeypatch):
    return install_factories(tmp_path, monkeypatch)


def test_blocks_store_what_adding_one_by_one_stores(factories):
    factory = importlib.import_module(FACTORY_MODULE).make
    src = factories / "pt"
    src.mkdir()
    given = []
    for i in range(300):  # more than one block
        sd = make_mlp(i).state_dict()
        if i % 50 == 7:  # wider than the layout: added on its own, rounded, measured
            sd = {k: v.double() / 3 for k, v in sd.items()}
        elif i % 50 == 9:  # narrower: widened on loading
            sd = {k: v.half() for k, v in sd.items()}
        elif i % 50 == 11:  # wrapped
            sd = {f"module.{k}": v for k, v in sd.items()}
        torch.save(sd, src / f"m{i:03d}.pt")
        given.append({k.removeprefix("module."): v for k, v in sd.items()})
    with pytest.warns(ZooWarning, match="6 models had float64 weights"):
        res = convert_folder(src, factories / "a.h5", factory=factory, workers=0, progress=False)
    assert res.added == 300
    with ZooReader(factories / "a.h5") as r:
        layout = r.layout(r.fingerprints[0])
        got = np.stack([r.read(i)[1] for i in range(r.num_models)])
        sources = list(r.labels("source"))
    with pytest.warns(ZooWarning, match="6 models had float64 weights"), ZooWriter(factories / "b.h5") as w:
        for i, sd in enumerate(given):
            w.add(sd, layout, labels={"source": f"m{i:03d}.pt"})
    with ZooReader(factories / "b.h5") as r:
        want = np.stack([r.read(i)[1] for i in range(r.num_models)])
    assert sources == [f"m{i:03d}.pt" for i in range(300)]
    assert got.dtype == want.dtype and np.array_equal(got, want)


def test_the_first_bad_checkpoint_is_the_one_reported(factories, capsys):
    src = factories / "pt"
    src.mkdir()
    for i in range(3):
        torch.save(make_mlp(i).state_dict(), src / f"a{i}.pt")
    nan = make_mlp(3).state_dict()
    nan["fc2.bias"][0] = float("nan")
    torch.save(nan, src / "b.pt")  # a NaN weight, in a block of good models
    (src / "c.pt").write_bytes(b"not a checkpoint")
    rc, _, err = cli(capsys, "convert", src, factories / "z.h5", "--model", f"{FACTORY_MODULE}:make", *RUN)
    assert_one_line_error(rc, err, "model 3 (b.pt)", "NaN/Inf")
    wrong = make_mlp(4).state_dict()
    wrong["fc2.bias"] = wrong["fc2.bias"][:2]
    (src / "b.pt").unlink()
    torch.save(wrong, src / "b.pt")  # mis-shaped: reported before the unreadable file after it
    rc, _, err = cli(capsys, "convert", src, factories / "z.h5", "--model", f"{FACTORY_MODULE}:make", *RUN)
    assert_one_line_error(rc, err, "b.pt", "fc2.bias")
    assert not (factories / "z.h5").exists()
