#version 450
// im2col of an NHWC tensor whose channel count is a multiple of 4: row (n, oy, ox) of
// the output holds the conv window, (ky, kx, c) innermost-last as the OHWI weights, so
// a dense conv becomes a 1x1 conv (a GEMM) on these rows. Taps in the padding are zero.
// One invocation per output texel: 4 channels of one tap, a single vec4 copy.
#extension GL_GOOGLE_include_directive : require
layout(local_size_x_id = 0) in;
#include "train_common.glsl"
layout(set = 0, binding = 0) readonly buffer In { vec4 x[]; };
layout(set = 0, binding = 1) writeonly buffer Out { vec4 y[]; };
layout(push_constant) uniform Push {
  uint batch, in_h, in_w, c4, out_h, out_w, kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left;
} p;

void main()
{
  uint idx = flat_index();
  uint k4 = p.kernel_h * p.kernel_w * p.c4;
  if (idx >= p.batch * p.out_h * p.out_w * k4)
    return;
  uint row = idx / k4, k = idx % k4;
  uint c = k % p.c4, tap = k / p.c4;
  uint kx = tap % p.kernel_w, ky = tap / p.kernel_w;
  uint ox = row % p.out_w, oy = (row / p.out_w) % p.out_h, n = row / (p.out_w * p.out_h);
  int iy = int(oy * p.stride_h + ky) - int(p.pad_top), ix = int(ox * p.stride_w + kx) - int(p.pad_left);
  vec4 v = vec4(0.0);
  if (iy >= 0 && iy < int(p.in_h) && ix >= 0 && ix < int(p.in_w))
    v = x[((n * p.in_h + uint(iy)) * p.in_w + uint(ix)) * p.c4 + c];
  y[idx] = v;
}
