"""From validated detectors, the decomposition and the key characters to a head's label.

In order:
1. `induction`: a prefix-match detector of length k >= 2 holds on text (beyond a one-character matcher, its
   prefix control) AND the head's prefix-matching score on repeated random sequences holds (beyond the same
   control, on its own discovery and held-out repetition sets). The mechanism is the finding: a planted
   three-character induction head attends to itself when there is nothing to copy, and is far more
   'selective' for self than for its rarer matches.
2. A mixture, `offset_2 + recent_space`: two or three components of the decomposition (each at least MIN_SHARE
   of the head's mass, none SINGLE_SHARE or more, together with the uniform term all but MAX_REST of it), the
   held-out unexplained share at most MAX_UNEXPLAINED, and every named component holding on its own as a part:
   the lower bound of its selectivity above PART_CUT on discovery and held-out text (a component with a third of
   the mass has g of about 1/3, near the single-label cut, so the part needs its own, lower cut). Components are
   named in registry order, whatever their weights, so the same mixture gets the same name in every model.
3. Otherwise the primary behaviour is the most selective validated detector, where selectivities within
   SPECIFICITY_TOL (relative) of the best count as equal and the more specific detector (the smaller target
   set, measured by its uniform baseline) wins: a pure previous-character head is just as selective for the
   local window 0..2, which holds three times the keys. `local` takes part only for a head spread over its
   window (each offset 0..2 at least LOCAL_SPREAD of the mass on the window): a head on offset 2 and the latest
   space is not a local head.
A class label (vowel, consonant, capital, prefix_letter, final_form, punctuation) needs the head's enrichment to
be spread over the class (analysis.measures.keychars; `class_spread`): at least two members hold SPREAD_MIN_SHARE
of the class's excess mass and none more than SPREAD_MAX_TOP. Otherwise the head is labelled by the characters
that carry it, `key 'e'`: a head on the latest 'e' is not a vowel head. `space` (the two word separators) is
not a class in this sense.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from charlens.analysis.measures.detectors import LOCAL_WINDOW, REGISTRY

INDUCTION = "induction"
SPECIFICITY_TOL = 0.1  # relative: 0.99 vs 1.0 tie, 0.02 vs 0.01 do not
MIN_SHARE = 0.15  # a mixture component's least weight
SINGLE_SHARE = 0.75  # a component with this much of the mass explains the head alone
MAX_REST = 0.1  # what the named components and the uniform term may leave to other components
MAX_UNEXPLAINED = 0.15  # held-out unexplained share of a mixture label
PART_CUT = 0.1  # a mixture component's selectivity lower bound, on both splits
LOCAL_SPREAD = 0.2  # `local`: each offset 0..LOCAL_WINDOW holds at least this share of the head's mass on the window
SPREAD_MIN_SHARE = 0.1  # a class member "enriched": this share of the class's excess mass
SPREAD_MAX_TOP = 0.75  # a class member "dominating": more than this share
KEY_SHARE = 0.25  # a key label names the members with at least this share (at most three)
CLASS_LABELS = ("vowel", "consonant", "capital", "prefix_letter", "final_form", "punctuation")


@dataclass(frozen=True)
class HeadEvidence:
    """What the rule sees of one head; arrays over the detectors `names` (D,) or the decomposition's basis (K,)."""

    names: list[str]
    selectivity: np.ndarray  # discovery selectivity (D,)
    ok: np.ndarray  # validated on both splits (D,), induction gated
    part: np.ndarray  # holds as a mixture component: lower bound > PART_CUT on both splits (D,)
    specificity: np.ndarray  # uniform baseline (D,): the smaller, the more specific
    window_mass: np.ndarray  # mean mass at offsets 0..LOCAL_WINDOW (LOCAL_WINDOW + 1,)
    basis: list[str]
    weights: np.ndarray  # decomposition weights (K,), summing to 1
    unexplained: float  # held-out unexplained share of the decomposition
    keys: dict[str, tuple[str, ...]]  # class detector -> its key characters where its enrichment is NOT spread


@dataclass(frozen=True)
class Label:
    name: str  # "induction", a detector, "a + b", "key 'e'", or "none"
    candidate: int  # the detector behind it (a mixture: its largest component; none: the best candidate)
    kind: str  # induction | mixture | key | detector | none


def induction_detectors(names: list[str]) -> list[int]:
    """Indices of the prefix-match detectors of length >= 2 (those with the prefix control) among `names`."""
    return [d for d, n in enumerate(names) if REGISTRY[n].control == "prefix"]


def gate_induction(valid: np.ndarray, names: list[str], repeated_valid: np.ndarray) -> np.ndarray:
    """valid (D, L, H) with the prefix-match detectors of length >= 2 kept only where the
    repeated-sequence test (L, H) also holds."""
    out = valid.copy()
    for d in induction_detectors(names):
        out[d] &= repeated_valid
    return out


def primary(selectivity: np.ndarray, ok: np.ndarray, specificity: np.ndarray) -> int:
    """Index of the primary detector among (D,): the highest selectivity among the validated ones (all,
    when none is), ties within SPECIFICITY_TOL of the best going to the smallest `specificity` (uniform baseline)."""
    g = np.where(np.isnan(selectivity), -np.inf, selectivity)
    pool = ok if ok.any() else np.ones_like(ok)
    best = np.max(np.where(pool, g, -np.inf))
    near = pool & (g >= best - SPECIFICITY_TOL * max(best, 0.0))
    return int(np.argmin(np.where(near, specificity, np.inf)))


def class_spread(excess: np.ndarray, members: np.ndarray) -> tuple[bool, np.ndarray]:
    """Whether a class's enrichment is spread over its members, and the members that carry it (indices, largest
    first, at most three, each >= KEY_SHARE of it; the largest alone when none is). excess (V,): a head's mass
    on each key character minus its positional control (analysis.measures.keychars); members (V,) bool."""
    gain = np.where(members, np.clip(excess, 0.0, None), 0.0)
    total = gain.sum()
    if total <= 0:
        return False, np.array([], dtype=int)
    share = gain / total
    order = np.argsort(-share, kind="stable")
    spread = share[order[0]] <= SPREAD_MAX_TOP and int((share >= SPREAD_MIN_SHARE).sum()) >= 2
    carriers = [k for k in order[:3] if share[k] >= KEY_SHARE] or [int(order[0])]
    return bool(spread), np.array(carriers, dtype=int)


def key_label(chars: tuple[str, ...]) -> str:
    """`key 'e'`, `key 'e' 'a'`: whitespace shown as escapes."""
    return "key " + " ".join(repr(c) if c.isspace() else f"'{c}'" for c in chars)


def _name(ev: HeadEvidence, detector: str) -> str:
    return key_label(ev.keys[detector]) if detector in ev.keys else detector


def _local_ok(ev: HeadEvidence) -> bool:
    m = np.clip(np.nan_to_num(ev.window_mass), 0.0, None)
    return bool(m.sum() > 0 and (m / m.sum()).min() >= LOCAL_SPREAD)


def _mixture(ev: HeadEvidence, pool: np.ndarray) -> list[int] | None:
    """The detector indices of the mixture label, or None when the head is not such a mixture."""
    w = dict(zip(ev.basis, ev.weights))
    parts = sorted((n for n in ev.basis if n in ev.names and w[n] >= MIN_SHARE), key=lambda n: -w[n])
    named = sum(w[n] for n in parts) + w.get("uniform", 0.0)
    if not 2 <= len(parts) <= 3 or w[parts[0]] >= SINGLE_SHARE or named < 1 - MAX_REST:
        return None
    if not ev.unexplained <= MAX_UNEXPLAINED:  # NaN (nothing held out) is not small
        return None
    index = sorted(ev.names.index(n) for n in parts)
    if not all(ev.part[d] for d in index):
        return None
    window = {"self", "previous_char"} | {f"offset_{k}" for k in range(2, LOCAL_WINDOW + 1)}
    if "local" in ev.names and pool[ev.names.index("local")] and set(parts) <= window:
        return None  # spread over the local window: that is what `local` names
    return index


def head_label(ev: HeadEvidence) -> Label:
    """The label of one head (module docstring); "none" with the best candidate when nothing holds."""
    names, ok = ev.names, ev.ok
    induction = [d for d in induction_detectors(names) if ok[d]]
    if induction:
        only = np.zeros_like(ok)
        only[induction] = True
        # nested target sets the other way round: a head matching 3 characters also hits most 4-character matches,
        # and the shortest prefix that explains it as well is the finding
        return Label(INDUCTION, primary(ev.selectivity, only, -ev.specificity), "induction")
    pool = ok.copy()
    if "local" in names and not _local_ok(ev):
        pool[names.index("local")] = False
    parts = _mixture(ev, pool)
    if parts is not None:
        best = max(parts, key=lambda d: ev.weights[ev.basis.index(names[d])])
        return Label(" + ".join(_name(ev, names[d]) for d in parts), best, "mixture")
    d = primary(ev.selectivity, pool, ev.specificity)
    if not pool.any():
        return Label("none", d, "none")
    return Label(_name(ev, names[d]), d, "key" if names[d] in ev.keys else "detector")
