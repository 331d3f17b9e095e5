/* charlens live detectors: analysis/measures/detectors.py for the text typed into the page.
   A detector is one predicate target(c, i, j): is key j (<= i) a target of query i? `c` holds the text's
   token ids, character-class names and the last word boundary before each position. `score` does what
   score_masks does: a head's score is its mean attention mass on the targets over the rows that have any,
   row 0 never counted; the baseline is the same for uniform causal attention.
   Adding a detector: one entry in TARGETS, under its Python name. */
const charlensDetectors = (function () {
  "use strict";
  const MAX_OFFSET = 8; // as detectors.MAX_OFFSET
  const BOUNDARY = ["space", "newline"];

  function offset(k) { return function (c, i, j) { return j === i - k; }; }
  function keyIn(classNames) { return function (c, i, j) { return classNames.includes(c.cls[j]); }; }

  const TARGETS = {
    self: offset(0),
    previous_char: offset(1),
    space: keyIn(BOUNDARY),
    punctuation: keyIn(["punctuation"]),
    vowel: keyIn(["vowel"]),
    consonant: keyIn(["consonant"]),
    recent_space: function (c, i, j) { return j === c.boundaryBefore[i]; },
    duplicate: function (c, i, j) { return j < i && c.ids[j] === c.ids[i]; },
    induction: function (c, i, j) { return j >= 1 && j < i && c.ids[j - 1] === c.ids[i]; },
    first_position: function (c, i, j) { return j === 0; }
  };
  for (let k = 2; k <= MAX_OFFSET; k++) TARGETS["offset_" + k] = offset(k);

  /* What the predicates see of a text: ids, class names, and the last boundary before each position (-1: none). */
  function context(ids, classNames) {
    const boundaryBefore = [];
    let last = -1;
    for (let i = 0; i < ids.length; i++) {
      boundaryBefore.push(last);
      if (BOUNDARY.includes(classNames[i])) last = i;
    }
    return { ids: ids, cls: classNames, boundaryBefore: boundaryBefore };
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
