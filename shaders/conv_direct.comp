#version 450
// Direct convolution, dense or depthwise, any kernel/stride/padding: one invocation
// per output element. Used for the stem (3x3 s2, 3 input channels) and as the
// general fallback; fast paths exist for 1x1 (gemm) and depthwise (conv_dw).
#extension GL_GOOGLE_include_directive : require
#include "epilogue.glsl"
layout(local_size_x_id = 0) in;
layout(set = 0, binding = 0) readonly buffer In { float x[]; };
layout(set = 0, binding = 1) readonly buffer W { float w[]; };   // dense OHWI or depthwise HWC
layout(set = 0, binding = 2) readonly buffer B { float bias[]; };
layout(set = 0, binding = 3) readonly buffer S { float slope[]; };
layout(set = 0, binding = 4) readonly buffer R { float residual[]; };
layout(set = 0, binding = 5) writeonly buffer Out { float y[]; };
layout(push_constant) uniform Push {
  uint batch, in_h, in_w, in_c, out_h, out_w, out_c, kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left;
  uint act, has_residual, depthwise;
} p;

void main()
{
  uint idx = (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
  uint total = p.batch * p.out_h * p.out_w * p.out_c;
  if (idx >= total)
    return;
  uint oc = idx % p.out_c;
  uint t = idx / p.out_c;
  uint ox = t % p.out_w;
  t /= p.out_w;
  uint oy = t % p.out_h;
  uint n = t / p.out_h;
  float acc = 0.0;
  for (uint ky = 0u; ky < p.kernel_h; ky++) {
    int iy = int(oy * p.stride_h + ky) - int(p.pad_top);
    if (iy < 0 || iy >= int(p.in_h))
      continue;
    for (uint kx = 0u; kx < p.kernel_w; kx++) {
      int ix = int(ox * p.stride_w + kx) - int(p.pad_left);
      if (ix < 0 || ix >= int(p.in_w))
        continue;
      uint base = ((n * p.in_h + uint(iy)) * p.in_w + uint(ix)) * p.in_c;
      if (p.depthwise != 0u) {
        acc += x[base + oc] * w[(ky * p.kernel_w + kx) * p.out_c + oc];
      } else {
        uint wbase = ((oc * p.kernel_h + ky) * p.kernel_w + kx) * p.in_c;
        for (uint ic = 0u; ic < p.in_c; ic++)
          acc += x[base + ic] * w[wbase + ic];
      }
    }
  }
  float v = apply_activation(acc + bias[oc], p.act, p.act == ACT_PRELU ? slope[oc] : 0.0);
  if (p.has_residual != 0u)
    v += residual[idx];
  y[idx] = v;
}
