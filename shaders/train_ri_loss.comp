#version 450
// The RI loss terms (faceri/ri_heads.h) over a whole batch, in three stages:
//   0  one invocation per row: which terms the row takes part in, its smooth-L1, ID and
//      squared-error values, and the dot products its gradient needs -> rows [B, 8]
//   1  one invocation: the terms, in row order (fixed-order sums) -> loss [16]
//   2  one invocation per (row, d): dL/dxi^, dL/dxi, dL/dv_attn, and dL/dv added
// The module's whole-batch buffer hb holds xi^, v_attn, their gradients, rows and loss
// at element offsets.
#extension GL_GOOGLE_include_directive : require
layout(local_size_x_id = 0) in;
#include "train_common.glsl"
layout(set = 0, binding = 0) buffer HB { float hb[]; };
layout(set = 0, binding = 1) readonly buffer Xi { float xi[]; };
layout(set = 0, binding = 2) readonly buffer Flags { int flags[]; };
layout(set = 0, binding = 3) readonly buffer V { float v[]; };
layout(set = 0, binding = 4) readonly buffer Centre { float centre[]; };
layout(set = 0, binding = 5) buffer DV { float dv[]; };
layout(set = 0, binding = 6) buffer DXi { float dxi[]; };
layout(set = 0, binding = 7) readonly buffer Ctl { uint ctl[]; }; // [1] mu, [2] sigma (float bits)
layout(push_constant) uniform Push {
  uint stage, batch, dim, xi_stride, xi_offset, has;  // has: 1 flags, 2 dv, 4 dxi, 8 attention
  uint o_xh, o_dxh, o_va, o_dva, o_rows, o_loss;
  uint ui_terms, detach, proj_norm, mse_sum_dim;
  float alpha, beta, gamma, l1_beta, tau;
} p;

#define T_L1 1u
#define T_ID 2u
#define T_MSE 4u

uint terms(uint r)
{
  bool ui = (p.has & 1u) != 0u && (flags[r] & 1) != 0;
  uint t = ui ? p.ui_terms : (T_L1 | T_ID | T_MSE);
  float target = xi[r * p.xi_stride + p.xi_offset];
  if (isnan(target) || isinf(target))
    t &= ~T_L1;
  if ((p.has & 8u) == 0u)
    t &= ~T_MSE;
  return t;
}

float centre_norm()
{
  float s = 0.0;
  for (uint d = 0u; d < p.dim; d++)
    s += centre[d] * centre[d];
  return max(sqrt(s), 1e-12);
}

float vnorm(uint r)
{
  float s = 0.0;
  for (uint d = 0u; d < p.dim; d++)
    s += v[r * p.dim + d] * v[r * p.dim + d];
  return max(sqrt(s), 1e-12);
}

float u_of(uint r, uint d, float vn) { return p.proj_norm != 0u ? v[r * p.dim + d] / vn : v[r * p.dim + d]; }

void main()
{
  uint i = flat_index();
  float mu = uintBitsToFloat(ctl[1]), sigma = uintBitsToFloat(ctl[2]);
  if (p.stage == 0u) {
    if (i >= p.batch)
      return;
    uint r = i, t = terms(r);
    float xh = hb[p.o_xh + r];
    float e = abs(xh - xi[r * p.xi_stride + p.xi_offset]);
    float l1 = (t & T_L1) != 0u ? (e < p.l1_beta ? 0.5 * e * e / p.l1_beta : e - 0.5 * p.l1_beta) : 0.0;
    float id = (t & T_ID) != 0u ? max(0.0, p.tau - (xh - mu) / sigma) : 0.0;
    float se = 0.0, uc = 0.0, ec = 0.0, ue = 0.0, vn = 1.0;
    if ((p.has & 8u) != 0u) {
      float cn = centre_norm();
      vn = vnorm(r);
      for (uint d = 0u; d < p.dim; d++)
        uc += u_of(r, d, vn) * centre[d] / cn;
      for (uint d = 0u; d < p.dim; d++) {
        float u = u_of(r, d, vn), c = centre[d] / cn;
        float ed = hb[p.o_va + r * p.dim + d] - (u - uc * c);
        se += ed * ed;
        ec += ed * c;
        ue += ed * u;
      }
    }
    uint o = p.o_rows + r * 8u;
    hb[o] = float(t);
    hb[o + 1u] = l1;
    hb[o + 2u] = id;
    hb[o + 3u] = (t & T_MSE) != 0u ? se : 0.0;
    hb[o + 4u] = uc;
    hb[o + 5u] = vn;
    hb[o + 6u] = ec;
    hb[o + 7u] = ue;
  } else if (p.stage == 1u) {
    if (i != 0u)
      return;
    float s1 = 0.0, sid = 0.0, smse = 0.0, us = 0.0, uss = 0.0;
    uint n1 = 0u, nid = 0u, nmse = 0u, nui = 0u;
    for (uint r = 0u; r < p.batch; r++) {
      uint t = uint(hb[p.o_rows + r * 8u]);
      if ((t & T_L1) != 0u) { s1 += hb[p.o_rows + r * 8u + 1u]; n1++; }
      if ((t & T_ID) != 0u) { sid += hb[p.o_rows + r * 8u + 2u]; nid++; }
      if ((t & T_MSE) != 0u) { smse += hb[p.o_rows + r * 8u + 3u]; nmse++; }
      if ((p.has & 1u) != 0u && (flags[r] & 1) != 0) { us += hb[p.o_xh + r]; nui++; }
    }
    float umean = nui > 0u ? us / float(nui) : 0.0;
    for (uint r = 0u; r < p.batch; r++)
      if ((p.has & 1u) != 0u && (flags[r] & 1) != 0) {
        float d = hb[p.o_xh + r] - umean;
        uss += d * d;
      }
    float nm = float(nmse) * (p.mse_sum_dim != 0u ? 1.0 : float(p.dim));
    float l1 = n1 > 0u ? s1 / float(n1) : 0.0;
    float id = nid > 0u ? sid / float(nid) : 0.0;
    float mse = nmse > 0u ? smse / nm : 0.0;
    uint o = p.o_loss;
    hb[o] = p.alpha * l1 + p.beta * id + p.gamma * mse;
    hb[o + 1u] = l1;
    hb[o + 2u] = id;
    hb[o + 3u] = mse;
    hb[o + 4u] = float(n1);
    hb[o + 5u] = float(nid);
    hb[o + 6u] = float(nmse);
    hb[o + 7u] = float(nui);
    hb[o + 8u] = umean;
    hb[o + 9u] = nui > 1u ? uss / float(nui - 1u) : 0.0;
  } else {
    if (i >= p.batch * p.dim)
      return;
    uint r = i / p.dim, d = i % p.dim;
    uint ro = p.o_rows + r * 8u;
    uint t = uint(hb[ro]);
    float n1 = hb[p.o_loss + 4u], nid = hb[p.o_loss + 5u], nmse = hb[p.o_loss + 6u];
    if (d == 0u) {
      float xh = hb[p.o_xh + r], g = 0.0, gx = 0.0;
      if ((t & T_L1) != 0u) {
        float e = xh - xi[r * p.xi_stride + p.xi_offset];
        float gd = abs(e) < p.l1_beta ? e / p.l1_beta : sign(e);
        g += p.alpha * gd / n1;
        gx = -p.alpha * gd / n1;
      }
      if ((t & T_ID) != 0u && p.tau - (xh - mu) / sigma > 0.0)
        g -= p.beta / sigma / nid;
      hb[p.o_dxh + r] = g;
      if ((p.has & 4u) != 0u)
        dxi[r] = gx;
    }
    if ((p.has & 8u) == 0u)
      return;
    float nm = nmse * (p.mse_sum_dim != 0u ? 1.0 : float(p.dim));
    float k = (t & T_MSE) != 0u ? p.gamma * 2.0 / nm : 0.0;
    float cn = centre_norm(), vn = hb[ro + 5u], uc = hb[ro + 4u], ec = hb[ro + 6u], ue = hb[ro + 7u];
    float u = u_of(r, d, vn), c = centre[d] / cn;
    float e = hb[p.o_va + r * p.dim + d] - (u - uc * c);
    hb[p.o_dva + r * p.dim + d] = k * e;
    if (p.detach == 0u && (p.has & 2u) != 0u && (t & T_MSE) != 0u) {
      // dL/du = P dL/dv' = -k (e - c <c, e>); through v / |v|: (g - u <u, g>) / |v|.
      float g = -k * (e - ec * c);
      if (p.proj_norm != 0u) {
        float ug = -k * (ue - uc * ec);
        g = (g - u * ug) / vn;
      }
      dv[r * p.dim + d] += g;
    }
  }
}
