/* charlens live view: type or paste a text and watch the checkpoint's own heads on it, computed in this page
   (live_forward.js): the head view and thumbnails, every head's detector scores (live_detectors.js) and the
   next-character predictions, with any heads switched off. Plain JavaScript, no libraries, no network. */
const charlensLive = (function () {
  "use strict";
  const DEBOUNCE_MS = 40; // typing faster than this recomputes once
  const TOP_K = 5;
  const RTL = /[\u0590-\u08FF\uFB1D-\uFDFF\uFE70-\uFEFF]/; // Hebrew, Arabic and their presentation forms
  const views = {}; // the latest result of each live view by id, for scripting (and the tests)

  function fixed(v, digits) { return Number.isFinite(v) ? v.toFixed(digits) : "\u2014"; }

  function codePoint(c) { return "U+" + c.codePointAt(0).toString(16).toUpperCase().padStart(4, "0"); }

  /* Text -> what the checkpoint's tokenizer makes of it (NFC; unknown characters -> the unknown token, as
     encode(unknown="replace")); longer than the context -> its last window. */
  function encoder(entry) {
    const index = new Map(entry.chars.map(function (c, i) { return [c, i]; }));
    const other = entry.class_names.indexOf("other");
    return function (raw) {
      const all = Array.from(raw.normalize("NFC")), chars = all.slice(-entry.config.block_size);
      const ids = [], unknown = [], classes = [], features = [];
      chars.forEach(function (c, i) {
        const id = index.get(c);
        if (id === undefined) unknown.push(i);
        ids.push(id === undefined ? entry.unknown_id : id);
        classes.push(entry.class_names[c in entry.class_table ? entry.class_table[c] : other]);
        features.push(entry.feature_table[c] || 0);
      });
      return { chars: chars, ids: ids, classes: classes, features: features, unknown: unknown, total: all.length };
    };
  }

  function mount(section, entry, id, report) {
    const el = report.el;
    if (entry.omitted) {
      section.append(el("p", { class: "note", id: id + "-omitted", text: "The live model was left out of this page: " + entry.omitted + "." }));
      return;
    }
    const cfg = entry.config, L = cfg.n_layer, H = cfg.n_head, encode = encoder(entry);
    const model = charlensForward.load(entry);
    const detectorNames = Object.keys(entry.detectors).filter(charlensDetectors.known);
    const missing = Object.keys(entry.detectors).filter(function (n) { return !charlensDetectors.known(n); });
    const off = new Set(); // ablated heads, as l * H + h
    const scoreCells = {}; // detector name -> its row's cells: uniform baseline, then one per head

    const input = el("textarea", { id: id + "-input", rows: 3, dir: "auto", spellcheck: "false", "aria-label": "your text",
      placeholder: "Type or paste a text (up to " + cfg.block_size + " characters are read)" });
    input.value = entry.initial_text || "";
    const notice = el("div", { class: "status", id: id + "-notice" });
    const predictions = el("div", { class: "predictions", id: id + "-predictions" });
    const timing = el("div", { class: "note", id: id + "-timing" });
    const viewBox = el("div", { id: id + "-view" });
    const view = report.headView(viewBox, { name: entry.name, n_layer: L, n_head: H, head_names: entry.head_names || [],
                                            texts: [], live: true }, id);
    section.append(
      el("p", { class: "note", text: "The checkpoint's weights (float16) are in this page and its forward pass runs " +
        "here, on every change of the text: no server, no network." }),
      input, notice, predictions, ablationGrid(), viewBox, detectorTable(), timing);

    function ablationGrid() {
      const table = el("table", { class: "ablation", id: id + "-ablation" });
      for (let l = 0; l < L; l++) {
        const tr = el("tr", {}, [el("td", { text: "layer " + l })]);
        for (let h = 0; h < H; h++) {
          const box = el("input", { type: "checkbox", id: id + "-off-" + l + "-" + h, "aria-label": "switch off L" + l + "H" + h });
          box.addEventListener("change", function () { if (box.checked) off.add(l * H + h); else off.delete(l * H + h); update(); });
          tr.append(el("td", {}, [el("label", {}, [box, " H" + h])]));
        }
        table.append(tr);
      }
      return el("div", {}, [el("div", { class: "panel-title", text: "Switch heads off (their output is zeroed; " +
        "later layers and the predictions change with it)" }), table]);
    }

    function detectorTable() {
      const head = el("tr", {}, [el("th", { text: "detector" }), el("th", { text: "uniform" })]);
      for (let k = 0; k < L * H; k++) head.append(el("th", { text: "L" + Math.floor(k / H) + "H" + (k % H) }));
      const body = el("tbody");
      for (const name of detectorNames) {
        const cells = [el("td", { class: "num" })];
        for (let k = 0; k < L * H; k++) cells.push(el("td", { class: "num", "data-head": k }));
        scoreCells[name] = cells;
        body.append(el("tr", { "data-detector": name }, [el("td", { text: name, title: entry.detectors[name] })].concat(cells)));
      }
      const parts = [el("div", { class: "panel-title", text: "Each head's detector scores on this text: mean attention " +
        "on the detector's targets over the rows that have any (as in the analysis; uniform = what uniform causal attention scores)" }),
        el("div", { class: "table-wrap" }, [el("table", { class: "scores", id: id + "-scores" }, [el("thead", {}, [head]), body])])];
      if (missing.length) parts.push(el("p", { class: "note", text: "Not computed in the page: " + missing.join(", ") + "." }));
      return el("div", {}, parts);
    }

    function showScores(scores) {
      for (const name of detectorNames) {
        const s = scores[name], cells = scoreCells[name];
        cells[0].textContent = fixed(s.baseline, 3);
        s.score.forEach(function (v, k) {
          cells[k + 1].textContent = fixed(v, 3);
          cells[k + 1].style.backgroundColor = Number.isFinite(v) ? "rgba(37,99,235," + (0.6 * v).toFixed(3) + ")" : "";
        });
      }
    }

    function showPredictions(logits) {
      const max = Math.max.apply(null, logits);
      let sum = 0;
      const p = Array.from(logits, function (x) { const e = Math.exp(x - max); sum += e; return e; });
      const top = p.map(function (v, i) { return [v / sum, i]; }).sort(function (a, b) { return b[0] - a[0]; }).slice(0, TOP_K);
      predictions.replaceChildren(el("span", { class: "panel-title", text: "Next character: " }));
      for (const [prob, i] of top) {
        const c = entry.chars[i];
        predictions.append(el("span", { class: "pred", "data-id": i, "data-p": prob.toFixed(4),
          text: "\u2018" + (report.VISIBLE[c] || c) + "\u2019 " + prob.toFixed(2) }));
      }
    }

    function describe(enc) {
      const parts = [];
      if (enc.total > enc.chars.length) parts.push("Only the last " + enc.chars.length + " of " + enc.total +
        " characters are read (the model's context).");
      if (enc.unknown.length) {
        const seen = Array.from(new Set(enc.unknown.map(function (i) { return enc.chars[i]; })));
        parts.push("Not in the model's vocabulary, read as the unknown token (marked): " +
          seen.map(function (c) { return "\u2018" + c + "\u2019 (" + codePoint(c) + ")"; }).join(", ") + ".");
      }
      return parts.join(" ");
    }

    function update() {
      const t0 = performance.now(), enc = encode(input.value), T = enc.chars.length;
      if (!T) {
        viewBox.hidden = true;
        predictions.replaceChildren();
        notice.textContent = "Type or paste a text above to run the model on it.";
        views[id] = { text: "", ms: null };
        return;
      }
      const result = charlensForward.forward(model, enc.ids, function (l, h) { return off.has(l * H + h); });
      const t1 = performance.now();
      const scores = charlensDetectors.score(detectorNames, result.attention, L * H, T, charlensDetectors.context(enc.ids, enc.classes, enc.features, entry));
      const t2 = performance.now();
      viewBox.hidden = false;
      view.show({ text: enc.chars, w: result.attention, scale: 1, unknown: enc.unknown, rtl: RTL.test(enc.chars.join("")) });
      for (const c of viewBox.querySelectorAll(".thumbs canvas")) {
        c.classList.toggle("ablated", off.has(Number(c.dataset.layer) * H + Number(c.dataset.head)));
      }
      showPredictions(result.logits);
      showScores(scores);
      notice.textContent = describe(enc);
      const ms = { forward: t1 - t0, detectors: t2 - t1, draw: performance.now() - t2, total: performance.now() - t0 };
      timing.textContent = "Updated in " + ms.total.toFixed(0) + " ms (forward pass " + ms.forward.toFixed(0) + " ms, detectors " +
        ms.detectors.toFixed(0) + " ms, drawing " + ms.draw.toFixed(0) + " ms).";
      views[id] = { text: enc.chars.join(""), ids: enc.ids, attention: result.attention, logits: result.logits,
                    scores: scores, ms: ms };
    }

    let pending = null;
    input.addEventListener("input", function () {
      clearTimeout(pending);
      pending = setTimeout(update, DEBOUNCE_MS);
    });
    update();
  }

  return { mount: mount, views: views };
})();
