#version 450
// Depthwise convolution, channels % 4 == 0: each lane computes 4 channels (one texel) of
// P adjacent output pixels along x. Every load is a texel fetch (lavapipe's vectorised
// gather path, DESIGN §3); with KS == 3 the input row window is fetched once and reused
// by the three taps and P outputs, which cuts the fetches per output from 9 to about 4.5
// at stride 1. Adjacent lanes take adjacent channel texels, so on GPUs a subgroup reads
// contiguous memory.
#extension GL_GOOGLE_include_directive : require
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
layout(set = 0, binding = 5) writeonly buffer Out { vec4 y4[]; };
layout(push_constant) uniform Push {
  uint batch, in_h, in_w, c4, out_h, out_w, kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left;
  uint act, has_residual, x_tiles;
} p;

void main()
{
  uint idx = (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
  if (idx >= p.batch * p.out_h * p.x_tiles * p.c4)
    return;
  uint c4 = idx % p.c4;
  uint t = idx / p.c4;
  uint ox0 = (t % p.x_tiles) * P;
  t /= p.x_tiles;
  uint oy = t % p.out_h;
  uint n = t / p.out_h;

  vec4 acc[P];
  for (uint j = 0u; j < P; j++)
    acc[j] = vec4(0.0);
  if (KS == 3u) {
    int ix0 = int(ox0 * SS) - int(p.pad_left);
    for (uint ky = 0u; ky < 3u; ky++) {
      int iy = int(oy * p.stride_h + ky) - int(p.pad_top);
      if (iy < 0 || iy >= int(p.in_h))
        continue;
      uint row = (n * p.in_h + uint(iy)) * p.in_w;
      vec4 xin[WIN];
      for (uint i = 0u; i < WIN; i++) {
        int ix = ix0 + int(i);
        int ixc = clamp(ix, 0, int(p.in_w) - 1);
        vec4 v = texelFetch(X, int((row + uint(ixc)) * p.c4 + c4));
        xin[i] = ix == ixc ? v : vec4(0.0);
      }
      for (uint kx = 0u; kx < 3u; kx++) {
        vec4 w = texelFetch(W, int((ky * 3u + kx) * p.c4 + c4));
        for (uint j = 0u; j < P; j++)
          acc[j] += xin[j * SS + kx] * w;
      }
    }
  } else {
    for (uint ky = 0u; ky < p.kernel_h; ky++) {
      int iy = int(oy * p.stride_h + ky) - int(p.pad_top);
      if (iy < 0 || iy >= int(p.in_h))
        continue;
      uint row = (n * p.in_h + uint(iy)) * p.in_w;
      for (uint kx = 0u; kx < p.kernel_w; kx++) {
        vec4 w = texelFetch(W, int((ky * p.kernel_w + kx) * p.c4 + c4));
        for (uint j = 0u; j < P; j++) {
          int ix = int((ox0 + j) * p.stride_w + kx) - int(p.pad_left);
          int ixc = clamp(ix, 0, int(p.in_w) - 1);
          vec4 v = texelFetch(X, int((row + uint(ixc)) * p.c4 + c4));
          acc[j] += (ix == ixc ? v : vec4(0.0)) * w;
        }
      }
    }
  }
  vec4 b = texelFetch(Bias, int(c4));
  vec4 s = p.act == ACT_PRELU ? texelFetch(Slope, int(c4)) : vec4(0.0);
  for (uint j = 0u; j < P; j++) {
    uint ox = ox0 + j;
    if (ox >= p.out_w)
      break;
    vec4 v = acc[j] + b;
    for (uint c = 0u; c < 4u; c++)
      v[c] = apply_activation(v[c], p.act, s[c]);
    uint o = ((n * p.out_h + oy) * p.out_w + ox) * p.c4 + c4;
    if (p.has_residual != 0u)
      v += texelFetch(Res, int(o));
    y4[o] = v;
  }
}
