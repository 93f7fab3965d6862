#version 450
// Convolution input gradient, dense or depthwise, any kernel/stride/padding: one
// invocation per input element gathers every output gradient its pixel fed, so each
// dx is written once by one invocation (no atomics, deterministic).
#extension GL_GOOGLE_include_directive : require
layout(local_size_x_id = 0) in;
// After the layout: gl_WorkGroupSize is only the specialised size from here on.
#include "train_common.glsl"
layout(set = 0, binding = 0) readonly buffer DY { float dy[]; }; // NHWC output gradient
layout(set = 0, binding = 1) readonly buffer W { float w[]; };   // dense OHWI or depthwise HWC
layout(set = 0, binding = 2) writeonly buffer DX { float dx[]; };
layout(push_constant) uniform Push {
  uint batch, in_h, in_w, in_c, out_h, out_w, out_c, kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left;
  uint depthwise;
} p;

void main()
{
  uint idx = flat_index();
  if (idx >= p.batch * p.in_h * p.in_w * p.in_c)
    return;
  uint ic = idx % p.in_c;
  uint t = idx / p.in_c;
  uint ix = t % p.in_w;
  t /= p.in_w;
  uint iy = t % p.in_h;
  uint n = t / p.in_h;
  float acc = 0.0;
  // The taps that reach this pixel: oy * stride + ky == iy + pad, so ky steps by the
  // stride from the last output row that can reach it while oy counts down (two
  // divisions per axis, none in the loops: lavapipe's integer division is slow).
  uint ry = iy + p.pad_top, rx = ix + p.pad_left;
  int oy = min(int(ry / p.stride_h), int(p.out_h) - 1), ox1 = min(int(rx / p.stride_w), int(p.out_w) - 1);
  for (uint ky = ry - uint(oy) * p.stride_h; ky < p.kernel_h && oy >= 0; ky += p.stride_h, oy--) {
    int ox = ox1;
    for (uint kx = rx - uint(ox) * p.stride_w; kx < p.kernel_w && ox >= 0; kx += p.stride_w, ox--) {
      uint obase = ((n * p.out_h + uint(oy)) * p.out_w + uint(ox)) * p.out_c;
      if (p.depthwise != 0u) {
        acc += dy[obase + ic] * w[(ky * p.kernel_w + kx) * p.in_c + ic];
      } else {
        uint wstride = p.kernel_h * p.kernel_w * p.in_c;
        uint wi = (ky * p.kernel_w + kx) * p.in_c + ic;
        for (uint oc = 0u; oc < p.out_c; oc++, wi += wstride)
          acc += dy[obase + oc] * w[wi];
      }
    }
  }
  dx[idx] = acc;
}
