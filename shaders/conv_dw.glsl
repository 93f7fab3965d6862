// Body of conv_dw.comp and conv_dw_64.comp (OUT_U64: shaderInt64 stores).
// Depthwise convolution, channels % 4 == 0: each lane computes 4 channels (one texel) of
// P adjacent output pixels along x, for a strip of output rows. Every load is a texel
// fetch (lavapipe's vectorised gather path, DESIGN §3), and a fetch costs far more than
// the FMAs it feeds, so the fast path (KS == 3) fetches each input texel of its strip
// once: it slides a window of three input rows down the strip, fetching one new row per
// output row at stride 1 (two at stride 2), and keeps the 9 weight texels for the whole
// strip. That is about (P + 2) / P + 9 / (rows * P) fetches per output at stride 1,
// against 4.5 + 9 / P when every output row refetched its three input rows. Adjacent
// lanes take adjacent channel texels, so on GPUs a subgroup reads contiguous memory.
#extension GL_EXT_control_flow_attributes : require
#include "epilogue.glsl"

#define P 4 // output pixels per lane, must match DW_P in worker/nn/ops.c

layout(local_size_x_id = 0) in;
layout(constant_id = 1) const uint KS = 0u; // 3: a 3x3 kernel with stride SS (fast path); 0: any shape
layout(constant_id = 2) const uint SS = 1u;
const uint WIN = (P - 1u) * SS + 3u;

layout(set = 0, binding = 0) uniform samplerBuffer X;     // NHWC input, C = 4 * c4
layout(set = 0, binding = 1) uniform samplerBuffer W;     // HWC weights (the model's layout)
layout(set = 0, binding = 2) uniform samplerBuffer Bias;
layout(set = 0, binding = 3) uniform samplerBuffer Slope;
layout(set = 0, binding = 4) uniform samplerBuffer Res;
#ifdef OUT_U64
// lavapipe stores one lane and one component at a time, ~10 instructions each: as two
// 64-bit components a texel costs half as many stores as four floats.
layout(set = 0, binding = 5) writeonly buffer Out8 { u64vec2 y8[]; };
#else
layout(set = 0, binding = 5) writeonly buffer Out4 { vec4 y4[]; };
#endif
layout(push_constant) uniform Push {
  uint batch, in_h, in_w, c4, out_h, out_w, kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left;
  uint act, has_residual, x_tiles, y_tiles, rows; // output rows per lane: y_tiles * rows >= out_h
} p;

vec4 bias_v, slope_v;

void store(uint n, uint oy, uint ox, uint c4, vec4 acc)
{
  if (ox >= p.out_w)
    return;
  vec4 v = acc + bias_v;
  for (uint c = 0u; c < 4u; c++)
    v[c] = apply_activation(v[c], p.act, slope_v[c]);
  uint o = ((n * p.out_h + oy) * p.out_w + ox) * p.c4;
  if (p.has_residual != 0u)
    v += texelFetch(Res, int(o + c4));
#ifdef OUT_U64
  uvec4 b = floatBitsToUint(v);
  y8[o + c4] = u64vec2(packUint2x32(b.xy), packUint2x32(b.zw));
#else
  y4[o + c4] = v;
#endif
}

// WIN input texels of row iy starting at column ix0; zero outside the image.
void load_row(uint n, int iy, int ix0, uint c4, out vec4 r[WIN])
{
  bool row_ok = iy >= 0 && iy < int(p.in_h);
  uint base = (n * p.in_h + uint(clamp(iy, 0, int(p.in_h) - 1))) * p.in_w;
  [[unroll]] for (uint i = 0u; i < WIN; i++) {
    int ix = ix0 + int(i);
    int ixc = clamp(ix, 0, int(p.in_w) - 1);
    vec4 v = texelFetch(X, int((base + uint(ixc)) * p.c4 + c4));
    r[i] = row_ok && ix == ixc ? v : vec4(0.0);
  }
}

void main()
{
  uint idx = (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
  if (idx >= p.batch * p.y_tiles * p.x_tiles * p.c4)
    return;
  uint c4 = idx % p.c4;
  uint t = idx / p.c4;
  uint ox0 = (t % p.x_tiles) * P;
  t /= p.x_tiles;
  uint oy0 = (t % p.y_tiles) * p.rows;
  uint n = t / p.y_tiles;
  uint oy1 = min(oy0 + p.rows, p.out_h);
  bias_v = texelFetch(Bias, int(c4));
  slope_v = p.act == ACT_PRELU ? texelFetch(Slope, int(c4)) : vec4(0.0);

  if (KS == 3u) {
    vec4 w[9];
    [[unroll]] for (uint k = 0u; k < 9u; k++)
      w[k] = texelFetch(W, int(k * p.c4 + c4));
    int ix0 = int(ox0 * SS) - int(p.pad_left);
    // r0, r1, r2: input rows iy, iy + 1, iy + 2 of output row oy.
    vec4 r0[WIN], r1[WIN], r2[WIN];
    int iy = int(oy0 * SS) - int(p.pad_top);
    load_row(n, iy, ix0, c4, r0);
    load_row(n, iy + 1, ix0, c4, r1);
    for (uint oy = oy0; oy < oy1; oy++, iy += int(SS)) {
      load_row(n, iy + 2, ix0, c4, r2);
      [[unroll]] for (uint j = 0u; j < P; j++) {
        vec4 acc = vec4(0.0);
        [[unroll]] for (uint kx = 0u; kx < 3u; kx++)
          acc += r0[j * SS + kx] * w[kx] + r1[j * SS + kx] * w[3u + kx] + r2[j * SS + kx] * w[6u + kx];
        store(n, oy, ox0 + j, c4, acc);
      }
      if (SS == 1u) {
        [[unroll]] for (uint i = 0u; i < WIN; i++) {
          r0[i] = r1[i];
          r1[i] = r2[i];
        }
      } else {
        [[unroll]] for (uint i = 0u; i < WIN; i++)
          r0[i] = r2[i];
        if (oy + 1u < oy1)
          load_row(n, iy + 3, ix0, c4, r1);
      }
    }
    return;
  }
  for (uint oy = oy0; oy < oy1; oy++) {
    vec4 acc[P];
    [[unroll]] for (uint j = 0u; j < P; j++)
      acc[j] = vec4(0.0);
    for (uint ky = 0u; ky < p.kernel_h; ky++) {
      int iy = int(oy * p.stride_h + ky) - int(p.pad_top);
      if (iy < 0 || iy >= int(p.in_h))
        continue;
      uint row = (n * p.in_h + uint(iy)) * p.in_w;
      for (uint kx = 0u; kx < p.kernel_w; kx++) {
        vec4 w = texelFetch(W, int((ky * p.kernel_w + kx) * p.c4 + c4));
        [[unroll]] for (uint j = 0u; j < P; j++) {
          int ix = int((ox0 + j) * p.stride_w + kx) - int(p.pad_left);
          int ixc = clamp(ix, 0, int(p.in_w) - 1);
          vec4 v = texelFetch(X, int((row + uint(ixc)) * p.c4 + c4));
          acc[j] += (ix == ixc ? v : vec4(0.0)) * w;
        }
      }
    }
    [[unroll]] for (uint j = 0u; j < P; j++)
      store(n, oy, ox0 + j, c4, acc[j]);
  }
}
