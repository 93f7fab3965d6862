#version 450
// Column sums of a [rows, cols] matrix in two fixed-order stages (DESIGN §3: no float
// atomics, bit-identical reruns). Stage 1: invocation (chunk, col) sums its chunk of
// rows, in row order, of a per-element term; stage 2: invocation col adds the chunk
// partials in chunk order and scales.
#extension GL_GOOGLE_include_directive : require
layout(local_size_x_id = 0) in;
// After the layout: gl_WorkGroupSize is only the specialised size from here on.
#include "train_common.glsl"
layout(set = 0, binding = 0) readonly buffer A { float a[]; };
layout(set = 0, binding = 1) readonly buffer B { float b[]; };
layout(set = 0, binding = 2) readonly buffer V0 { float v0[]; }; // per column
layout(set = 0, binding = 3) readonly buffer V1 { float v1[]; }; // per column
layout(set = 0, binding = 4) buffer Part { float part[]; };      // [chunks][cols]
layout(set = 0, binding = 5) writeonly buffer Out { float o[]; };
layout(push_constant) uniform Push {
  uint rows, cols, rows_per_chunk, chunks, mode, stage, mul_v1;
  float scale;
} p;

#define R_SUM 0u     // a
#define R_DOT 1u     // a * b
#define R_SQDEV 2u   // (a - v0)^2
#define R_DOTDEV 3u  // a * (b - v0)
#define R_DOTNEG 4u  // a * min(b, 0)

void main()
{
  uint idx = flat_index();
  if (p.stage == 0u) {
    if (idx >= p.chunks * p.cols)
      return;
    uint chunk = idx / p.cols;
    uint c = idx % p.cols;
    uint r0 = chunk * p.rows_per_chunk;
    uint r1 = min(p.rows, r0 + p.rows_per_chunk);
    float acc = 0.0;
    if (p.mode == R_SUM) {
      for (uint r = r0; r < r1; r++)
        acc += a[r * p.cols + c];
    } else if (p.mode == R_DOT) {
      for (uint r = r0; r < r1; r++)
        acc += a[r * p.cols + c] * b[r * p.cols + c];
    } else if (p.mode == R_SQDEV) {
      float m = v0[c];
      for (uint r = r0; r < r1; r++) {
        float d = a[r * p.cols + c] - m;
        acc += d * d;
      }
    } else if (p.mode == R_DOTDEV) {
      float m = v0[c];
      for (uint r = r0; r < r1; r++)
        acc += a[r * p.cols + c] * (b[r * p.cols + c] - m);
    } else {
      for (uint r = r0; r < r1; r++)
        acc += a[r * p.cols + c] * min(b[r * p.cols + c], 0.0);
    }
    part[idx] = acc;
  } else {
    if (idx >= p.cols)
      return;
    float acc = 0.0;
    for (uint k = 0u; k < p.chunks; k++)
      acc += part[k * p.cols + idx];
    acc *= p.scale;
    if (p.mul_v1 != 0u)
      acc *= v1[idx];
    o[idx] = acc;
  }
}
