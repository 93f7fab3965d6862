#version 450
// CBAM pieces of the perceptibility attention (faceri/ri_heads.h) that the generic
// training ops do not cover, one invocation per output and fixed-order loops. A chunk
// holds images [row0, row0 + nb) of the batch: F, t1, t2 and out are the chunk's
// [nb, hw, c] tensors; the small per-image tensors live in the whole-batch buffer hb
// at element offsets (MLP rows 2b: the average-pool path, 2b + 1: the max-pool path).
// Maxima route their gradient to the first maximum, as the reference and train_pool.
#extension GL_GOOGLE_include_directive : require
layout(local_size_x_id = 0) in;
#include "train_common.glsl"
#include "train_ri_common.glsl"
layout(set = 0, binding = 0) readonly buffer F { float f[]; };
layout(set = 0, binding = 1) buffer HB { float hb[]; };
layout(set = 0, binding = 2) buffer T1 { float t1[]; };  // F2 (forward), dF2 (backward)
layout(set = 0, binding = 3) buffer T2 { float t2[]; };  // dF1
layout(set = 0, binding = 4) buffer Out { float o[]; };  // dF, added to
layout(set = 0, binding = 5) readonly buffer Prm { float prm[]; };
layout(push_constant) uniform Push {
  uint mode, nb, row0, hw, c, h, w, k;
  uint o_x2, o_z, o_mc, o_p, o_s, o_ms, o_dms, o_dp, o_dx2, o_dz;
  uint o_w7, o_g, o_b, o_rm, o_rv;
  float eps;
} p;

#define M_SPOOL 0u     // (b, c): x2 rows = mean, max over space of F
#define M_GATE 1u      // (b, c): mc = sigmoid(z[2b] + z[2b + 1])
#define M_CPOOL 2u     // (b, pixel): p = [max, mean] over channels of F * mc
#define M_CONV 3u      // (b, pixel): s = conv k x k (2 -> 1, pad k / 2, no bias) of p
#define M_BN_EVAL 4u   // (b, pixel): ms = sigmoid(BN(s) with the running statistics)
#define M_APPLY 5u     // (b, pixel, c): t1 = F2 = F * mc * ms
#define M_DMS 6u       // (b, pixel): dms = sum_c dF2 * F * mc
#define M_DF1 7u       // (b, pixel): t2 = dF1 = dF2 * ms + channel pools' gradient from dp
#define M_GATE_BWD 8u  // (b, c): dz[2b] = dz[2b + 1] = (sum_px dF1 * F) mc (1 - mc)
#define M_DF_ACC 9u    // (b, pixel, c): out += dF1 * mc + spatial pools' gradient from dx2

uint fi(uint b, uint px, uint ch) { return (b * p.hw + px) * p.c + ch; }
float mc(uint b, uint ch) { return hb[p.o_mc + (p.row0 + b) * p.c + ch]; }

void main()
{
  uint i = flat_index();
  if (p.mode == M_SPOOL || p.mode == M_GATE || p.mode == M_GATE_BWD) {
    if (i >= p.nb * p.c)
      return;
    uint b = i / p.c, ch = i % p.c, rb = p.row0 + b;
    if (p.mode == M_SPOOL) {
      float s = 0.0, m = f[fi(b, 0u, ch)];
      for (uint px = 0u; px < p.hw; px++) {
        float v = f[fi(b, px, ch)];
        s += v;
        m = max(m, v);
      }
      hb[p.o_x2 + 2u * rb * p.c + ch] = s / float(p.hw);
      hb[p.o_x2 + (2u * rb + 1u) * p.c + ch] = m;
    } else if (p.mode == M_GATE) {
      hb[p.o_mc + rb * p.c + ch] = ri_sigmoid(hb[p.o_z + 2u * rb * p.c + ch] + hb[p.o_z + (2u * rb + 1u) * p.c + ch]);
    } else {
      float s = 0.0;
      for (uint px = 0u; px < p.hw; px++)
        s += t2[fi(b, px, ch)] * f[fi(b, px, ch)];
      float m = mc(b, ch), dz = s * m * (1.0 - m);
      hb[p.o_dz + 2u * rb * p.c + ch] = dz;
      hb[p.o_dz + (2u * rb + 1u) * p.c + ch] = dz;
    }
    return;
  }
  if (p.mode == M_APPLY || p.mode == M_DF_ACC) {
    if (i >= p.nb * p.hw * p.c)
      return;
    uint ch = i % p.c, px = (i / p.c) % p.hw, b = i / (p.c * p.hw), rb = p.row0 + b;
    if (p.mode == M_APPLY) {
      t1[i] = f[i] * mc(b, ch) * hb[p.o_ms + rb * p.hw + px];
    } else {
      uint am = 0u;
      for (uint q = 1u; q < p.hw; q++)
        if (f[fi(b, q, ch)] > f[fi(b, am, ch)])
          am = q;
      float g = t2[i] * mc(b, ch) + hb[p.o_dx2 + 2u * rb * p.c + ch] / float(p.hw);
      if (px == am)
        g += hb[p.o_dx2 + (2u * rb + 1u) * p.c + ch];
      o[i] += g;
    }
    return;
  }
  if (i >= p.nb * p.hw)
    return;
  uint px = i % p.hw, b = i / p.hw, rb = p.row0 + b, pi = rb * p.hw + px;
  if (p.mode == M_CPOOL) {
    float m = f[fi(b, px, 0u)] * mc(b, 0u), s = 0.0;
    for (uint ch = 0u; ch < p.c; ch++) {
      float v = f[fi(b, px, ch)] * mc(b, ch);
      s += v;
      m = max(m, v);
    }
    hb[p.o_p + 2u * pi] = m;
    hb[p.o_p + 2u * pi + 1u] = s / float(p.c);
  } else if (p.mode == M_CONV) {
    int y = int(px / p.w), x = int(px % p.w), pad = int(p.k / 2u);
    float s = 0.0;
    for (int ky = 0; ky < int(p.k); ky++)
      for (int kx = 0; kx < int(p.k); kx++) {
        int yy = y + ky - pad, xx = x + kx - pad;
        if (yy < 0 || yy >= int(p.h) || xx < 0 || xx >= int(p.w))
          continue;
        uint q = rb * p.hw + uint(yy) * p.w + uint(xx), wi = (uint(ky) * p.k + uint(kx)) * 2u;
        s += hb[p.o_p + 2u * q] * prm[p.o_w7 + wi] + hb[p.o_p + 2u * q + 1u] * prm[p.o_w7 + wi + 1u];
      }
    hb[p.o_s + pi] = s;
  } else if (p.mode == M_BN_EVAL) {
    float z = prm[p.o_g] * (hb[p.o_s + pi] - prm[p.o_rm]) / sqrt(prm[p.o_rv] + p.eps) + prm[p.o_b];
    hb[p.o_ms + pi] = ri_sigmoid(z);
  } else if (p.mode == M_DMS) {
    float s = 0.0;
    for (uint ch = 0u; ch < p.c; ch++)
      s += t1[fi(b, px, ch)] * f[fi(b, px, ch)] * mc(b, ch);
    hb[p.o_dms + pi] = s;
  } else if (p.mode == M_DF1) {
    uint am = 0u;
    float best = f[fi(b, px, 0u)] * mc(b, 0u);
    for (uint ch = 1u; ch < p.c; ch++) {
      float v = f[fi(b, px, ch)] * mc(b, ch);
      if (v > best) {
        best = v;
        am = ch;
      }
    }
    float ms = hb[p.o_ms + pi], dmax = hb[p.o_dp + 2u * pi], dmean = hb[p.o_dp + 2u * pi + 1u] / float(p.c);
    for (uint ch = 0u; ch < p.c; ch++)
      t2[fi(b, px, ch)] = t1[fi(b, px, ch)] * ms + dmean + (ch == am ? dmax : 0.0);
  }
}
