// The sampling chunk loop as one C++ function: wavetyp/core/cstep.py builds it at first use.
//
// For B streams it runs steps t0 .. t1-1 of temperature/greedy sampling over the buffers of a
// GenerationCache (cache.py), with the same folded weights (sigmoid(z) = (1 + tanh(z/2)) / 2,
// the 1/2s folded into the gate input and the res/skip weights) and the same bookkeeping as
// fastloop.run_steps: logits written per step, code = argmax(logits * inv_tau + noise) or the
// prime code, the ring buffer updated in place; top-k, top-p and typical-p filter the tempered
// logits first as decoding.process_logits does. Every product is a small matrix product over the
// B streams (`gemm_acc`), written with GCC vector extensions so that it compiles to AVX2/FMA
// (or SSE) without intrinsics; tanh is a rational approximation (a few float ulps).
#include <torch/extension.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

typedef float v8 __attribute__((vector_size(32)));

static inline v8 load8(const float* p) { v8 v; std::memcpy(&v, p, sizeof(v)); return v; }
static inline void store8(float* p, v8 v) { std::memcpy(p, &v, sizeof(v)); }

// A weight matrix W (K, N) is stored in panels of 16 columns, panel after panel, each (K, 16)
// row-major, so that every tile streams its weights sequentially (the last panel zero-padded
// when N is not a multiple of 16): cstep.pack_weights. Weights are float, or bf16 packed in
// pairs ("bf16" steps): in a panel's row, word j holds column j in its low half and column j + 8
// in its high half, so that one load, a shift and a mask give both 8-column halves as floats.
typedef uint32_t u8v __attribute__((vector_size(32)));
template <typename WT> struct Per { static constexpr int64_t word = 1; };
template <> struct Per<uint32_t> { static constexpr int64_t word = 2; };

static inline int64_t pad16(int64_t n) { return (n + 15) / 16 * 16; }
// the weights of columns [n16, n16 + 16) of row k, n16 a multiple of 16
template <typename WT>
static inline const WT* wat(const WT* W, int64_t K, int64_t k, int64_t n16) {
  return W + (n16 * K + k * 16) / Per<WT>::word;
}

static inline void load16(const float* w, v8& lo, v8& hi) { lo = load8(w); hi = load8(w + 8); }
static inline void load16(const uint32_t* w, v8& lo, v8& hi) {
  u8v u, a, b;
  std::memcpy(&u, w, sizeof(u));
  a = u << 16;
  b = u & 0xFFFF0000u;
  std::memcpy(&lo, &a, sizeof(lo));
  std::memcpy(&hi, &b, sizeof(hi));
}

// out[b, n] += sum_k in[b, k] W[k, n] for BT rows b and the 8*NV columns from n0 (NV even, or
// NV = 1 for float weights' last 8 columns).
template <int BT, int NV, typename WT>
static inline void tile(const float* in, int64_t ldi, int64_t K, const WT* W,
                        float* out, int64_t ldo, int64_t n0) {
  v8 acc[BT][NV];
  for (int b = 0; b < BT; ++b)
    for (int v = 0; v < NV; ++v) acc[b][v] = load8(out + b * ldo + n0 + 8 * v);
  for (int64_t k = 0; k < K; ++k) {
    v8 wv[NV];
    if (NV == 1)   // float weights only: the 8 columns from n0 within their panel
      wv[0] = load8(reinterpret_cast<const float*>(W) + (n0 / 16 * 16) * K + k * 16 + n0 % 16);
    else
      for (int v = 0; v + 1 < NV; v += 2) load16(wat(W, K, k, n0 + 8 * v), wv[v], wv[v + 1]);
    for (int b = 0; b < BT; ++b) {
      const v8 x = v8{} + in[b * ldi + k];
      for (int v = 0; v < NV; ++v) acc[b][v] += x * wv[v];
    }
  }
  for (int b = 0; b < BT; ++b)
    for (int v = 0; v < NV; ++v) store8(out + b * ldo + n0 + 8 * v, acc[b][v]);
}

template <int BT, int NV, typename WT>
static void rows(const float* in, int64_t ldi, int64_t K, const WT* W, int64_t N,
                 float* out, int64_t ldo) {
  int64_t n = 0;
  for (; n + 8 * NV <= N; n += 8 * NV) tile<BT, NV>(in, ldi, K, W, out, ldo, n);
  for (; n + 16 <= N; n += 16) tile<BT, 2>(in, ldi, K, W, out, ldo, n);
  if (Per<WT>::word != 1) return;      // packed widths are multiples of 16 (cstep.py checks)
  const float* Wf = reinterpret_cast<const float*>(W);
  for (; n + 8 <= N; n += 8) tile<BT, 1>(in, ldi, K, Wf, out, ldo, n);
  for (; n < N; ++n)
    for (int b = 0; b < BT; ++b) {
      float s = out[b * ldo + n];
      for (int64_t k = 0; k < K; ++k) s += in[b * ldi + k] * Wf[(n / 16 * 16) * K + k * 16 + n % 16];
      out[b * ldo + n] = s;
    }
}

// out (B, N; row stride ldo) += in (B, K; row stride ldi) @ W (K, N; in panels).
template <typename WT>
static void gemm_acc(const float* in, int64_t ldi, int64_t B, int64_t K, const WT* W, int64_t N,
                     float* out, int64_t ldo) {
  int64_t b = 0;
  for (; b + 4 <= B; b += 4) rows<4, 2>(in + b * ldi, ldi, K, W, N, out + b * ldo, ldo);
  for (; b + 2 <= B; b += 2) rows<2, 4>(in + b * ldi, ldi, K, W, N, out + b * ldo, ldo);
  for (; b < B; ++b) rows<1, 8>(in + b * ldi, ldi, K, W, N, out + b * ldo, ldo);
}

// tanh as Eigen's rational approximation (odd degree 13 over even degree 6, clamped).
template <typename T>
static inline T tanh_r(T x) {
  const float c = 7.90531110763549805f;
  x = x < -c ? T{} - c : x;
  x = x > c ? T{} + c : x;
  const T x2 = x * x;
  T p = x2 * -2.76076847742355e-16f + 2.00018790482477e-13f;
  p = x2 * p + -8.60467152213735e-11f;
  p = x2 * p + 5.12229709037114e-08f;
  p = x2 * p + 1.48572235717979e-05f;
  p = x2 * p + 6.37261928875436e-04f;
  p = x2 * p + 4.89352455891786e-03f;
  p = x * p;
  T q = x2 * 1.19825839466702e-06f + 1.18534705686654e-04f;
  q = x2 * q + 2.26843463243900e-03f;
  q = x2 * q + 4.89352518554385e-03f;
  return p / q;
}

static inline float tanh1(float x) {
  const float c = 7.90531110763549805f;
  return tanh_r<float>(std::min(std::max(x, -c), c));
}

static void tanh_inplace(float* z, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) store8(z + i, tanh_r<v8>(load8(z + i)));
  for (; i < n; ++i) z[i] = tanh1(z[i]);
}

// exp as Cephes' expf (2^n times a degree-6 polynomial on [-ln2/2, ln2/2]; a few float ulps),
// 0 below -87 (where torch's would be a denormal; -inf included) and arguments capped at 88: for
// the statistics of a row, where such terms add nothing.
typedef int32_t i8v __attribute__((vector_size(32)));
static inline float hsum(v8 v) {
  float s = 0.0f;
  for (int j = 0; j < 8; ++j) s += v[j];
  return s;
}

static inline v8 exp8(v8 x) {
  const v8 x0 = x;
  x = x < -87.0f ? v8{} - 87.0f : x;
  x = x > 88.0f ? v8{} + 88.0f : x;
  const v8 y = x * 1.44269504088896341f + 0.5f;
  i8v n = __builtin_convertvector(y, i8v);          // toward zero, then down: floor(y)
  n += (i8v)(__builtin_convertvector(n, v8) > y);    // -1 where the truncation rounded up
  const v8 f = __builtin_convertvector(n, v8);
  const v8 r = x - f * 0.693359375f + f * 2.12194440e-4f;
  v8 p = r * 1.9875691500e-4f + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  v8 scale;
  const i8v bits = (n + 127) << 23;
  std::memcpy(&scale, &bits, sizeof(scale));
  const v8 tiny = v8{} + 0.0f;
  return x0 < -87.0f ? tiny : p * scale;
}

static constexpr float LN2 = 0.693147180559945309f;

// sum_c exp(o[c] - top), top = max_c o[c] (written to *top); e: the terms, or null. V is a
// multiple of 8; -inf entries (excluded codes) add 0.
static float exp_sum(const float* o, int64_t V, float* e, float* top) {
  v8 m = load8(o);
  for (int64_t c = 8; c < V; c += 8) { const v8 v = load8(o + c); m = v > m ? v : m; }
  float t = m[0];
  for (int j = 1; j < 8; ++j) t = std::max(t, m[j]);
  v8 acc = v8{};
  for (int64_t c = 0; c < V; c += 8) {
    const v8 v = exp8(load8(o + c) - t);
    if (e) store8(e + c, v);
    acc += v;
  }
  *top = t;
  return hsum(acc);
}

// -log2 q(x) for the distribution the logits `row` define (softmax; -inf = excluded).
static float chosen_nll(const float* row, int64_t V, int64_t x) {
  float top;
  const float sum = exp_sum(row, V, nullptr, &top);
  return (top + std::log(sum) - row[x]) / LN2;
}

// The untempered distribution's statistics of one row of logits, in bits, as
// typicality.step_stats computes them: NLL of code x, entropy, varentropy (float sums, so they
// agree with torch's to float rounding). e: V floats of scratch. V is a multiple of 8.
static void row_stats(const float* o, int64_t V, int64_t x, float* e, float* nll, float* ent,
                      float* var) {
  float top;
  const float sum = exp_sum(o, V, e, &top), lse = top + std::log(sum), inv = 1.0f / sum;
  v8 h = v8{};
  for (int64_t c = 0; c < V; c += 8) h += load8(e + c) * inv * (load8(o + c) - lse);
  const float H = -hsum(h);                               // nats
  v8 q = v8{};
  for (int64_t c = 0; c < V; c += 8) {
    const v8 d = load8(o + c) - lse + H;                  // -(surprisal - H), nats
    q += load8(e + c) * inv * d * d;
  }
  *nll = (lse - o[x]) / LN2;
  *ent = H / LN2;
  *var = hsum(q) / (LN2 * LN2);
}

// Mel conditioning: n values of this step's gate bias lerped between the frames around t, as
// torch.lerp (frames: F frames, `stride` floats apart).
static void lerp_bias(const float* frames, int64_t F, int64_t stride, int64_t n, int64_t t,
                      int64_t hop, float* out) {
  const int64_t f0 = std::min(t / hop, F - 1), f1 = std::min(f0 + 1, F - 1);
  const float w = (float)std::min(std::max((double)(t - f0 * hop) / (double)hop, 0.0), 1.0);
  const float* a = frames + f0 * stride;
  const float* e = frames + f1 * stride;
  if (std::abs(w) < 0.5f)
    for (int64_t i = 0; i < n; ++i) out[i] = std::fma(w, e[i] - a[i], a[i]);
  else
    for (int64_t i = 0; i < n; ++i) out[i] = std::fma(-(e[i] - a[i]), 1.0f - w, e[i]);
}

// Rounded product, then rounded sum: never contracted into one FMA (the warper loop runs them
// as two torch ops).
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
static void __attribute__((noinline)) scale_row(const float* o, float it, int64_t V, float* out) {
  for (int64_t c = 0; c < V; ++c) out[c] = o[c] * it;
}
static inline float add_noise(float a, float b) { return a + b; }
#pragma GCC pop_options

// One stream's filters (decoding.DecodeBatch: V / 1 / 1 where off) and per-row scratch.
struct Filters {
  int64_t k; float p, typical;
  bool any(int64_t V) const { return k < V || p < 1.0f || typical < 1.0f; }
};
struct Scratch {
  std::vector<float> row, prob, dist, pc;   // filtered logits; probabilities in order; |.|; by code
  std::vector<int64_t> order;
  explicit Scratch(int64_t V) : row(V), prob(V), dist(V), pc(V), order(V) {}
};

// Drop (set to -inf) the codes after the running mass strictly before them reaches p, in the
// order given; the mass is summed in double and rounded, as torch's CPU cumsum does.
static void cut_mass(float* s, const std::vector<int64_t>& order, const float* prob, float p) {
  double cum = 0.0;
  for (size_t j = 0; j < order.size(); ++j) {
    const float pj = prob[j];
    cum += pj;
    if ((float)cum - pj >= p) s[order[j]] = -std::numeric_limits<float>::infinity();
  }
}

// Top-k, top-p, then typical-p over one row of tempered logits (in place: dropped codes become
// -inf), in the order and arithmetic of decoding.apply_top_k / apply_top_p / apply_typical_p:
// the k-th largest value is the cut (ties stay); the nucleus keeps the most likely codes until
// the mass before them reaches p; typical-p does the same in order of |surprisal - entropy|.
// Float softmax and sums, so a boundary can differ from torch's where the mass ties to rounding.
static void truncate_row(float* s, int64_t V, const Filters& f, Scratch& w) {
  const float inf = std::numeric_limits<float>::infinity();
  if (f.k < V) {
    std::vector<float> tmp(s, s + V);
    std::nth_element(tmp.begin(), tmp.begin() + (f.k - 1), tmp.end(), std::greater<float>());
    const float kth = tmp[f.k - 1];
    for (int64_t c = 0; c < V; ++c) if (s[c] < kth) s[c] = -inf;
  }
  if (f.p < 1.0f) {
    for (int64_t c = 0; c < V; ++c) w.order[c] = c;
    std::sort(w.order.begin(), w.order.end(), [s](int64_t a, int64_t b) { return s[a] > s[b]; });
    const float top = s[w.order[0]];
    float sum = 0.0f;
    for (int64_t j = 0; j < V; ++j) { w.prob[j] = std::exp(s[w.order[j]] - top); sum += w.prob[j]; }
    const float inv = 1.0f / sum;
    for (int64_t j = 0; j < V; ++j) w.prob[j] *= inv;
    cut_mass(s, w.order, w.prob.data(), f.p);
  }
  if (f.typical < 1.0f) {
    float top = -inf, sum = 0.0f, ent = 0.0f;
    for (int64_t c = 0; c < V; ++c) top = std::max(top, s[c]);
    for (int64_t c = 0; c < V; ++c) sum += std::exp(s[c] - top);
    const float lse = std::log(sum);
    for (int64_t c = 0; c < V; ++c) {
      const float lp = s[c] - top - lse, pc = std::exp(lp);
      w.dist[c] = lp;
      w.pc[c] = pc;
      if (pc > 0.0f) ent += pc * lp;
    }
    ent = -ent;
    for (int64_t c = 0; c < V; ++c) { w.dist[c] = std::abs(-w.dist[c] - ent); w.order[c] = c; }
    const float* d = w.dist.data();
    std::sort(w.order.begin(), w.order.end(), [d](int64_t a, int64_t b) { return d[a] < d[b]; });
    for (int64_t j = 0; j < V; ++j) w.prob[j] = w.pc[w.order[j]];
    cut_mass(s, w.order, w.prob.data(), f.typical);
  }
}

// argmax over c of (noise[c] + logits[c] * inv_tau); with filters, the tempered logits are
// rounded first and filtered (decoding.process_logits, then + noise, as the warper loop does).
static int64_t choose(const float* o, const float* g, float it, int64_t V, const Filters& f,
                      Scratch& w) {
  int64_t best = 0;
  if (!f.any(V)) {
    float top = g[0] + o[0] * it;
    for (int64_t c = 1; c < V; ++c) {
      const float sc = g[c] + o[c] * it;
      if (sc > top) { top = sc; best = c; }
    }
    return best;
  }
  float* row = w.row.data();
  scale_row(o, it, V, row);
  truncate_row(row, V, f, w);
  float top = add_noise(row[0], g[0]);
  for (int64_t c = 1; c < V; ++c) {
    const float sc = add_noise(row[c], g[c]);
    if (sc > top) { top = sc; best = c; }
  }
  return best;
}

static void check(const torch::Tensor& x, torch::ScalarType dt, const char* name) {
  TORCH_CHECK(x.device().is_cpu() && x.scalar_type() == dt && x.is_contiguous(),
              name, ": expected a contiguous CPU tensor of ", dt);
}

// Everything one chunk reads and writes, unpacked from the tensors by run_chunk.
struct Chunk {
  int64_t L, P, B, R, G, G2, k, RS, S, H, V, t0, t1, hop, F, n_prime;
  float *buf, *logits, *stats;   // stats: (4, t1-t0, B) NLL / entropy / varentropy / sampled NLL
  const float* scale;            // (B) noise scale: 1 on sampled streams, 0 on greedy ones
  torch::Tensor noise_t, scale_t;  // with gumbel: the uniform draws to turn into noise, in place
  bool gumbel;
  const float *bias, *frames, *embed, *brs, *bh1, *bh2, *noise, *inv_tau, *top_p, *typical_p;
  const int64_t *dil, *prime, *top_k;
  int64_t *x, *codes;
};

// Gumbel noise for streams b0 .. b0+Bn-1 from the chunk's uniform draws u, in place:
// -log(-log(clamp(u))) * scale, by the same ATen operations as generate.gumbel_noise (so the same
// bits), a block of steps at a time: blocks under ATen's parallel grain run on this thread.
static void gumbel_noise(const Chunk& c, int64_t b0, int64_t Bn) {
  c10::InferenceMode guard;                  // the draws are inference tensors
  const int64_t n = c.t1 - c.t0, rows = std::max<int64_t>(1, 16384 / (Bn * c.V));
  const auto scale = c.scale_t.narrow(0, b0, Bn).view({1, Bn, 1});
  for (int64_t i = 0; i < n; i += rows) {
    auto u = c.noise_t.narrow(0, i, std::min(rows, n - i)).narrow(1, b0, Bn);
    u.clamp_(1e-10, 1.0 - 1e-7).log_().neg_().log_().neg_().mul_(scale);
  }
}

// Streams b0 .. b0+Bn-1 of the chunk (independent of the others: a thread may run each part).
template <typename WT>
static void run_loop(const Chunk& c, int64_t b0, int64_t Bn, const WT* wz, const WT* wrs,
                     const WT* wh1, const WT* wh2) {
  const int64_t L = c.L, P = c.P, B = c.B, R = c.R, G = c.G, G2 = c.G2, k = c.k, RS = c.RS;
  const int64_t S = c.S, H = c.H, V = c.V, nb = L * B * G2;
  const int64_t wz_tap = R * pad16(G2) / Per<WT>::word, wrs_layer = G * pad16(RS) / Per<WT>::word;
  std::vector<float> hs(Bn * RS), z(Bn * G2), a(Bn * G), h1(Bn * H), e(V);
  Scratch scratch(V);
  if (c.gumbel) gumbel_noise(c, b0, Bn);
  for (int64_t t = c.t0; t < c.t1; ++t) {
    const int64_t i = t - c.t0, p = t & (P - 1);
    for (int64_t b = 0; b < Bn; ++b) {   // layer 0's input: the embedded code; no skip yet
      std::memcpy(&hs[b * RS], c.embed + c.x[b0 + b] * R, R * sizeof(float));
      std::fill(hs.begin() + b * RS + R, hs.begin() + (b + 1) * RS, 0.0f);
    }
    for (int64_t l = 0; l < L; ++l) {
      float* slot = c.buf + (l * P + p) * B * R + b0 * R;   // this layer's input at time t
      for (int64_t b = 0; b < Bn; ++b) std::memcpy(slot + b * R, &hs[b * RS], R * sizeof(float));
      if (c.F)   // the gate bias of these streams: mel frames lerped at t, or the constant one
        lerp_bias(c.frames + (l * B + b0) * G2, c.F, nb, Bn * G2, t, c.hop, z.data());
      else
        std::memcpy(z.data(), c.bias + (l * B + b0) * G2, Bn * G2 * sizeof(float));
      const WT* w = wz + l * k * wz_tap;  // (R, 2G) blocks: lag 1 .. k-1, then the current tap
      for (int64_t m = 1; m < k; ++m) {   // past taps x_{t - m d}, straight from the ring buffer
        const int64_t q = (t - m * c.dil[l]) & (P - 1);
        gemm_acc(c.buf + (l * P + q) * B * R + b0 * R, R, Bn, R, w + (m - 1) * wz_tap, G2, z.data(), G2);
      }
      gemm_acc(hs.data(), RS, Bn, R, w + (k - 1) * wz_tap, G2, z.data(), G2);
      tanh_inplace(z.data(), Bn * G2);
      for (int64_t b = 0; b < Bn; ++b)      // tanh * (1 + tanh): the sigmoid's 1/2 is in wrs
        for (int64_t g = 0; g < G; ++g) {
          const float zt = z[b * G2 + g];
          a[b * G + g] = zt + zt * z[b * G2 + G + g];
        }
      const float* br = c.brs + l * RS;    // [h | skip] += [res | skip] bias + a W_rs
      for (int64_t b = 0; b < Bn; ++b)
        for (int64_t j = 0; j < RS; ++j) hs[b * RS + j] += br[j];
      gemm_acc(a.data(), G, Bn, G, wrs + l * wrs_layer, RS, hs.data(), RS);
    }
    for (int64_t b = 0; b < Bn; ++b) {     // head: relu, linear, relu, linear
      float* s = &hs[b * RS + R];
      for (int64_t j = 0; j < S; ++j) s[j] = std::max(s[j], 0.0f);
      std::memcpy(&h1[b * H], c.bh1, H * sizeof(float));
    }
    gemm_acc(hs.data() + R, RS, Bn, S, wh1, H, h1.data(), H);
    for (auto& v : h1) v = std::max(v, 0.0f);
    float* out = c.logits + (i * B + b0) * V;
    for (int64_t b = 0; b < Bn; ++b) std::memcpy(out + b * V, c.bh2, V * sizeof(float));
    gemm_acc(h1.data(), H, Bn, H, wh2, V, out, V);
    const int64_t n = c.t1 - c.t0;
    for (int64_t b = 0; b < Bn; ++b) {     // the code: primed, or argmax(logits / tau + noise)
      const int64_t s = b0 + b;
      const Filters filters{c.top_k[s], c.top_p[s], c.typical_p[s]};
      if (t < c.n_prime)
        c.x[s] = c.prime[t * B + s];
      else
        c.x[s] = choose(out + b * V, c.noise + (i * B + s) * V, c.inv_tau[s], V, filters, scratch);
      c.codes[i * B + s] = c.x[s];
      if (!c.stats) continue;              // the untempered distribution's statistics, and
      row_stats(out + b * V, V, c.x[s], e.data(), c.stats + i * B + s, c.stats + (n + i) * B + s,
                c.stats + (2 * n + i) * B + s);
      float* snll = c.stats + (3 * n + i) * B + s;   // the NLL under the one sampled from
      if (t < c.n_prime)
        *snll = std::numeric_limits<float>::quiet_NaN();   // teacher-forced: not sampled
      else if (c.scale[s] == 0.0f)         // greedy: a point mass on the argmax, which was chosen
        *snll = 0.0f;
      else {                               // the tempered row (choose() left a filtered one)
        if (!filters.any(V)) scale_row(out + b * V, c.inv_tau[s], V, scratch.row.data());
        *snll = chosen_nll(scratch.row.data(), V, c.x[s]);
      }
    }
  }
}

// Steps t0 .. t1-1 (see the header). Shapes: buf (L, P, B, R); wz (L, k, ...) the (R, 2G) blocks
// of lag 1 .. k-1 then the current tap; bias (L, B, 2G); frames (F, L, B, 2G) or empty;
// embed (V, R); wrs (L, ...) the (G, R+S) blocks; brs (L, R+S); wh1 (S, H); bh1 (H); wh2 (H, V);
// bh2 (V); every weight matrix in panels (see wat); dil (L) int64;
// x (B) int64, the code fed first, overwritten by the last one; logits (>= t1-t0, B, V);
// codes (t1-t0, B) int64; noise (t1-t0, B, V); inv_tau (B); prime (n_prime, B) int64;
// top_k (B) int64, V where off; top_p, typical_p (B) float, 1 where off. The four weight
// matrices are float32, or all int32 words of packed bf16 pairs. stats: (4, t1-t0, B) written
// with each step's NLL, entropy and varentropy in bits under the untempered distribution
// (row_stats), and the NLL under the distribution sampled from (NaN on primed steps), or empty.
// scale (B): 1 on sampled streams, 0 on greedy ones (decoding.DecodeBatch.noise). gumbel: noise
// holds uniform draws, turned into Gumbel noise times scale in place by each thread for its
// streams (gumbel_noise); otherwise noise is used as given.
void run_chunk(torch::Tensor buf, torch::Tensor wz, torch::Tensor bias, torch::Tensor frames,
               torch::Tensor embed, torch::Tensor wrs, torch::Tensor brs, torch::Tensor wh1,
               torch::Tensor bh1, torch::Tensor wh2, torch::Tensor bh2, torch::Tensor dil,
               int64_t t0, int64_t t1, int64_t hop, torch::Tensor x, torch::Tensor logits,
               torch::Tensor codes, torch::Tensor noise, torch::Tensor inv_tau, torch::Tensor prime,
               int64_t n_prime, torch::Tensor top_k, torch::Tensor top_p, torch::Tensor typical_p,
               int64_t parts, torch::Tensor stats, torch::Tensor scale, bool gumbel) {
  const auto F32 = torch::kFloat32, I64 = torch::kInt64;
  const bool packed = wz.scalar_type() == torch::kInt32;
  const auto WT = packed ? torch::kInt32 : F32;
  check(buf, F32, "buf"); check(wz, WT, "wz"); check(bias, F32, "bias"); check(frames, F32, "frames");
  check(embed, F32, "embed"); check(wrs, WT, "wrs"); check(brs, F32, "brs"); check(wh1, WT, "wh1");
  check(bh1, F32, "bh1"); check(wh2, WT, "wh2"); check(bh2, F32, "bh2"); check(dil, I64, "dil");
  check(x, I64, "x"); check(logits, F32, "logits"); check(codes, I64, "codes");
  check(noise, F32, "noise"); check(inv_tau, F32, "inv_tau"); check(prime, I64, "prime");
  check(top_k, I64, "top_k"); check(top_p, F32, "top_p"); check(typical_p, F32, "typical_p");
  check(stats, F32, "stats"); check(scale, F32, "scale");
  Chunk c;
  c.L = buf.size(0); c.P = buf.size(1); c.B = buf.size(2); c.R = buf.size(3);
  c.G2 = bias.size(2); c.G = c.G2 / 2; c.RS = brs.size(1); c.S = c.RS - c.R;
  c.H = bh1.numel(); c.V = bh2.numel(); c.k = wz.size(1);
  c.t0 = t0; c.t1 = t1; c.hop = hop; c.n_prime = n_prime;
  c.F = frames.numel() > 0 ? frames.size(0) : 0;
  const int64_t n = t1 - t0, B = c.B, V = c.V, L = c.L, pk = packed ? 2 : 1;
  TORCH_CHECK(noise.dim() == 3 && (c.P & (c.P - 1)) == 0 && embed.size(1) == c.R && x.numel() == B
              && logits.size(0) >= n && codes.numel() == n * B && noise.numel() == n * B * V
              && inv_tau.numel() == B && dil.numel() == L && prime.numel() >= n_prime * B
              && top_k.numel() == B && top_p.numel() == B && typical_p.numel() == B
              && (stats.numel() == 0 || stats.numel() == 4 * n * B) && scale.numel() == B
              && V % 8 == 0
              && wz.numel() * pk == L * c.k * c.R * pad16(c.G2) && wrs.numel() * pk == L * c.G * pad16(c.RS)
              && wh1.numel() * pk == c.S * pad16(c.H) && wh2.numel() * pk == c.H * pad16(V)
              && (!packed || (c.G2 % 16 == 0 && c.RS % 16 == 0 && c.H % 16 == 0 && V % 16 == 0)),
              "run_chunk: inconsistent shapes");
  c.buf = buf.data_ptr<float>(); c.logits = logits.data_ptr<float>();
  c.bias = bias.data_ptr<float>(); c.frames = frames.data_ptr<float>(); c.embed = embed.data_ptr<float>();
  c.brs = brs.data_ptr<float>(); c.bh1 = bh1.data_ptr<float>(); c.bh2 = bh2.data_ptr<float>();
  c.noise = noise.data_ptr<float>(); c.inv_tau = inv_tau.data_ptr<float>(); c.top_p = top_p.data_ptr<float>();
  c.typical_p = typical_p.data_ptr<float>();
  c.dil = dil.data_ptr<int64_t>(); c.prime = prime.data_ptr<int64_t>(); c.top_k = top_k.data_ptr<int64_t>();
  c.x = x.data_ptr<int64_t>(); c.codes = codes.data_ptr<int64_t>();
  c.stats = stats.numel() ? stats.data_ptr<float>() : nullptr;
  c.noise_t = noise; c.scale_t = scale; c.scale = scale.data_ptr<float>(); c.gumbel = gumbel;
  // The streams are independent within a chunk: `parts` threads each run a contiguous group of
  // them through every step (the same arithmetic per stream as in one group).
  auto part = [&](int64_t j) {
    const int64_t b0 = B * j / parts, b1 = B * (j + 1) / parts;
    if (b1 <= b0) return;
    if (packed) {
      auto u = [](torch::Tensor& w) { return reinterpret_cast<const uint32_t*>(w.data_ptr<int32_t>()); };
      run_loop<uint32_t>(c, b0, b1 - b0, u(wz), u(wrs), u(wh1), u(wh2));
    } else {
      run_loop<float>(c, b0, b1 - b0, wz.data_ptr<float>(), wrs.data_ptr<float>(),
                      wh1.data_ptr<float>(), wh2.data_ptr<float>());
    }
  };
  parts = std::max<int64_t>(1, std::min(parts, B));
  std::vector<std::thread> pool;
  for (int64_t j = 1; j < parts; ++j) pool.emplace_back(part, j);
  part(0);
  for (auto& th : pool) th.join();
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("run_chunk", &run_chunk, "fused temperature/greedy/top-k/top-p/typical-p sampling steps (wavetyp/core/cstep.cpp)");
}
