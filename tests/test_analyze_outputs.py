"""analyze.py never destroys what it did not write: --out replaces only an empty folder or a previous
charlens report; user text in report.md is escaped; folders follow the user's umask; Ctrl-C is one line."""
from __future__ import annotations

import os
import stat

import pytest

import analyze
from analysis.report.files import MARKER
from analyzer_helpers import make_checkpoint

QUICK = ["--windows", "16", "--n-boot", "50", "--induction-windows", "4", "--quiet"]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("ckpt"))[0]


def snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_folder_of_the_users_files_is_refused_and_left_byte_for_byte(ckpt, tmp_path, capsys):
    notes = tmp_path / "notes"
    (notes / "sub").mkdir(parents=True)
    (notes / "thesis.md").write_text("three years of work", encoding="utf-8")
    (notes / "sub" / "data.csv").write_bytes(b"\x00\x01binary")
    before = snapshot(notes)
    assert analyze.main(["--ckpt", str(ckpt), "--out", str(notes), *QUICK]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not a charlens report" in err[0]
    assert snapshot(notes) == before and sorted(p.name for p in tmp_path.iterdir()) == ["notes"]
    assert analyze.main(["--ckpt", str(ckpt), "--out", str(ckpt.parent), *QUICK]) == 2  # the checkpoints' own folder
    assert ckpt.is_file()


def test_an_empty_folder_or_a_previous_report_is_replaced(ckpt, tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    assert analyze.main(["--ckpt", str(ckpt), "--out", str(out), *QUICK]) == 0
    assert (out / MARKER).is_file() and (out / "summary.json").is_file()
    (out / "stale.png").write_bytes(b"old figure")
    assert analyze.main(["--ckpt", str(ckpt), "--out", str(out), *QUICK]) == 0  # a report: replaced whole
    assert not (out / "stale.png").exists() and (out / "report.html").is_file()


def test_user_text_in_report_md_is_escaped(ckpt, tmp_path):
    odd = tmp_path / "<img src=x onerror=alert(1)>.pt"
    odd.write_bytes(ckpt.read_bytes())
    out = tmp_path / "r"
    assert analyze.main(["--ckpt", str(odd), "--out", str(out), *QUICK]) == 0
    md = (out / "report.md").read_text(encoding="utf-8")
    outside_code = "".join(md.split("`")[::2])  # code spans show their text verbatim and render no HTML
    assert "<img" not in outside_code
    assert "`<img src=x onerror=alert(1)>`" in md


def test_report_folders_follow_the_umask(ckpt, tmp_path):
    old = os.umask(0o027)
    try:
        assert analyze.main(["--ckpt", str(ckpt), "--out", str(tmp_path / "r"), *QUICK]) == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "r").stat().st_mode) == 0o750


def test_ctrl_c_is_one_line_exit_130_and_leaves_the_previous_report(ckpt, tmp_path, capsys, monkeypatch):
    out = tmp_path / "r"
    assert analyze.main(["--ckpt", str(ckpt), "--out", str(out), *QUICK]) == 0
    before = snapshot(out)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(analyze, "run_analysis", interrupted)
    assert analyze.main(["--ckpt", str(ckpt), "--out", str(out), *QUICK]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("analyze.py: interrupted") and "Traceback" not in "".join(err)
    assert snapshot(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["r"]
