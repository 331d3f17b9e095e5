/* charlens live model: the checkpoint's forward pass in plain JavaScript (model/transformer.py, eval mode):
   token + position embeddings, pre-LayerNorm blocks (causal self-attention, exact-erf GELU MLP), final
   LayerNorm, output head tied to the token embedding. Weights arrive as float16 and are computed in
   float32 arrays with double accumulators. No libraries, no network. */
const charlensForward = (function () {
  "use strict";
  const LN_EPS = 1e-5; // torch.nn.LayerNorm's default

  function halfToFloat(h) {
    const sign = h & 0x8000 ? -1 : 1, exp = (h >> 10) & 0x1f, frac = h & 0x3ff;
    if (exp === 0) return sign * frac * Math.pow(2, -24); // subnormal
    if (exp === 31) return frac ? NaN : sign * Infinity;
    return sign * (1 + frac / 1024) * Math.pow(2, exp - 15);
  }

  /* Each tensor of the entry's float16 blob as a Float32Array, by state_dict name. */
  function decodeWeights(entry) {
    const raw = atob(entry.weights), view = new DataView(new ArrayBuffer(raw.length));
    for (let i = 0; i < raw.length; i++) view.setUint8(i, raw.charCodeAt(i));
    const params = {};
    for (const t of entry.tensors) {
      const n = t.shape.reduce(function (a, b) { return a * b; }, 1), out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = halfToFloat(view.getUint16(2 * (t.offset + i), true));
      params[t.name] = out;
    }
    return params;
  }

  /* The model of a live entry: config plus named weights (biases are null when the model has none). */
  function load(entry) {
    const p = decodeWeights(entry), get = function (name) { return p[name] || null; };
    const layers = [];
    for (let l = 0; l < entry.config.n_layer; l++) {
      const b = "blocks." + l + ".";
      layers.push({
        ln1: [get(b + "ln_1.weight"), get(b + "ln_1.bias")], ln2: [get(b + "ln_2.weight"), get(b + "ln_2.bias")],
        attn: [get(b + "attn.c_attn.weight"), get(b + "attn.c_attn.bias")],
        proj: [get(b + "attn.c_proj.weight"), get(b + "attn.c_proj.bias")],
        fc: [get(b + "mlp.c_fc.weight"), get(b + "mlp.c_fc.bias")],
        fcProj: [get(b + "mlp.c_proj.weight"), get(b + "mlp.c_proj.bias")]
      });
    }
    return { config: entry.config, wte: get("wte.weight"), wpe: get("wpe.weight"),
             lnF: [get("ln_f.weight"), get("ln_f.bias")], layers: layers };
  }

  /* out (T x nOut) = x (T x nIn) W^T + b, W stored (nOut x nIn) as torch keeps nn.Linear weights. Four rows
     of x against two rows of W at a time: each loaded weight is used four times (about 3x faster in V8). */
  function linear(x, T, nIn, wb, nOut, out) {
    const W = wb[0], b = wb[1];
    let t = 0;
    for (; t + 4 <= T; t += 4) fourRows(x, t, nIn, W, nOut, out);
    for (; t < T; t++) {
      for (let o = 0; o < nOut; o++) out[t * nOut + o] = dot(x, t * nIn, W, o * nIn, nIn);
    }
    if (b) for (let k = 0; k < T * nOut; k++) out[k] += b[k % nOut];
    return out;
  }

  function dot(x, xo, W, wo, n) { // four sums, so that the adds need not wait for each other
    let s0 = 0, s1 = 0, s2 = 0, s3 = 0, i = 0;
    for (; i + 4 <= n; i += 4) {
      s0 += x[xo + i] * W[wo + i]; s1 += x[xo + i + 1] * W[wo + i + 1];
      s2 += x[xo + i + 2] * W[wo + i + 2]; s3 += x[xo + i + 3] * W[wo + i + 3];
    }
    for (; i < n; i++) s0 += x[xo + i] * W[wo + i];
    return s0 + s1 + s2 + s3;
  }

  function fourRows(x, t, nIn, W, nOut, out) {
    const a = t * nIn, b = a + nIn, c = b + nIn, d = c + nIn, A = t * nOut, B = A + nOut, C = B + nOut, D = C + nOut;
    let o = 0;
    for (; o + 2 <= nOut; o += 2) {
      const w0 = o * nIn, w1 = w0 + nIn;
      let a0 = 0, b0 = 0, c0 = 0, d0 = 0, a1 = 0, b1 = 0, c1 = 0, d1 = 0;
      for (let i = 0; i < nIn; i++) {
        const u = W[w0 + i], v = W[w1 + i], xa = x[a + i], xb = x[b + i], xc = x[c + i], xd = x[d + i];
        a0 += xa * u; b0 += xb * u; c0 += xc * u; d0 += xd * u;
        a1 += xa * v; b1 += xb * v; c1 += xc * v; d1 += xd * v;
      }
      out[A + o] = a0; out[B + o] = b0; out[C + o] = c0; out[D + o] = d0;
      out[A + o + 1] = a1; out[B + o + 1] = b1; out[C + o + 1] = c1; out[D + o + 1] = d1;
    }
    for (; o < nOut; o++) {
      for (const [xo, yo] of [[a, A], [b, B], [c, C], [d, D]]) out[yo + o] = dot(x, xo, W, o * nIn, nIn);
    }
  }

  function layerNorm(x, T, C, wb, out) {
    const w = wb[0], b = wb[1];
    for (let t = 0; t < T; t++) {
      const o = t * C;
      let mean = 0, v = 0;
      for (let c = 0; c < C; c++) mean += x[o + c];
      mean /= C;
      for (let c = 0; c < C; c++) { const d = x[o + c] - mean; v += d * d; }
      const inv = 1 / Math.sqrt(v / C + LN_EPS);
      for (let c = 0; c < C; c++) out[o + c] = (x[o + c] - mean) * inv * w[c] + (b ? b[c] : 0);
    }
    return out;
  }

  /* erfc(x) for x >= 0, fractional error below 1.2e-7 (Numerical Recipes' Chebyshev-fitted erfcc). */
  function erfc(x) {
    const t = 1 / (1 + 0.5 * x);
    return t * Math.exp(-x * x - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
      t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 +
      t * 0.17087277)))))))));
  }

  /* torch.nn.GELU(): x * Phi(x) = x/2 * (1 + erf(x / sqrt 2)), through erfc so small tails stay exact. */
  function gelu(x) {
    const e = erfc(Math.abs(x) * Math.SQRT1_2);
    return x >= 0 ? x * (1 - 0.5 * e) : 0.5 * x * e;
  }

  /* Causal attention of one layer: fills att (H x T x T, zero above the diagonal) and z (T x C, the heads'
     outputs side by side, zero for the heads in `off`). Each head's values are first laid out one
     dimension per row (vT, hs x T), so every inner loop is a dot product over contiguous memory. */
  function attention(qkv, T, C, H, att, z, off) {
    const hs = C / H, scale = 1 / Math.sqrt(hs), vT = new Float32Array(hs * T);
    for (let h = 0; h < H; h++) {
      for (let j = 0; j < T; j++) {
        for (let d = 0; d < hs; d++) vT[d * T + j] = qkv[j * 3 * C + 2 * C + h * hs + d];
      }
      for (let i = 0; i < T; i++) {
        const qo = i * 3 * C + h * hs, ao = (h * T + i) * T, zo = i * C + h * hs;
        let max = -Infinity, sum = 0;
        for (let j = 0; j <= i; j++) {
          const s = dot(qkv, qo, qkv, j * 3 * C + C + h * hs, hs) * scale;
          att[ao + j] = s;
          if (s > max) max = s;
        }
        for (let j = 0; j <= i; j++) { const e = Math.exp(att[ao + j] - max); att[ao + j] = e; sum += e; }
        for (let j = 0; j <= i; j++) att[ao + j] /= sum;
        for (let d = 0; d < hs; d++) z[zo + d] = off[h] ? 0 : dot(att, ao, vT, d * T, i + 1);
      }
    }
  }

  /* Run token ids (length T <= block size). `ablated(l, h)` says which heads' outputs are zeroed (as
     analysis' zero ablation through hook_z does). Returns every layer's attention (L x H x T x T) and the
     logits after the last character (V). The page shows no other logits, so the last layer's output
     projection and MLP run for the last position only (a sixth of the work). */
  function forward(model, ids, ablated) {
    const cfg = model.config, T = ids.length, C = cfg.n_embd, H = cfg.n_head, L = cfg.n_layer;
    const x = new Float32Array(T * C), h = new Float32Array(T * C), qkv = new Float32Array(T * 3 * C);
    const z = new Float32Array(T * C), y = new Float32Array(T * C), u = new Float32Array(T * 4 * C);
    const attn = new Float32Array(L * H * T * T);
    for (let t = 0; t < T; t++) {
      for (let c = 0; c < C; c++) x[t * C + c] = model.wte[ids[t] * C + c] + model.wpe[t * C + c];
    }
    model.layers.forEach(function (layer, l) {
      const off = [];
      for (let k = 0; k < H; k++) off.push(Boolean(ablated && ablated(l, k)));
      linear(layerNorm(x, T, C, layer.ln1, h), T, C, layer.attn, 3 * C, qkv);
      attention(qkv, T, C, H, attn.subarray(l * H * T * T, (l + 1) * H * T * T), z, off);
      const first = l === L - 1 ? T - 1 : 0, n = T - first, xs = x.subarray(first * C); // the rows still needed
      linear(z.subarray(first * C), n, C, layer.proj, C, y);
      for (let k = 0; k < n * C; k++) xs[k] += y[k];
      linear(layerNorm(xs, n, C, layer.ln2, h), n, C, layer.fc, 4 * C, u);
      for (let k = 0; k < n * 4 * C; k++) u[k] = gelu(u[k]);
      linear(u, n, 4 * C, layer.fcProj, C, y);
      for (let k = 0; k < n * C; k++) xs[k] += y[k];
    });
    const last = layerNorm(x.subarray((T - 1) * C), 1, C, model.lnF, h);
    return { attention: attn, logits: linear(last, 1, C, [model.wte, null], cfg.vocab_size, new Float32Array(cfg.vocab_size)) };
  }

  return { load: load, forward: forward, gelu: gelu };
})();
