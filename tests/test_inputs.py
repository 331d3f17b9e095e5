"""Analysis inputs: parallel held-out windows that start at the same verse in both languages."""
from analysis.runs.inputs import parallel_windows


def test_parallel_windows_start_at_the_same_verses_and_never_overlap():
    en = [(f"Ruth 1:{v}", f"verse {v} of ruth in english words") for v in range(1, 30)]
    he = [(f"Ruth 1:{v}", f"פסוק {v} ברות") for v in range(1, 30) if v != 4]  # one verse missing
    wa, wb, keys = parallel_windows(en, he, T=40, n=100)
    assert "Ruth 1:4" not in keys and len(wa) == len(wb) == len(keys) > 5
    en_d, he_d = dict(en), dict(he)
    for a, b, k in zip(wa, wb, keys):
        assert len(a) == len(b) == 40
        assert a.startswith(en_d[k]) and b.startswith(he_d[k])
    starts = [int(k.split(":")[1]) for k in keys]
    assert starts == sorted(starts) and all(y - x >= 2 for x, y in zip(starts, starts[1:]))  # 40 chars span > 1 verse
    wa2, _, keys2 = parallel_windows(en, he, T=40, n=3, seed=1)
    assert len(keys2) == 3 and set(keys2) <= set(keys)


def test_default_bibles_are_compared_on_the_same_verses():
    from types import SimpleNamespace

    from analysis.runs.inputs import AnalysisInputs, parallel_heldout
    from data.corpora import bible_corpus

    corpora = {lang: bible_corpus(lang) for lang in ("en", "he")}
    model = SimpleNamespace(config=SimpleNamespace(block_size=64))
    runs = [AnalysisInputs("x.pt", lang, lang, model, None, {}, None, None, corpus=c) for lang, c in corpora.items()]
    a, b = parallel_heldout(runs[0], runs[1], n_windows=20, seed=0)
    assert runs[0].heldout is None  # the inputs given are not changed: new ones are returned
    en_units, he_units = dict(corpora["en"].heldout_units), dict(corpora["he"].heldout_units)
    wa, wb = a.heldout.windows, b.heldout.windows
    assert len(wa) == len(wb) == 20
    for x, y in zip(wa, wb):
        keys = [k for k in en_units if x.startswith(en_units[k][:64]) and k in he_units and y.startswith(he_units[k][:64])]
        assert keys, f"windows {x[:30]!r} / {y[:30]!r} do not start at the same verse"
    files = [AnalysisInputs("x.pt", "f", "en", model, None, {}, None, None, corpus=None) for _ in range(2)]
    assert parallel_heldout(files[0], files[1], n_windows=20) is None
