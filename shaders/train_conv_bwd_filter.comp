#version 450
// Convolution weight gradient, first stage: invocation (chunk, weight) sums
// dy * x over the output pixels of its chunk, in pixel order, into its own partial.
// train_reduce's second stage adds the chunks in chunk order: two runs give the same
// bits (no float atomics), and the work is spread over chunks x weights lanes.
#extension GL_GOOGLE_include_directive : require
layout(local_size_x_id = 0) in;
// After the layout: gl_WorkGroupSize is only the specialised size from here on.
#include "train_common.glsl"
layout(set = 0, binding = 0) readonly buffer X { float x[]; };   // NHWC input
layout(set = 0, binding = 1) readonly buffer DY { float dy[]; }; // NHWC output gradient
layout(set = 0, binding = 2) writeonly buffer Part { float part[]; }; // [chunks][weights]
layout(push_constant) uniform Push {
  uint batch, in_h, in_w, in_c, out_h, out_w, out_c, kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left;
  uint depthwise, rows_per_chunk, chunks, weights;
} p;

void main()
{
  uint idx = flat_index();
  if (idx >= p.chunks * p.weights)
    return;
  uint chunk = idx / p.weights;
  uint wi = idx % p.weights;
  uint ic, oc, kx, ky;
  if (p.depthwise != 0u) { // HWC
    ic = wi % p.in_c;
    oc = ic;
    uint t = wi / p.in_c;
    kx = t % p.kernel_w;
    ky = t / p.kernel_w;
  } else { // OHWI
    ic = wi % p.in_c;
    uint t = wi / p.in_c;
    kx = t % p.kernel_w;
    t /= p.kernel_w;
    ky = t % p.kernel_h;
    oc = t / p.kernel_h;
  }
  uint rows = p.batch * p.out_h * p.out_w;
  uint m0 = chunk * p.rows_per_chunk;
  uint m1 = min(rows, m0 + p.rows_per_chunk);
  float acc = 0.0;
  if (m0 >= m1) {
    part[idx] = 0.0;
    return;
  }
  // Walk the chunk's pixels with running coordinates (no divisions in the loop).
  uint ox = m0 % p.out_w;
  uint t = m0 / p.out_w;
  uint oy = t % p.out_h;
  uint n = t / p.out_h;
  for (uint m = m0; m < m1; m++) {
    int iy = int(oy * p.stride_h + ky) - int(p.pad_top);
    int ix = int(ox * p.stride_w + kx) - int(p.pad_left);
    if (iy >= 0 && iy < int(p.in_h) && ix >= 0 && ix < int(p.in_w))
      acc += dy[m * p.out_c + oc] * x[((n * p.in_h + uint(iy)) * p.in_w + uint(ix)) * p.in_c + ic];
    if (++ox == p.out_w) {
      ox = 0u;
      if (++oy == p.out_h) {
        oy = 0u;
        n++;
      }
    }
  }
  part[idx] = acc;
}
