/* charlens report: draws the sections of a report from the JSON block #report-data.
   Plain JavaScript, no libraries, no network. Sections: findings (with their figure beside them), links,
   tables (sortable, one line per row), figures, interactive head views, live models (live.js), extra
   sections, and settings and provenance collapsed at the end. */
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("report-data").textContent);
  const main = document.getElementById("report");
  const toc = document.getElementById("toc");

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "text") node.textContent = v;
      else if (k === "class") node.className = v;
      else node.setAttribute(k, v);
    }
    for (const child of children || []) node.append(child);
    return node;
  }

  function section(id, title) {
    const s = el("section", { id: id });
    s.append(el("h2", { text: title }));
    main.append(s);
    toc.append(el("a", { href: "#" + id, text: title }));
    return s;
  }

  function formatCell(v) {
    if (v === null || v === undefined) return "";
    if (typeof v === "boolean") return v ? "yes" : "no";
    if (typeof v === "number") return Number.isInteger(v) ? String(v) : v.toFixed(3);
    if (Array.isArray(v)) return v.map(formatCell).join(", ");
    if (typeof v === "object") return JSON.stringify(v);
    return String(v);
  }

  function sortValue(v) {
    if (typeof v === "boolean") return v ? 1 : 0;
    if (Array.isArray(v)) return v.length ? formatCell(v) : "";
    return v === null || v === undefined ? "" : v;
  }

  /* A table whose columns are every key found in its rows (known or not), sortable
     by clicking a header (again to reverse). */
  function sortableTable(rows) {
    const columns = [];
    for (const row of rows) for (const k of Object.keys(row)) if (!columns.includes(k)) columns.push(k);
    const table = el("table", { class: "sortable" });
    const headRow = el("tr");
    table.append(el("thead", {}, [headRow]));
    const body = el("tbody");
    table.append(body);
    let order = rows.slice();
    function fill() {
      body.replaceChildren();
      for (const row of order) {
        const tr = el("tr", row.validated ? { class: "validated" } : {});
        for (const c of columns) {
          const v = row[c], text = formatCell(v);  // one line per row: long cells are cut, the whole value on hover
          tr.append(el("td", { text: text, title: text, class: typeof v === "number" ? "num" : "" }));
        }
        body.append(tr);
      }
    }
    columns.forEach(function (c) {
      const th = el("th", { text: c, title: "sort by " + c, "data-key": c });
      th.addEventListener("click", function () {
        const desc = th.classList.contains("asc");
        for (const other of headRow.children) other.classList.remove("asc", "desc");
        th.classList.add(desc ? "desc" : "asc");
        order = rows.slice().sort(function (a, b) {
          const x = sortValue(a[c]), y = sortValue(b[c]);
          let cmp;
          if (typeof x === "number" && typeof y === "number") cmp = x - y;
          else cmp = String(x).localeCompare(String(y), undefined, { numeric: true });
          return desc ? -cmp : cmp;
        });
        fill();
      });
      headRow.append(th);
    });
    fill();
    return el("div", { class: "table-wrap" }, [table]);
  }

  function keyValueTable(obj) {
    const table = el("table", { class: "kv" });
    for (const [k, v] of Object.entries(obj)) {
      table.append(el("tr", {}, [el("td", { text: k }), el("td", { text: formatCell(v) })]));
    }
    return table;
  }

  function figureBlock(f) {
    const fig = el("figure", { id: "figure-" + (f.name || "") });
    if (f.title) fig.append(el("h3", { text: f.title }));
    fig.append(el("img", { src: f.src, alt: f.title || f.name || "figure", loading: "lazy" }));
    if (f.caption) fig.append(el("figcaption", { text: f.caption }));
    return fig;
  }

  /* ---------- head view ---------- */

  function decodeBytes(b64) {
    const s = atob(b64);
    const out = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
    return out;
  }

  const VISIBLE = { " ": "\u2423", "\n": "\u23CE", "\t": "\u21E5", "\r": "\u21B5" };

  function blues(v) { // white -> dark blue
    return [Math.round(255 - 247 * v), Math.round(255 - 207 * v), Math.round(255 - 148 * v)];
  }
  const WEIGHT_RGB = Array.from({ length: 256 }, function (_, k) { return blues(Math.sqrt(k / 255)); });
  function weightRGB(w) { return WEIGHT_RGB[Math.round(255 * w)]; } // an attention weight's colour (sqrt: faint weights show)

  /* A head view: text panels, all-heads thumbnails, the head's matrix, export links. Each text's attention
     is `w` (L x H x T x T) times `scale`: stored bytes for the report's texts; a live view (live.js) passes
     its own with show({text, w, scale, unknown, rtl}), and gets this handle back. */
  function headView(container, view, id) {
    const L = view.n_layer, H = view.n_head;
    const texts = view.texts.map(function (t) {
      return { text: Array.from(t.text), w: decodeBytes(t.attention), scale: 1 / 255, cropped: t.cropped_from };
    });
    const state = { t: 0, l: view.start_layer || 0, h: view.start_head || 0, focus: null, pinned: false };

    function weight(i, j) {
      const t = texts[state.t], T = t.text.length;
      return t.w[((state.l * H + state.h) * T + i) * T + j] * t.scale;
    }

    const textSel = el("select", { id: id + "-text", "aria-label": "text" });
    view.texts.forEach(function (t, k) {
      const chars = Array.from(t.text);
      textSel.append(el("option", { value: k, text: (k + 1) + ": " + chars.slice(0, 40).join("") + (chars.length > 40 ? "\u2026" : "") }));
    });
    const layerSel = el("select", { id: id + "-layer", "aria-label": "layer" });
    for (let l = 0; l < L; l++) layerSel.append(el("option", { value: l, text: "layer " + l }));
    const headSel = el("select", { id: id + "-head", "aria-label": "head" });
    for (let h = 0; h < H; h++) headSel.append(el("option", { value: h, text: "head " + h }));
    const controls = el("div", { class: "controls" }, view.live ? [] : [el("label", { text: "text " }), textSel]);
    controls.append(el("label", { text: "layer " }), layerSel, el("label", { text: "head " }), headSel);
    const steps = view.training_steps ? trainingSteps(view.training_steps) : null;
    if (steps) controls.append(steps.label, steps.slider, steps.shown);
    const name = el("span", { class: "note", id: id + "-name" });
    controls.append(name);

    const thumbs = el("div", { class: "thumbs", id: id + "-thumbs" });
    thumbs.style.gridTemplateColumns = "repeat(" + H + ", 50px)";
    const thumbCanvases = [];
    for (let l = 0; l < L; l++) for (let h = 0; h < H; h++) {
      const c = el("canvas", { title: "layer " + l + " head " + h + " \u00b7 " + (view.head_names[l * H + h] || ""),
                               "data-layer": l, "data-head": h });
      c.addEventListener("click", function () { select(l, h); });
      thumbCanvases.push(c);
      thumbs.append(c);
    }

    const dir = view.rtl ? "rtl" : "ltr";
    const toPanel = el("div", { class: "textpanel", dir: dir, id: id + "-to" });
    const fromPanel = el("div", { class: "textpanel", dir: dir, id: id + "-from" });
    const status = el("div", { class: "status", id: id + "-status" });
    const matrix = el("canvas", { class: "matrix", id: id + "-matrix" });
    const exports = el("div", { class: "controls", id: id + "-export" }, [el("span", { class: "panel-title", text: "Export:" })]);
    for (const [what, make] of [["matrix", matrixPicture], ["view", headViewPicture]]) {
      for (const format of ["png", "svg"]) {
        exports.append(charlensExport.downloadLink(what + " " + format.toUpperCase(), id + "-export-" + what + "-" + format,
          format, make, function () { return (view.name ? view.name + "_" : "") + "L" + state.l + "H" + state.h + "_" + what; }));
      }
    }
    const left = el("div", {}, [
      el("div", { class: "panel-title", text: "Where the selected character attends (blue; darker = more attention). Hover or tap a character; tap again to unpin." }),
      toPanel,
      el("div", { class: "panel-title", text: "What attends to the selected character (orange)." }),
      fromPanel, status]);
    const right = el("div", {}, [el("div", { class: "panel-title", text: "All heads (click to pick)" }), thumbs,
      el("div", { class: "panel-title", text: "This head: rows = from, columns = to, text order left to right" }), matrix, exports]);
    container.append(controls, el("div", { class: "headview" }, [left, right]));

    function buildText() {
      const chars = texts[state.t].text;
      for (const panel of [toPanel, fromPanel]) {
        panel.replaceChildren();
        const unknown = texts[state.t].unknown || [];
        chars.forEach(function (c, i) {
          const span = el("span", { class: "ch" + (VISIBLE[c] ? " ws" : "") + (unknown.includes(i) ? " unk" : ""),
                                    "data-i": i, text: VISIBLE[c] || c });
          span.addEventListener("mouseenter", function () { if (!state.pinned) focus(i); });
          span.addEventListener("click", function () {
            state.pinned = !(state.pinned && state.focus === i);
            focus(i);
          });
          panel.append(span);
        });
      }
    }

    function drawThumbs() {
      const t = texts[state.t], T = t.text.length;
      thumbCanvases.forEach(function (c, k) {
        c.width = T; c.height = T;
        const ctx = c.getContext("2d"), img = ctx.createImageData(T, T);
        for (let p = 0; p < T * T; p++) {
          const rgb = weightRGB(t.w[k * T * T + p] * t.scale);
          img.data[4 * p] = rgb[0]; img.data[4 * p + 1] = rgb[1]; img.data[4 * p + 2] = rgb[2]; img.data[4 * p + 3] = 255;
        }
        ctx.putImageData(img, 0, 0);
        c.classList.toggle("selected", k === state.l * H + state.h);
      });
    }

    function drawMatrix() { // the selected head's thumbnail, enlarged
      const T = texts[state.t].text.length;
      const cell = Math.max(2, Math.floor(360 / T));
      matrix.width = T * cell; matrix.height = T * cell;
      const ctx = matrix.getContext("2d");
      ctx.imageSmoothingEnabled = false;
      ctx.drawImage(thumbCanvases[state.l * H + state.h], 0, 0, T * cell, T * cell);
      if (state.focus !== null) {
        ctx.lineWidth = 2;
        ctx.strokeStyle = "#2563eb";
        ctx.strokeRect(0, state.focus * cell, T * cell, cell);
        ctx.strokeStyle = "#ea580c";
        ctx.strokeRect(state.focus * cell, 0, cell, T * cell);
      }
    }

    function toWeight(i, j) { return j <= i ? weight(i, j) : 0; }

    function shade(panel, weightOf, rgb) {
      for (const span of panel.children) {
        const j = Number(span.dataset.i);
        const w = state.focus === null ? 0 : weightOf(j);
        span.dataset.w = w.toFixed(3);
        span.style.backgroundColor = w > 0 ? "rgba(" + rgb + "," + Math.pow(w, 0.6).toFixed(3) + ")" : "";
        span.style.color = w > 0.5 ? "white" : "";
        span.classList.toggle("focus", j === state.focus);
        span.title = state.focus === null ? "" : "weight " + w.toFixed(3);
      }
    }

    function shownChars() { return texts[state.t].text.map(function (c) { return VISIBLE[c] || c; }); }

    function matrixPicture() {
      return charlensExport.matrixPicture(shownChars(), toWeight, function (w) { return "rgb(" + weightRGB(w).join(",") + ")"; },
        name.textContent);
    }

    function headViewPicture() {
      const i = state.focus, T = texts[state.t].text.length, to = [], from = [];
      for (let j = 0; j < T; j++) { to.push(toWeight(i, j)); from.push(toWeight(j, i)); }
      return charlensExport.headViewPicture(shownChars(), to, from, view.rtl || texts[state.t].rtl,
        name.textContent + " \u00b7 " + label(i));
    }

    function label(i) {
      const c = texts[state.t].text[i];
      return "\u2018" + (VISIBLE[c] || c) + "\u2019 (position " + i + ")";
    }

    function describe() {
      const i = state.focus, T = texts[state.t].text.length;
      if (i === null) { status.textContent = "Hover or tap a character."; return; }
      const to = [], from = [];
      for (let j = 0; j <= i; j++) to.push([weight(i, j), j]);
      for (let k = i; k < T; k++) from.push([weight(k, i), k]);
      const top = function (list) {
        const shown = list.filter(function (p) { return p[0] >= 0.005; });
        if (!shown.length) return "nothing (all weights below 0.005)";
        return shown.sort(function (a, b) { return b[0] - a[0]; }).slice(0, 3)
          .map(function (p) { return label(p[1]) + " " + p[0].toFixed(2); }).join(", ");
      };
      status.textContent = label(i) + " attends most to " + top(to) + "; attended most by " + top(from) + ".";
    }

    function focus(i) {
      state.focus = i;
      shade(toPanel, function (j) { return toWeight(i, j); }, "37,99,235");
      shade(fromPanel, function (k) { return toWeight(k, i); }, "234,88,12");
      drawMatrix();
      describe();
    }

    function select(l, h) {
      state.l = l; state.h = h;
      layerSel.value = l; headSel.value = h;
      const cropped = texts[state.t].cropped;
      name.textContent = "L" + l + "H" + h + ": " + (view.head_names[l * H + h] || "none") +
        (cropped ? " \u00b7 first " + texts[state.t].text.length + " of " + cropped + " characters shown" : "");
      drawThumbs();
      const T = texts[state.t].text.length;
      focus(state.focus === null ? Math.floor(T / 2) : Math.min(state.focus, T - 1));
    }

    /* The training-step slider (snapshots of the run): one text's attention at each step, the last the final model. */
    function trainingSteps(ts) {
      const chars = Array.from(ts.text);
      const ws = ts.attention.map(decodeBytes);
      const slider = el("input", { type: "range", id: id + "-step", min: 0, max: ts.steps.length - 1, step: 1,
                                   value: ts.steps.length - 1, "aria-label": "training step" });
      const shown = el("span", { class: "note", id: id + "-step-value" });
      function apply() {
        const k = Number(slider.value);
        texts[ts.text_index] = { text: chars, w: ws[k], scale: 1 / 255, cropped: ts.cropped_from };
        shown.textContent = "step " + ts.steps[k] + (k === ts.steps.length - 1 ? " (final)" : "") +
          (state.t === ts.text_index ? "" : " · text " + (ts.text_index + 1) + " only");
        slider.disabled = state.t !== ts.text_index;
      }
      slider.addEventListener("input", function () { apply(); if (state.t === ts.text_index) select(state.l, state.h); });
      return { label: el("label", { text: "training step " }), slider: slider, shown: shown, apply: apply };
    }

    textSel.addEventListener("change", function () {
      state.t = Number(textSel.value); state.pinned = false; if (steps) steps.apply(); buildText(); select(state.l, state.h);
    });
    if (steps) steps.apply();
    layerSel.addEventListener("change", function () { select(Number(layerSel.value), state.h); });
    headSel.addEventListener("change", function () { select(state.l, Number(headSel.value)); });
    if (texts.length) { buildText(); select(state.l, state.h); }
    return {
      /* Show a live text in place of the report's: keeps the head, and focuses the last character unless pinned. */
      show: function (entry) {
        texts[0] = entry;
        state.t = 0;
        if (!(state.pinned && state.focus < entry.text.length)) { state.pinned = false; state.focus = entry.text.length - 1; }
        for (const panel of [toPanel, fromPanel]) panel.dir = entry.rtl ? "rtl" : "ltr";
        buildText();
        select(state.l, state.h);
      }
    };
  }

  /* ---------- sections ---------- */

  if ((data.findings && data.findings.length) || (data.findings_lead && data.findings_lead.length)) {
    const s = section("findings", "Findings");
    const text = el("div", { class: "findings-text" });
    for (const p of data.findings_lead || []) text.append(el("p", { class: "lead", text: p }));
    if (data.findings_title && data.findings && data.findings.length) text.append(el("h3", { text: data.findings_title }));
    if (data.findings && data.findings.length) {
      text.append(el(data.findings_numbered ? "ol" : "ul", { class: "findings" },
                     data.findings.map(function (f) { return el("li", { text: f }); })));
    }
    if (data.findings_note) text.append(el("p", { class: "note", text: data.findings_note }));
    const figures = data.findings_figures || [];
    s.append(el("div", { class: figures.length ? "findings-grid" : "" }, [text].concat(
      figures.length ? [el("div", { class: "findings-figures" }, figures.map(figureBlock))] : [])));
  }

  if (data.links && data.links.length) {
    const s = section("links", "Reports");
    s.append(el("ul", {}, data.links.map(function (l) { return el("li", {}, [el("a", { href: l.href, text: l.text })]); })));
  }

  (data.tables || []).forEach(function (t, k) {
    const s = section("table-" + k, t.title);
    if (t.note) s.append(el("p", { class: "note", text: t.note }));
    s.append(sortableTable(t.rows));
  });

  if (data.figures && data.figures.length) {
    const s = section("figures", "Figures");
    for (const f of data.figures) s.append(figureBlock(f));
  }

  (data.views || []).forEach(function (v, k) {
    const s = section("headview-" + k, "Head view" + (v.name ? ": " + v.name : ""));
    headView(s, v, "hv" + k);
  });

  (data.live || []).forEach(function (m, k) {
    const s = section("live-" + k, "Type your own text" + (m.name ? ": " + m.name : ""));
    charlensLive.mount(s, m, "lv" + k, { el: el, headView: headView, VISIBLE: VISIBLE });
  });

  (data.extra_sections || []).forEach(function (x, k) {
    const s = section("extra-" + k, x.title);
    if (x.html) {
      const div = el("div");
      div.innerHTML = x.html; // produced by charlens itself, not by page visitors
      s.append(div);
    }
    for (const f of x.figures || []) s.append(figureBlock(f));
  });

  if (data.provenance && data.provenance.length) {
    const s = section("provenance", "Settings and provenance");
    const details = el("details", { id: "provenance-details" }, [el("summary", {
      text: "The checkpoint, the model, the texts and every setting of this analysis (click to open)" })]);
    for (const o of data.provenance) {
      details.append(el("h3", { text: o.title }));
      details.append(keyValueTable(o.values));
    }
    s.append(details);
  }
})();
