#version 450
// Max pooling over NHWC with TF padding: taps in the padding are skipped, so they
// never win (TF pads with -inf). One invocation per output element, channels
// innermost so adjacent lanes read adjacent floats.
#extension GL_GOOGLE_include_directive : require
layout(local_size_x_id = 0) in;
#include "train_common.glsl"
layout(set = 0, binding = 0) readonly buffer In { float x[]; };
layout(set = 0, binding = 1) writeonly buffer Out { float y[]; };
layout(push_constant) uniform Push {
  uint batch, in_h, in_w, c, out_h, out_w, kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left;
} p;

void main()
{
  uint idx = flat_index();
  if (idx >= p.batch * p.out_h * p.out_w * p.c)
    return;
  uint c = idx % p.c;
  uint ox = (idx / p.c) % p.out_w;
  uint oy = (idx / (p.c * p.out_w)) % p.out_h;
  uint n = idx / (p.c * p.out_w * p.out_h);
  float m = -3.402823466e38;
  for (uint ky = 0u; ky < p.kernel_h; ky++) {
    int iy = int(oy * p.stride_h + ky) - int(p.pad_top);
    if (iy < 0 || iy >= int(p.in_h))
      continue;
    for (uint kx = 0u; kx < p.kernel_w; kx++) {
      int ix = int(ox * p.stride_w + kx) - int(p.pad_left);
      if (ix < 0 || ix >= int(p.in_w))
        continue;
      m = max(m, x[((n * p.in_h + uint(iy)) * p.in_w + uint(ix)) * p.c + c]);
    }
  }
  y[idx] = m;
}
