#version 450
// Affine bilinear warp of 8-bit RGB images into a normalised NHWC float batch: the
// pyramid levels and box crops of MTCNN (Android's filtered Bitmap scaling) and the
// 112x112 ArcFace alignment. Item b maps output pixel (x, y) to source pixel
// coordinates (m0 x + m1 y + m2, m3 x + m4 y + m5) (pixel centres at integers);
// the four taps are clamped to the image (border 0) or read as black outside it
// (border 1, cv2.warpAffine's constant border). The sample is rounded to 8 bits, as
// the bitmap or uint8 image it stands for, then normalised: (v - mean) / std.
// Items past `count` are written as zeros so a padded batch stays finite.
#extension GL_GOOGLE_include_directive : require
layout(local_size_x_id = 0) in;
#include "train_common.glsl"
layout(set = 0, binding = 0) readonly buffer Img { uint img[]; };    // bytes, packed 4 per word
layout(set = 0, binding = 1) readonly buffer Items { uint it[]; };   // 9 words per item
layout(set = 0, binding = 2) writeonly buffer Out { float y[]; };
layout(push_constant) uniform Push { uint out_w, out_h, count, batch, border; float mean, std; } p;

float texel(uint base, uint w, uint h, int x, int yy, uint c)
{
  if (p.border == 1u && (x < 0 || yy < 0 || x >= int(w) || yy >= int(h)))
    return 0.0;
  uint cx = uint(clamp(x, 0, int(w) - 1)), cy = uint(clamp(yy, 0, int(h) - 1));
  uint i = base + (cy * w + cx) * 3u + c;
  return float((img[i >> 2] >> ((i & 3u) * 8u)) & 255u);
}

void main()
{
  uint idx = flat_index();
  if (idx >= p.batch * p.out_h * p.out_w)
    return;
  uint x = idx % p.out_w, yy = (idx / p.out_w) % p.out_h, b = idx / (p.out_w * p.out_h);
  if (b >= p.count) {
    y[idx * 3u] = 0.0;
    y[idx * 3u + 1u] = 0.0;
    y[idx * 3u + 2u] = 0.0;
    return;
  }
  uint o = b * 9u;
  float fx = float(x), fy = float(yy);
  float sx = uintBitsToFloat(it[o]) * fx + uintBitsToFloat(it[o + 1u]) * fy + uintBitsToFloat(it[o + 2u]);
  float sy = uintBitsToFloat(it[o + 3u]) * fx + uintBitsToFloat(it[o + 4u]) * fy + uintBitsToFloat(it[o + 5u]);
  // far outside the image every tap is a border tap; keep int() defined
  sx = clamp(sx, -1.0e6, 1.0e6);
  sy = clamp(sy, -1.0e6, 1.0e6);
  uint base = it[o + 6u], w = it[o + 7u], h = it[o + 8u];
  float x0f = floor(sx), y0f = floor(sy);
  float ax = sx - x0f, ay = sy - y0f;
  int x0 = int(x0f), y0 = int(y0f);
  for (uint c = 0u; c < 3u; c++) {
    float top = texel(base, w, h, x0, y0, c) * (1.0 - ax) + texel(base, w, h, x0 + 1, y0, c) * ax;
    float bot = texel(base, w, h, x0, y0 + 1, c) * (1.0 - ax) + texel(base, w, h, x0 + 1, y0 + 1, c) * ax;
    float v = clamp(floor(top * (1.0 - ay) + bot * ay + 0.5), 0.0, 255.0);
    y[idx * 3u + c] = (v - p.mean) / p.std;
  }
}
