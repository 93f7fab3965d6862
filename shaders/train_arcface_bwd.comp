#version 450
// Backward of c = x W^T (W: the normalised rows in ArcFace, the raw head otherwise) from
// g = dL/dc, every sum in a fixed order:
//   DX_PART  (chunk, b, d): sum over the chunk's classes of g[b, j] w[j, d] -> part
//   DX_FINAL (b, d):        sum of the chunk partials in chunk order -> dx
//   DW       (j, d):        sum over the batch of g[b, j] x[b, d] -> dw (dL/dw^ in ArcFace)
//   DW_PROJ  (j):           dw_j = (dw_j - w^_j (w^_j . dw_j)) / ||w_j||, through the
//                           normalisation of the row, in place
#extension GL_GOOGLE_include_directive : require
layout(local_size_x_id = 0) in;
#include "train_common.glsl"
layout(set = 0, binding = 0) readonly buffer G { float g[]; };
layout(set = 0, binding = 1) readonly buffer W { float w[]; };
layout(set = 0, binding = 2) readonly buffer X { float x[]; };
layout(set = 0, binding = 3) readonly buffer Norms { float norms[]; };
layout(set = 0, binding = 4) buffer Part { float part[]; };
layout(set = 0, binding = 5) buffer Out { float o[]; };
layout(push_constant) uniform Push { uint batch, dim, classes, chunk_classes, chunks, mode; } p;

#define DX_PART 0u
#define DX_FINAL 1u
#define DW 2u
#define DW_PROJ 3u

void main()
{
  uint idx = flat_index();
  if (p.mode == DX_PART) {
    uint bd = p.batch * p.dim;
    if (idx >= p.chunks * bd)
      return;
    uint chunk = idx / bd;
    uint b = (idx % bd) / p.dim;
    uint d = idx % p.dim;
    uint j0 = chunk * p.chunk_classes;
    uint j1 = min(p.classes, j0 + p.chunk_classes);
    float acc = 0.0;
    for (uint j = j0; j < j1; j++)
      acc += g[b * p.classes + j] * w[j * p.dim + d];
    part[idx] = acc;
  } else if (p.mode == DX_FINAL) {
    uint bd = p.batch * p.dim;
    if (idx >= bd)
      return;
    float acc = 0.0;
    for (uint k = 0u; k < p.chunks; k++)
      acc += part[k * bd + idx];
    o[idx] = acc;
  } else if (p.mode == DW) {
    if (idx >= p.classes * p.dim)
      return;
    uint j = idx / p.dim;
    uint d = idx % p.dim;
    float acc = 0.0;
    for (uint b = 0u; b < p.batch; b++)
      acc += g[b * p.classes + j] * x[b * p.dim + d];
    o[idx] = acc;
  } else {
    if (idx >= p.classes)
      return;
    uint base = idx * p.dim;
    float dot = 0.0;
    for (uint d = 0u; d < p.dim; d++)
      dot += o[base + d] * w[base + d];
    float inv = 1.0 / norms[idx];
    for (uint d = 0u; d < p.dim; d++)
      o[base + d] = (o[base + d] - dot * w[base + d]) * inv;
  }
}
