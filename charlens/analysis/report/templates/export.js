/* charlens export: the head view and one head's attention matrix as SVG or PNG, for download.
   A picture is a list of shapes (cells and labels); toSVG and toPNG draw the same list, so the
   two formats cannot disagree. Plain JavaScript, no libraries, no network. */
const charlensExport = (function () {
  "use strict";
  const FONT = "DejaVu Sans Mono, DejaVu Sans, monospace";
  const INK = "#1d2430";

  function rect(x, y, w, h, fill) { return { kind: "cell", x: x, y: y, w: w, h: h, fill: fill }; }
  function label(x, y, text, size, anchor) { return { kind: "label", x: x, y: y, text: text, size: size, anchor: anchor || "middle" }; }

  /* One head's matrix: a cell for each visible (query row i, key column j <= i), characters on both axes.
     `weight(i, j)` in [0, 1], `color(w)` a CSS colour. */
  function matrixPicture(chars, weight, color, title) {
    const T = chars.length, cell = Math.max(6, Math.min(18, Math.floor(720 / T)));
    const size = Math.min(cell - 1, 12), x0 = 22, y0 = 40;
    const shapes = [label(x0, 14, title, 12, "start")];
    for (let i = 0; i < T; i++) {
      shapes.push(label(x0 - 4, y0 + i * cell + cell / 2 + size / 3, chars[i], size, "end"));
      shapes.push(label(x0 + i * cell + cell / 2, y0 - 6, chars[i], size));
      for (let j = 0; j <= i; j++) shapes.push(rect(x0 + j * cell, y0 + i * cell, cell, cell, color(weight(i, j))));
    }
    return { width: x0 + T * cell + 6, height: y0 + T * cell + 6, shapes: shapes };
  }

  /* The head view for one focused character: the text twice, shaded by where the character attends
     (`to`, blue) and by what attends to it (`from`, orange); right to left when `rtl`. */
  function headViewPicture(chars, to, from, rtl, title) {
    const T = chars.length, cell = 16, x0 = 8, shapes = [label(x0, 14, title, 12, "start")];
    const rows = [[to, [37, 99, 235], 30], [from, [234, 88, 12], 56]];
    for (const [weights, rgb, y] of rows) {
      for (let k = 0; k < T; k++) {
        const x = x0 + (rtl ? T - 1 - k : k) * cell, w = Math.max(0, Math.min(1, weights[k]));
        const mix = rgb.map(function (c) { return Math.round(255 - (255 - c) * Math.pow(w, 0.6)); });
        shapes.push(rect(x, y, cell, 22, "rgb(" + mix.join(",") + ")"));
        shapes.push(label(x + cell / 2, y + 16, chars[k], 13));
      }
    }
    return { width: 2 * x0 + T * cell, height: 86, shapes: shapes };
  }

  function escape(s) {
    return String(s).replace(/[&<>"]/g, function (c) { return { "&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;" }[c]; });
  }

  function toSVG(pic) {
    const out = ['<svg xmlns="http://www.w3.org/2000/svg" width="' + pic.width + '" height="' + pic.height +
      '" viewBox="0 0 ' + pic.width + " " + pic.height + '" font-family="' + FONT + '">',
      '<rect class="background" width="100%" height="100%" fill="white"/>'];
    for (const s of pic.shapes) {
      if (s.kind === "cell") {
        out.push('<rect class="cell" x="' + s.x + '" y="' + s.y + '" width="' + s.w + '" height="' + s.h + '" fill="' + s.fill + '"/>');
      } else {
        out.push('<text x="' + s.x + '" y="' + s.y + '" font-size="' + s.size + '" text-anchor="' + s.anchor +
          '" fill="' + INK + '">' + escape(s.text) + "</text>");
      }
    }
    out.push("</svg>");
    return out.join("\n");
  }

  /* A PNG data URL of the picture, drawn at twice its size for sharp print. */
  function toPNG(pic) {
    const scale = 2, canvas = document.createElement("canvas");
    canvas.width = pic.width * scale; canvas.height = pic.height * scale;
    const ctx = canvas.getContext("2d");
    ctx.scale(scale, scale);
    ctx.fillStyle = "white";
    ctx.fillRect(0, 0, pic.width, pic.height);
    for (const s of pic.shapes) {
      if (s.kind === "cell") {
        ctx.fillStyle = s.fill;
        ctx.fillRect(s.x, s.y, s.w, s.h);
      } else {
        ctx.fillStyle = INK;
        ctx.font = s.size + "px " + FONT;
        ctx.textAlign = { start: "left", middle: "center", end: "right" }[s.anchor];
        ctx.fillText(s.text, s.x, s.y);
      }
    }
    return canvas.toDataURL("image/png");
  }

  function svgURL(pic) { return "data:image/svg+xml;charset=utf-8," + encodeURIComponent(toSVG(pic)); }

  /* A download link that draws its picture only when clicked: make() -> picture, name -> file stem. */
  function downloadLink(text, id, format, make, name) {
    const a = document.createElement("a");
    a.textContent = text;
    a.id = id;
    a.className = "export";
    a.href = "#";
    a.addEventListener("click", function () {
      const pic = make();
      a.href = format === "svg" ? svgURL(pic) : toPNG(pic);
      a.download = name() + "." + format;
    });
    return a;
  }

  return { matrixPicture: matrixPicture, headViewPicture: headViewPicture, toSVG: toSVG, toPNG: toPNG,
           downloadLink: downloadLink };
})();
