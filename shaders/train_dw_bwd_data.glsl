// Body of train_dw_bwd_data.comp and _64.comp (OUT_U64: shaderInt64 stores).
// Depthwise convolution input gradient, channels % 4 == 0: each lane computes 4
// channels (one texel) of P adjacent dx pixels along x for a strip of dx rows.
//
// In padded coordinates (ry = iy + pad_top, rx = ix + pad_left) a dx pixel gathers
// dy[(ry - ky) / S][(rx - kx) / S] * w[ky][kx] over the taps where both divide. Strips
// start at multiples of P (a multiple of S) in those coordinates, so which taps reach
// which pixel of the strip is known at compile time (KS == 3): the lane fetches each dy
// row of its strip once (P + 2 texels at stride 1, 3 at stride 2), slides down the
// rows, and keeps the 9 weight texels. Every load is a texel fetch (lavapipe's
// vectorised gather, docs/PERFORMANCE.md); each dx is written by one lane (no atomics).
// KS == 0: any kernel and stride, one dx texel per lane, only the taps that reach it.
#extension GL_EXT_control_flow_attributes : require

#define P 4 // dx pixels per lane along x: DW_P in worker/train/ops_bwd_dw.c

layout(local_size_x_id = 0) in;
layout(constant_id = 1) const uint KS = 0u; // 3: a 3x3 kernel with stride SS; 0: any
layout(constant_id = 2) const uint SS = 1u; // 1 or 2
// dy texels of a strip's row: ox from rx0 / S - (S == 1 ? 2 : 1), P + 2 or 3 of them.
const uint NX = SS == 1u ? P + 2u : P / 2u + 1u;
const int XLO = SS == 1u ? 2 : 1;

layout(set = 0, binding = 0) uniform samplerBuffer DY; // NHWC, C = 4 * c4
layout(set = 0, binding = 1) uniform samplerBuffer W;  // HWC
#ifdef OUT_U64
layout(set = 0, binding = 2) writeonly buffer Out8 { u64vec2 y8[]; };
#else
layout(set = 0, binding = 2) writeonly buffer Out4 { vec4 y4[]; };
#endif
layout(push_constant) uniform Push {
  uint batch, in_h, in_w, c4, out_h, out_w, kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left;
  uint x_tiles, y_tiles, rows, dy_base, w_base;
} p;

void store(uint n, int iy, int ix, uint c4, vec4 v)
{
  if (iy < 0 || iy >= int(p.in_h) || ix < 0 || ix >= int(p.in_w))
    return;
  uint o = ((n * p.in_h + uint(iy)) * p.in_w + uint(ix)) * p.c4 + c4;
#ifdef OUT_U64
  uvec4 b = floatBitsToUint(v);
  y8[o] = u64vec2(packUint2x32(b.xy), packUint2x32(b.zw));
#else
  y4[o] = v;
#endif
}

vec4 dy_at(uint n, int oy, int ox, uint c4)
{
  bool ok = oy >= 0 && oy < int(p.out_h) && ox >= 0 && ox < int(p.out_w);
  uint oyc = uint(clamp(oy, 0, int(p.out_h) - 1)), oxc = uint(clamp(ox, 0, int(p.out_w) - 1));
  vec4 v = texelFetch(DY, int(p.dy_base + ((n * p.out_h + oyc) * p.out_w + oxc) * p.c4 + c4));
  return ok ? v : vec4(0.0);
}

// The NX dy texels of row oy that a strip starting at padded column rx0 reads.
void load_row(uint n, int oy, int ox0, uint c4, out vec4 r[NX])
{
  [[unroll]] for (uint j = 0u; j < NX; j++)
    r[j] = dy_at(n, oy, ox0 + int(j), c4);
}

// Adds kernel row ky's taps (weights wk0..2) from dy row r to the strip's P pixels:
// pixel i meets tap kx from dy texel (i - kx) / S + XLO when S divides i - kx.
#define ADD_ROW(acc, r, wk0, wk1, wk2)                                             \
  [[unroll]] for (int i = 0; i < int(P); i++) {                                    \
    [[unroll]] for (int kx = 0; kx < 3; kx++) {                                    \
      if ((i - kx + 4) % int(SS) == 0) {                                           \
        vec4 wv = kx == 0 ? wk0 : kx == 1 ? wk1 : wk2;                             \
        acc[i] += r[(i - kx + 4) / int(SS) - 4 / int(SS) + XLO] * wv;              \
      }                                                                            \
    }                                                                              \
  }

void main()
{
  uint idx = (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
  if (KS == 3u) {
    if (idx >= p.batch * p.y_tiles * p.x_tiles * p.c4)
      return;
    uint c4 = idx % p.c4;
    uint t = idx / p.c4;
    int rx0 = int((t % p.x_tiles) * P);
    t /= p.x_tiles;
    int ry0 = int((t % p.y_tiles) * p.rows);
    uint n = t / p.y_tiles;
    int ry1 = min(ry0 + int(p.rows), int(p.in_h + p.pad_top));
    vec4 w[9];
    [[unroll]] for (uint k = 0u; k < 9u; k++)
      w[k] = texelFetch(W, int(p.w_base + k * p.c4 + c4));
    int ox0 = rx0 / int(SS) - XLO, ix0 = rx0 - int(p.pad_left);
    vec4 acc[P];
    if (SS == 1u) {
      // r0, r1, r2: dy rows ry - 2, ry - 1, ry (taps ky = 2, 1, 0).
      vec4 r0[NX], r1[NX], r2[NX];
      load_row(n, ry0 - 2, ox0, c4, r0);
      load_row(n, ry0 - 1, ox0, c4, r1);
      for (int ry = ry0; ry < ry1; ry++) {
        load_row(n, ry, ox0, c4, r2);
        [[unroll]] for (uint i = 0u; i < P; i++)
          acc[i] = vec4(0.0);
        ADD_ROW(acc, r2, w[0], w[1], w[2])
        ADD_ROW(acc, r1, w[3], w[4], w[5])
        ADD_ROW(acc, r0, w[6], w[7], w[8])
        [[unroll]] for (uint i = 0u; i < P; i++)
          store(n, ry - int(p.pad_top), ix0 + int(i), c4, acc[i]);
        [[unroll]] for (uint j = 0u; j < NX; j++) {
          r0[j] = r1[j];
          r1[j] = r2[j];
        }
      }
    } else {
      // Rows in pairs from an even ry: ry takes taps ky = 0 (dy row ry / 2) and 2 (row
      // ry / 2 - 1), ry + 1 takes ky = 1 (row ry / 2).
      vec4 prev[NX], cur[NX];
      load_row(n, ry0 / 2 - 1, ox0, c4, prev);
      for (int ry = ry0; ry < ry1; ry += 2) {
        load_row(n, ry / 2, ox0, c4, cur);
        [[unroll]] for (uint i = 0u; i < P; i++)
          acc[i] = vec4(0.0);
        ADD_ROW(acc, cur, w[0], w[1], w[2])
        ADD_ROW(acc, prev, w[6], w[7], w[8])
        [[unroll]] for (uint i = 0u; i < P; i++)
          store(n, ry - int(p.pad_top), ix0 + int(i), c4, acc[i]);
        [[unroll]] for (uint i = 0u; i < P; i++)
          acc[i] = vec4(0.0);
        ADD_ROW(acc, cur, w[3], w[4], w[5])
        [[unroll]] for (uint i = 0u; i < P; i++)
          store(n, ry + 1 - int(p.pad_top), ix0 + int(i), c4, acc[i]);
        [[unroll]] for (uint j = 0u; j < NX; j++)
          prev[j] = cur[j];
      }
    }
    return;
  }
  // Any shape: lane idx is one dx texel. The taps that reach it: oy * stride + ky ==
  // iy + pad, so from the last output row that can (no divisions in the loops).
  if (idx >= p.batch * p.in_h * p.in_w * p.c4)
    return;
  uint c4 = idx % p.c4;
  uint t = idx / p.c4;
  uint ix = t % p.in_w;
  t /= p.in_w;
  uint iy = t % p.in_h;
  uint n = t / p.in_h;
  uint ry = iy + p.pad_top, rx = ix + p.pad_left;
  vec4 acc = vec4(0.0);
  int oy = min(int(ry / p.stride_h), int(p.out_h) - 1), ox1 = min(int(rx / p.stride_w), int(p.out_w) - 1);
  for (uint ky = ry - uint(oy) * p.stride_h; ky < p.kernel_h && oy >= 0; ky += p.stride_h, oy--) {
    int ox = ox1;
    for (uint kx = rx - uint(ox) * p.stride_w; kx < p.kernel_w && ox >= 0; kx += p.stride_w, ox--)
      acc += dy_at(n, oy, ox, c4) * texelFetch(W, int(p.w_base + (ky * p.kernel_w + kx) * p.c4 + c4));
  }
  store(n, int(iy), int(ix), c4, acc);
}
