#version 450
// Depthwise convolution weight gradient, first stage, channels % 4 == 0:
// dW[ky][kx][c] = sum over (n, oy, ox) of dy[n][oy][ox][c] * x[n][oy S + ky - pad][ox S + kx - pad][c].
// KS == 3: a lane owns 4 channels (one texel) of a strip of P output columns and walks a
// chunk of output rows (image after image) down it, keeping the 9 tap sums in
// registers. As in the forward kernel it slides a window of three input rows, fetching
// one new input row per output row at stride 1 (two at stride 2); every load is a texel
// fetch (docs/PERFORMANCE.md). It writes its 9 sums, in row order, to part[chunk][strip];
// train_reduce adds those in order (bit-identical reruns, no float atomics).
// KS == 0: any kernel and stride, a lane owns one tap of 4 channels over its chunk.
#extension GL_EXT_control_flow_attributes : require
layout(local_size_x_id = 0) in;
layout(constant_id = 1) const uint KS = 0u; // 3: a 3x3 kernel with stride SS; 0: any
layout(constant_id = 2) const uint SS = 1u;
#define P 4 // output columns per lane: DW_P in worker/train/ops_bwd_dw.c
const uint WIN = (P - 1u) * SS + 3u;

layout(set = 0, binding = 0) uniform samplerBuffer X;  // NHWC input, C = 4 * c4
layout(set = 0, binding = 1) uniform samplerBuffer DY; // NHWC output gradient
layout(set = 0, binding = 2) writeonly buffer Part { vec4 part[]; }; // [chunks][x_tiles][taps][c4]
layout(push_constant) uniform Push {
  uint batch, in_h, in_w, c4, out_h, out_w, kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left;
  uint x_tiles, rows_per_chunk, chunks, x_base, dy_base;
} p;

vec4 x_at(uint n, int iy, int ix, uint c4)
{
  bool ok = iy >= 0 && iy < int(p.in_h) && ix >= 0 && ix < int(p.in_w);
  uint iyc = uint(clamp(iy, 0, int(p.in_h) - 1)), ixc = uint(clamp(ix, 0, int(p.in_w) - 1));
  vec4 v = texelFetch(X, int(p.x_base + ((n * p.in_h + iyc) * p.in_w + ixc) * p.c4 + c4));
  return ok ? v : vec4(0.0);
}

vec4 dy_at(uint n, uint oy, uint ox, uint c4)
{
  vec4 v = texelFetch(DY, int(p.dy_base + ((n * p.out_h + oy) * p.out_w + min(ox, p.out_w - 1u)) * p.c4 + c4));
  return ox < p.out_w ? v : vec4(0.0);
}

void load_row(uint n, int iy, int ix0, uint c4, out vec4 r[WIN])
{
  [[unroll]] for (uint i = 0u; i < WIN; i++)
    r[i] = x_at(n, iy, ix0 + int(i), c4);
}

#define ADD_TAPS(r, ky)                                                            \
  [[unroll]] for (uint j = 0u; j < P; j++) {                                       \
    [[unroll]] for (uint kx = 0u; kx < 3u; kx++)                                   \
      acc[ky * 3u + kx] += d[j] * r[j * SS + kx];                                  \
  }

void main()
{
  uint idx = (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
  uint c4 = idx % p.c4;
  uint t = idx / p.c4;
  uint taps = p.kernel_h * p.kernel_w;
  uint q0, q1;
  if (KS == 3u) {
    if (idx >= p.chunks * p.x_tiles * p.c4)
      return;
    uint xt = t % p.x_tiles;
    uint chunk = t / p.x_tiles;
    uint rows = p.batch * p.out_h;
    q0 = min(chunk * p.rows_per_chunk, rows);
    q1 = min(q0 + p.rows_per_chunk, rows);
    uint ox0 = xt * P;
    int ix0 = int(ox0 * SS) - int(p.pad_left);
    vec4 acc[9];
    [[unroll]] for (uint k = 0u; k < 9u; k++)
      acc[k] = vec4(0.0);
    vec4 r0[WIN], r1[WIN], r2[WIN];
    uint oy = q0 % p.out_h, n = q0 / p.out_h;
    int iy = int(oy * SS) - int(p.pad_top);
    load_row(n, iy, ix0, c4, r0);
    load_row(n, iy + 1, ix0, c4, r1);
    for (uint q = q0; q < q1; q++) {
      load_row(n, iy + 2, ix0, c4, r2);
      vec4 d[P];
      [[unroll]] for (uint j = 0u; j < P; j++)
        d[j] = dy_at(n, oy, ox0 + j, c4);
      ADD_TAPS(r0, 0u)
      ADD_TAPS(r1, 1u)
      ADD_TAPS(r2, 2u)
      if (++oy == p.out_h) { // next image: a fresh window
        oy = 0u;
        n++;
        iy = -int(p.pad_top);
        if (q + 1u < q1) {
          load_row(n, iy, ix0, c4, r0);
          load_row(n, iy + 1, ix0, c4, r1);
        }
      } else if (SS == 1u) {
        iy += 1;
        [[unroll]] for (uint i = 0u; i < WIN; i++) {
          r0[i] = r1[i];
          r1[i] = r2[i];
        }
      } else {
        iy += int(SS);
        [[unroll]] for (uint i = 0u; i < WIN; i++)
          r0[i] = r2[i];
        load_row(n, iy + 1, ix0, c4, r1);
      }
    }
    uint o = ((chunk * p.x_tiles + xt) * 9u) * p.c4 + c4;
    [[unroll]] for (uint k = 0u; k < 9u; k++)
      part[o + k * p.c4] = acc[k];
    return;
  }
  // Any shape: lane (chunk, tap, c4) over the chunk's output pixels.
  if (idx >= p.chunks * taps * p.c4)
    return;
  uint tap = t % taps;
  uint chunk = t / taps;
  uint ky = tap / p.kernel_w, kx = tap % p.kernel_w;
  uint pixels = p.batch * p.out_h * p.out_w;
  q0 = min(chunk * p.rows_per_chunk, pixels);
  q1 = min(q0 + p.rows_per_chunk, pixels);
  uint ox = q0 % p.out_w, q = q0 / p.out_w;
  uint oy = q % p.out_h, n = q / p.out_h;
  vec4 acc = vec4(0.0);
  for (uint m = q0; m < q1; m++) {
    int iy = int(oy * p.stride_h + ky) - int(p.pad_top), ix = int(ox * p.stride_w + kx) - int(p.pad_left);
    acc += dy_at(n, oy, ox, c4) * x_at(n, iy, ix, c4);
    if (++ox == p.out_w) {
      ox = 0u;
      if (++oy == p.out_h) {
        oy = 0u;
        n++;
      }
    }
  }
  part[(chunk * taps + tap) * p.c4 + c4] = acc;
}
