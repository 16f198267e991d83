"""Labels files are matched to checkpoints by name only; anything unmatched or missing is refused (or stored)."""

import json

import numpy as np
import pytest
import torch
from cli_helpers import FACTORY_MODULE, assert_one_line_error, cli, install_factories, warning_lines
from zoo_models import make_mlp

from datasets import LabelError, ZooReader
from datasets.labels import match_labels, read_label_file

MODEL = ("--model", f"{FACTORY_MODULE}:make", "--workers", "0", "--quiet")  # no example input: guessed


@pytest.fixture
def ckpts(tmp_path, monkeypatch):
    """Five checkpoints ``m0..m4`` (m3, m4 in ``sub/``); returns (folder, {stem: accuracy label})."""
    install_factories(tmp_path, monkeypatch)
    src = tmp_path / "ckpts"
    (src / "sub").mkdir(parents=True)
    for i in range(5):
        torch.save(make_mlp(i).state_dict(), src / ("sub" if i >= 3 else "") / f"m{i}.pt")
    return src, {f"m{i}": round(0.1 * (i + 1), 2) for i in range(5)}


def convert(capsys, src, labels, *extra):
    out = src.parent / "zoo.h5"
    if out.exists():
        out.unlink()
    rc, text, err = cli(capsys, "convert", src, out, "--labels", labels, *MODEL, *extra)
    return rc, text, err, out


def stored(out, name):
    with ZooReader(out) as r:
        return dict(zip(r.labels("source"), r.labels(name), strict=True)), r.label_kind(name)


def test_rows_are_matched_by_name_in_any_order_and_form(ckpts, capsys, tmp_path):
    src, acc = ckpts
    # reversed order, a case-variant header, stems, file names, relative paths, ./ and backslashes
    names = {"m0": "m0", "m1": "m1.pt", "m2": "./m2.pt", "m3": "sub\\m3.pt", "m4": "sub/m4"}
    rows = "".join(f"{names[s]},{acc[s]},{i}\n" for i, s in reversed(list(enumerate(sorted(acc)))))
    (tmp_path / "l.csv").write_text("File,acc,epoch\n" + rows)
    rc, text, err, out = convert(capsys, src, tmp_path / "l.csv")
    assert rc == 0 and "added 5 models" in text, err
    got, kind = stored(out, "acc")
    assert kind == "float" and got == pytest.approx({f"{'sub/' if s >= 'm3' else ''}{s}.pt": a for s, a in acc.items()})
    epochs, kind = stored(out, "epoch")
    assert kind == "int" and epochs["sub/m4.pt"] == 4 and epochs["m0.pt"] == 0
    # sensitivity: the sorted-order pairing the old code fell back on would have given m0 the last row
    assert rows.splitlines()[0].startswith("sub/m4") and got["m0.pt"] == pytest.approx(0.1)


def test_a_file_without_a_key_column_is_refused_naming_the_names_looked_for(ckpts, capsys, tmp_path):
    src, acc = ckpts
    (tmp_path / "l.csv").write_text("id,acc\n" + "".join(f"{i},{a}\n" for i, a in enumerate(acc.values())))
    rc, _, err, out = convert(capsys, src, tmp_path / "l.csv")
    assert_one_line_error(rc, err, "no column naming each row's checkpoint", "file, filename", "checkpoint", "model",
                          "found 'id', 'acc'", "never matched by order")
    assert not out.exists()


def test_checkpoints_without_a_row_are_refused_or_stored_as_missing(ckpts, capsys, tmp_path):
    src, acc = ckpts
    (tmp_path / "l.csv").write_text("name,acc,epoch\n" + "".join(f"m{i},{acc[f'm{i}']},{i}\n" for i in range(3)))
    rc, _, err, out = convert(capsys, src, tmp_path / "l.csv")
    assert_one_line_error(rc, err, "2 of 5 checkpoints have no row", "sub/m3.pt", "--allow-missing")
    assert not out.exists()
    rc, _, err, out = convert(capsys, src, tmp_path / "l.csv", "--allow-missing")
    assert rc == 0, err
    warned = warning_lines(err)
    assert any("2 of 5 checkpoints have no row" in w for w in warned), err
    assert any("'epoch'" in w and "stored as float columns" in w for w in warned), err  # int -> float, said so
    got, kind = stored(out, "epoch")
    assert kind == "float" and np.isnan(got["sub/m3.pt"]) and got["m2.pt"] == 2


def test_rows_naming_no_checkpoint_are_refused(ckpts, capsys, tmp_path):
    src, acc = ckpts
    rows = "".join(f"{s}.pt,{a}\n" for s, a in acc.items())
    (tmp_path / "l.csv").write_text("checkpoint,acc\n" + rows + "m9.pt,0.9\nm10.pt,1.0\n")
    rc, _, err, _ = convert(capsys, src, tmp_path / "l.csv")
    assert_one_line_error(rc, err, "2 rows name no checkpoint", "line 7: 'm9.pt'", "line 8: 'm10.pt'")
    rc, _, err, out = convert(capsys, src, tmp_path / "l.csv", "--allow-missing")
    assert rc == 0 and any("2 rows name no checkpoint" in w for w in warning_lines(err)), err
    assert stored(out, "acc")[0]["m1.pt"] == pytest.approx(0.2)


def test_duplicate_rows_conflict_or_merge(ckpts, capsys, tmp_path):
    src, acc = ckpts
    rows = "".join(f"{s},{a}\n" for s, a in acc.items())
    (tmp_path / "same.csv").write_text("path,acc\n" + rows + "m2,0.3\n")  # identical repeat of m2's row
    rc, _, err, out = convert(capsys, src, tmp_path / "same.csv")
    assert rc == 0 and stored(out, "acc")[0]["m2.pt"] == pytest.approx(0.3), err
    (tmp_path / "conflict.csv").write_text("path,acc\n" + rows + "m2.pt,0.9\n")
    for extra in ((), ("--allow-missing",)):  # a conflict is never resolved by guessing
        rc, _, err, _ = convert(capsys, src, tmp_path / "conflict.csv", *extra)
        assert_one_line_error(rc, err, "1 checkpoints have conflicting rows", "m2.pt at line 4 and line 7",
                              "acc 0.3 vs 0.9")


def test_ragged_rows_are_refused_with_their_lines(ckpts, capsys, tmp_path):
    src, acc = ckpts
    (tmp_path / "l.csv").write_text("file,acc,epoch\nm0,0.1,0\nm1,0.2\nm2,0.3,2\nm3,0.4,3,9\nm4,0.5,4\n")
    rc, _, err, _ = convert(capsys, src, tmp_path / "l.csv", "--allow-missing")
    assert_one_line_error(rc, err, "2 rows do not have the header's 3 fields", "line 3 has 2", "line 5 has 4")


@pytest.mark.parametrize("sep", [";", "\t"])
def test_semicolon_and_tab_separated_files_are_read(ckpts, capsys, tmp_path, sep):
    src, acc = ckpts
    # a decimal comma inside quotes must not confuse the sniffing
    rows = "".join(f"{s}{sep}{a}{sep}\"{s},x\"\n" for s, a in acc.items())
    (tmp_path / "l.csv").write_text(f"file{sep}acc{sep}note\n" + rows)
    rc, _, err, out = convert(capsys, src, tmp_path / "l.csv")
    assert rc == 0, err
    got, kind = stored(out, "acc")
    assert kind == "float" and got["sub/m4.pt"] == pytest.approx(0.5)
    assert stored(out, "note")[0]["m1.pt"] == "m1,x"


def test_empty_cells_are_refused_or_stored_as_missing(ckpts, capsys, tmp_path):
    src, acc = ckpts
    (tmp_path / "l.csv").write_text("file,acc,epoch\nm0,0.1,0\nm1,,1\nm2,NA,2\nm3,0.4,\nm4,0.5,4\n")
    rc, _, err, _ = convert(capsys, src, tmp_path / "l.csv")
    assert_one_line_error(rc, err, "3 cells are empty", "m1.pt 'acc'", "m2.pt 'acc'", "sub/m3.pt 'epoch'")
    rc, _, err, out = convert(capsys, src, tmp_path / "l.csv", "--allow-missing")
    assert rc == 0 and any("'epoch'" in w and "float" in w for w in warning_lines(err)), err
    got, _ = stored(out, "acc")
    assert np.isnan(got["m1.pt"]) and np.isnan(got["m2.pt"]) and got["m0.pt"] == pytest.approx(0.1)


def test_a_name_that_fits_several_checkpoints_is_refused(ckpts, capsys, tmp_path):
    src, acc = ckpts
    (src / "other").mkdir()
    torch.save(make_mlp(5).state_dict(), src / "sub" / "m5.pt")
    torch.save(make_mlp(6).state_dict(), src / "other" / "m5.pt")
    rows = "".join(f"{s},{a}\n" for s, a in acc.items())
    (tmp_path / "l.csv").write_text("file,acc\n" + rows + "m5.pt,0.6\nother/m5.pt,0.7\n")
    rc, _, err, _ = convert(capsys, src, tmp_path / "l.csv")
    assert_one_line_error(rc, err, "line 7: 'm5.pt' fits 2 checkpoints", "other/m5.pt, sub/m5.pt",
                          "relative to the folder")
    (tmp_path / "l.csv").write_text("file,acc\n" + rows + "sub/m5.pt,0.6\nother/m5,0.7\n")
    rc, _, err, out = convert(capsys, src, tmp_path / "l.csv")
    assert rc == 0, err
    got, _ = stored(out, "acc")
    assert got["sub/m5.pt"] == pytest.approx(0.6) and got["other/m5.pt"] == pytest.approx(0.7)
    # a relative path wins over a file name: "m0.pt" is the path of m0.pt, not sub/m0.pt's file name
    torch.save(make_mlp(8).state_dict(), src / "sub" / "m0.pt")
    (tmp_path / "l.csv").write_text("file,acc\n" + rows + "sub/m5.pt,0.6\nother/m5,0.7\nsub/m0.pt,0.8\n")
    rc, _, err, out = convert(capsys, src, tmp_path / "l.csv")
    got, _ = stored(out, "acc")
    assert rc == 0 and got["m0.pt"] == pytest.approx(0.1) and got["sub/m0.pt"] == pytest.approx(0.8), err


def test_json_labels_and_keys_that_look_like_numbers(tmp_path):
    (tmp_path / "l.json").write_text(json.dumps({"001.pt": {"acc": 0.5}, "002": {"acc": None}}))
    table = read_label_file(tmp_path / "l.json")
    assert table.key == "source" and table.names == ["001.pt", "002"]
    with pytest.raises(LabelError, match="1 cells are empty"):
        match_labels(table, ["001.pt", "002.pt"])
    (tmp_path / "l.csv").write_text("name,acc\n001,0.5\n002,0.6\n")  # "001" stays text: it is a name, not 1
    by_source, kinds = match_labels(read_label_file(tmp_path / "l.csv"), ["001.pt", "002.pt"])
    assert by_source == {"001.pt": {"acc": 0.5}, "002.pt": {"acc": 0.6}} and kinds == {"acc": "float"}
    (tmp_path / "list.json").write_text(json.dumps([{"acc": 0.5}, {"acc": 0.6}]))
    with pytest.raises(LabelError, match="no column naming each row's checkpoint"):
        read_label_file(tmp_path / "list.json")
    (tmp_path / "one.csv").write_text("file\nm0\n")
    with pytest.raises(LabelError, match="single column"):
        read_label_file(tmp_path / "one.csv")
    (tmp_path / "rep.csv").write_text("file,acc,acc\nm0,1,2\n")
    with pytest.raises(LabelError, match="repeated names"):
        read_label_file(tmp_path / "rep.csv")
    (tmp_path / "nokey.csv").write_text("file,acc\n,0.5\n")
    with pytest.raises(LabelError, match="line 2: the 'file' cell is empty"):
        read_label_file(tmp_path / "nokey.csv")


def test_a_resumed_convert_needs_labels_only_for_the_new_checkpoints(ckpts, capsys, tmp_path):
    src, acc = ckpts
    (tmp_path / "l.csv").write_text("file,acc\n" + "".join(f"{s},{a}\n" for s, a in acc.items()))
    rc, _, err, out = convert(capsys, src, tmp_path / "l.csv")
    assert rc == 0, err
    for i in (5, 6):
        torch.save(make_mlp(i).state_dict(), src / f"m{i}.pt")
    (tmp_path / "new.csv").write_text("file,acc\nm5,0.6\n")
    rc, _, err = cli(capsys, "convert", src, out, "--labels", tmp_path / "new.csv", *MODEL)
    assert_one_line_error(rc, err, "1 of 2 checkpoints have no row (e.g. m6.pt)")  # the 5 stored ones need none
    (tmp_path / "new.csv").write_text("file,acc\nm5,0.6\nm6,0.7\n")
    rc, text, err = cli(capsys, "convert", src, out, "--labels", tmp_path / "new.csv", *MODEL)
    assert rc == 0 and "added 2 models, skipped 5, 7 in total" in text, err
    got, _ = stored(out, "acc")
    assert got["m6.pt"] == pytest.approx(0.7) and got["sub/m4.pt"] == pytest.approx(0.5)
