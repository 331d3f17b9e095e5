"""Analysis inputs: parallel held-out windows that start at the same verse in both languages; --text
read in pieces (the same windows as the whole text, memory flat in the file's size)."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from charlens.analysis.runs.inputs import Settings, load_inputs, parallel_windows, sample_windows
from analyzer_helpers import make_checkpoint
from charlens.data.corpora import read_text_file

ROOT = Path(__file__).resolve().parents[1]


def test_parallel_windows_start_at_the_same_verses_and_never_overlap():
    en = [(f"Ruth 1:{v}", f"verse {v} of ruth in english words") for v in range(1, 30)]
    he = [(f"Ruth 1:{v}", f"פסוק {v} ברות") for v in range(1, 30) if v != 4]  # one verse missing
    (wa, wb), keys = parallel_windows([en, he], T=40, n=100)
    assert "Ruth 1:4" not in keys and len(wa) == len(wb) == len(keys) > 5
    en_d, he_d = dict(en), dict(he)
    for a, b, k in zip(wa, wb, keys):
        assert len(a) == len(b) == 40
        assert a.startswith(en_d[k]) and b.startswith(he_d[k])
    starts = [int(k.split(":")[1]) for k in keys]
    assert starts == sorted(starts) and all(y - x >= 2 for x, y in zip(starts, starts[1:]))  # 40 chars span > 1 verse
    (wa2, _), keys2 = parallel_windows([en, he], T=40, n=3, seed=1)
    assert len(keys2) == 3 and set(keys2) <= set(keys)
    long = [(k, v + " and a much longer tail in this third text") for k, v in en if k != "Ruth 1:9"]
    windows, keys3 = parallel_windows([en, he, long], T=40, n=100)  # any number of texts: every one lines up
    assert "Ruth 1:9" not in keys3 and len(windows) == 3 and all(len(w) == len(keys3) for w in windows)
    for text, units in zip(windows, (en, he, long)):
        assert all(w.startswith(dict(units)[k][:40]) for w, k in zip(text, keys3))


def test_default_bibles_are_compared_on_the_same_verses():
    from types import SimpleNamespace

    from charlens.analysis.runs.inputs import AnalysisInputs, parallel_heldout
    from charlens.data.corpora import bible_corpus

    corpora = {lang: bible_corpus(lang) for lang in ("en", "he")}
    model = SimpleNamespace(config=SimpleNamespace(block_size=64))
    runs = [AnalysisInputs("x.pt", lang, lang, model, None, {}, None, None, corpus=c) for lang, c in corpora.items()]
    a, b = parallel_heldout(runs, n_windows=20, seed=0)
    assert runs[0].heldout is None  # the inputs given are not changed: new ones are returned
    en_units, he_units = dict(corpora["en"].heldout_units), dict(corpora["he"].heldout_units)
    wa, wb = a.heldout.windows, b.heldout.windows
    assert len(wa) == len(wb) == 20
    for x, y in zip(wa, wb):
        keys = [k for k in en_units if x.startswith(en_units[k][:64]) and k in he_units and y.startswith(he_units[k][:64])]
        assert keys, f"windows {x[:30]!r} / {y[:30]!r} do not start at the same verse"
    files = [AnalysisInputs("x.pt", "f", "en", model, None, {}, None, None, corpus=None) for _ in range(2)]
    assert parallel_heldout(files, n_windows=20) is None
    abjad = AnalysisInputs("x.pt", "en_novowel", "en", model, None, {}, None, None, corpus=bible_corpus("en", drop_vowels=True))
    pointed = AnalysisInputs("x.pt", "he_niqqud", "he", model, None, {}, None, None, corpus=bible_corpus("he", keep_niqqud=True))
    four = parallel_heldout([*runs, abjad, pointed], n_windows=20, seed=0)  # the study's four conditions
    units = [dict(f.corpus.heldout_units) for f in four]
    for windows in zip(*(f.heldout.windows for f in four)):
        assert any(all(w.startswith(u[k][:64]) for w, u in zip(windows, units)) for k in units[3] if k in units[0])
    assert "same verses as in en, he, he_niqqud" in four[2].heldout.source


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("ckpt"))[0]


@pytest.mark.parametrize("policy,extra", [("error", ""), ("replace", "Zebra ж "), ("drop", "Zebra ж ")])
def test_text_windows_are_those_of_the_whole_text(ckpt, tmp_path, policy, extra):
    """Read in pieces (error, replace) or whole (drop, which moves every window): the windows sample_windows
    cuts from each half of the text as the policy leaves it."""
    path = tmp_path / "t.txt"
    path.write_text(("and the lord said unto moses, go in " + extra) * 300, encoding="utf-8")
    inputs = load_inputs(ckpt, Settings(n_windows=12, unknown_chars=policy), text_path=str(path))
    text = read_text_file(path)
    if policy == "drop":
        text = text.replace("Z", "").replace("ж", "")  # the characters the tiny model's vocabulary lacks
    half, rng = len(text) // 2, np.random.default_rng(0)
    assert inputs.discovery.windows == sample_windows(text[:half], 32, 12, rng)
    assert inputs.heldout.windows == sample_windows(text[half:], 32, 12, rng)
    assert (inputs.discovery.n_chars, inputs.heldout.n_chars) == (half, len(text) - half)
    if policy != "error":
        assert inputs.unknown.count == 600 and inputs.unknown.characters == "Zж"


MEASURE = """
import sys
from charlens import analyze
assert analyze.main(["--ckpt", sys.argv[1], "--text", sys.argv[2], "--out", sys.argv[3], "--windows", "16",
                     "--n-boot", "50", "--induction-windows", "4", "--quiet", *sys.argv[4:]]) == 0
print(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")))
"""


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="peak memory is read from /proc/self/status (Linux)")
@pytest.mark.parametrize("policy", ["replace", "drop"])
def test_analyze_text_memory_is_flat_in_the_file_size(ckpt, tmp_path, policy):
    """Peak RSS of `analyze.py --text` with one character outside the vocabulary (so the file is also
    counted, and for drop indexed without it, in pieces): 50 MB vs 5 MB of text."""
    line = "and the lord said unto moses, go in unto pharaoh Zebra\n"
    peaks = {}
    for mb in (5, 50):
        path = tmp_path / f"{mb}.txt"
        path.write_text(line * (mb * 10**6 // len(line)), encoding="utf-8")
        out = subprocess.run([sys.executable, "-c", MEASURE, str(ckpt), str(path), str(tmp_path / f"r{mb}"),
                              "--unknown-chars", policy], cwd=ROOT, capture_output=True, text=True, check=True)
        peaks[mb] = int(out.stdout.split()[-1])  # KiB
    print(f"analyze --text --unknown-chars {policy} peak memory: {peaks[5] / 1024:.1f} MiB for 5 MB, {peaks[50] / 1024:.1f} MiB for 50 MB")
    assert peaks[50] <= 1.10 * peaks[5], peaks
