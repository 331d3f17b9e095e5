/* charlens live detectors: analysis/measures/detectors.py for the text typed into the page.
   A detector is one predicate target(c, i, j): is key j (<= i) a target of query i? `c` holds the text's
   token ids, character-class names, feature bits and its word and line structure (as detectors.word_structure:
   words are runs of characters other than space, newline and punctuation; a word or line cut by the text's
   start has no known start). `score` does what scoring.score_masks does: a head's score is its mean attention
   mass on the targets over the rows that have any, row 0 never counted; the baseline is the same for uniform
   causal attention. The page shows raw scores: the analysis's selectivity needs a text split's statistics.
   Adding a detector: one entry in TARGETS, under its Python name. */
const charlensDetectors = (function () {
  "use strict";
  const MAX_OFFSET = 8; // as detectors.MAX_OFFSET
  const MAX_PREFIX = 4; // as detectors.MAX_PREFIX
  const BOUNDARY = ["space", "newline"];
  const SEPARATOR = ["space", "newline", "punctuation"];

  function offset(k) { return function (c, i, j) { return j === i - k; }; }
  function keyIn(classNames) { return function (c, i, j) { return classNames.includes(c.cls[j]); }; }
  function prefixMatch(k) {
    return function (c, i, j) {
      if (j < k || j >= i || i < k - 1) return false;
      for (let m = 0; m < k; m++) if (c.ids[j - 1 - m] !== c.ids[i - m]) return false;
      return true;
    };
  }

  const TARGETS = {
    self: offset(0),
    previous_char: offset(1),
    local: function (c, i, j) { return j >= i - c.localWindow; },
    space: keyIn(BOUNDARY),
    punctuation: keyIn(["punctuation"]),
    vowel: keyIn(["vowel"]),
    consonant: keyIn(["consonant"]),
    capital: keyIn(["upper"]),
    prefix_letter: function (c, i, j) { return c.starts[j] && (c.features[j] & c.bits.prefix_letter) !== 0; },
    final_form: function (c, i, j) { return (c.features[j] & c.bits.final_form) !== 0; },
    duplicate: function (c, i, j) { return j < i && c.ids[j] === c.ids[i]; },
    recent_space: function (c, i, j) { return j === c.boundaryBefore[i]; },
    word_start: function (c, i, j) { return c.inWord[i] && j === c.wordStart[i]; },
    same_word: function (c, i, j) { return c.inWord[i] && c.inWord[j] && c.wid[i] > 0 && c.wid[j] === c.wid[i]; },
    previous_word: function (c, i, j) {
      const wanted = c.wid[i] - (c.inWord[i] ? 1 : 0);
      return wanted > 0 && c.inWord[j] && c.wid[j] === wanted;
    },
    line_start: function (c, i, j) { return j === c.lineStart[i]; },
    first_position: function (c, i, j) { return j === 0; }
  };
  for (let k = 2; k <= MAX_OFFSET; k++) TARGETS["offset_" + k] = offset(k);
  for (let k = 1; k <= MAX_PREFIX; k++) TARGETS["prefix_match_" + k] = prefixMatch(k);

  /* What the predicates see of a text: ids, class names, feature bits, and per position the last boundary
     before it, whether it is in a word, the word's number (0: cut by the start), its word's start and its
     line's start (-1: none). `entry`: the live-view entry (feature bits, local window). */
  function context(ids, classNames, features, entry) {
    const boundaryBefore = [], inWord = [], starts = [], wid = [], wordStart = [], lineStart = [];
    let lastBoundary = -1, words = 0, start = -1, line = -1;
    for (let i = 0; i < ids.length; i++) {
      boundaryBefore.push(lastBoundary);
      if (BOUNDARY.includes(classNames[i])) lastBoundary = i;
      inWord.push(!SEPARATOR.includes(classNames[i]));
      starts.push(i > 0 && inWord[i] && !inWord[i - 1]);
      if (starts[i]) { words++; start = i; }
      wid.push(words);
      wordStart.push(inWord[i] && words > 0 ? start : -1);
      if (i > 0 && classNames[i - 1] === "newline") line = i;
      lineStart.push(line);
    }
    return { ids: ids, cls: classNames, features: features, bits: entry.feature_bits, localWindow: entry.local_window,
             boundaryBefore: boundaryBefore, inWord: inWord, starts: starts, wid: wid, wordStart: wordStart,
             lineStart: lineStart };
  }

  /* Scores of every named detector the page knows, for attention (nHeads x T x T):
     {name: {score: [per head, NaN when no row has targets], baseline, rows}}. */
  function score(names, attention, nHeads, T, c) {
    const out = {};
    for (const name of names) {
      const target = TARGETS[name];
      if (!target) continue;
      const cells = [];
      let rows = 0, base = 0;
      for (let i = 1; i < T; i++) {
        let n = 0;
        for (let j = 0; j <= i; j++) if (target(c, i, j)) { cells.push(i * T + j); n++; }
        if (n) { rows++; base += n / (i + 1); }
      }
      const scores = [];
      for (let h = 0; h < nHeads; h++) {
        const o = h * T * T;
        let mass = 0;
        for (const cell of cells) mass += attention[o + cell];
        scores.push(rows ? mass / rows : NaN);
      }
      out[name] = { score: scores, baseline: rows ? base / rows : NaN, rows: rows };
    }
    return out;
  }

  return { known: function (name) { return name in TARGETS; }, context: context, score: score };
})();
