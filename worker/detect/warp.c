/* The affine warp kernel (shaders/align_warp.comp), its reference, and the similarity
 * estimate that produces the alignment matrices. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "faceri/align.h"

#define WG 64u

const float fr_arcface_template[5][2] = {
    {38.2946f, 51.6963f}, {73.5318f, 51.5014f}, {56.0252f, 71.7366f}, {41.5493f, 92.3655f}, {70.7299f, 92.2041f}};

int fr_similarity_umeyama(const float (*src)[2], const float (*dst)[2], int n, double m[6], fr_error *err)
{
  if (n < 2)
    return fr_error_set(err, FR_ERR_INVALID, "similarity: %d points (at least 2 needed)", n);
  double ms[2] = {0, 0}, md[2] = {0, 0};
  for (int i = 0; i < n; i++)
    for (int k = 0; k < 2; k++) {
      if (!isfinite(src[i][k]) || !isfinite(dst[i][k]))
        return fr_error_set(err, FR_ERR_INVALID, "similarity: point %d is not finite", i);
      ms[k] += src[i][k] / (double)n;
      md[k] += dst[i][k] / (double)n;
    }
  /* Umeyama: cov = sum (d - md)(s - ms)^T = U D V^T, R = U S V^T with S = diag(1, -1)
   * when det(cov) < 0, c = tr(D S) / var(s). In 2-D this is R = rotation by
   * atan2(cov10 - cov01, cov00 + cov11) and c * R = [a -b; b a] below, whatever the
   * sign of det(cov): the check is what keeps R a rotation. */
  double a = 0, b = 0, var = 0;
  for (int i = 0; i < n; i++) {
    double sx = src[i][0] - ms[0], sy = src[i][1] - ms[1];
    double dx = dst[i][0] - md[0], dy = dst[i][1] - md[1];
    a += dx * sx + dy * sy;
    b += dy * sx - dx * sy;
    var += sx * sx + sy * sy;
  }
  if (!(var > 1e-12))
    return fr_error_set(err, FR_ERR_INVALID, "similarity: the source points coincide");
  a /= var;
  b /= var;
  m[0] = a, m[1] = -b, m[2] = md[0] - (a * ms[0] - b * ms[1]);
  m[3] = b, m[4] = a, m[5] = md[1] - (b * ms[0] + a * ms[1]);
  return FR_OK;
}

int fr_affine_invert(const double m[6], double inv[6], fr_error *err)
{
  double det = m[0] * m[4] - m[1] * m[3];
  if (!isfinite(det) || fabs(det) < 1e-12)
    return fr_error_set(err, FR_ERR_INVALID, "affine matrix is singular (det %g)", det);
  inv[0] = m[4] / det, inv[1] = -m[1] / det;
  inv[3] = -m[3] / det, inv[4] = m[0] / det;
  inv[2] = -(inv[0] * m[2] + inv[1] * m[5]);
  inv[5] = -(inv[3] * m[2] + inv[4] * m[5]);
  return FR_OK;
}

struct fr_warp {
  fr_vk_context *ctx;
  fr_vk_kernel *kernel;
};

typedef struct warp_push {
  uint32_t out_w, out_h, count, batch, border;
  float mean, std;
} warp_push;

int fr_warp_create(fr_vk_context *ctx, fr_warp **out, fr_error *err)
{
  *out = calloc(1, sizeof(**out));
  if (!*out)
    return fr_error_set(err, FR_ERR_NOMEM, "warp: out of memory");
  (*out)->ctx = ctx;
  const fr_vk_device_info *info = fr_vk_context_device(ctx);
  uint32_t wg = WG < info->max_workgroup_size[0] ? WG : info->max_workgroup_size[0];
  const fr_vk_binding_kind st[3] = {FR_BIND_STORAGE, FR_BIND_STORAGE, FR_BIND_STORAGE};
  int rc = fr_vk_kernel_create(ctx, "align_warp", 3, st, sizeof(warp_push), &wg, 1, &(*out)->kernel, err);
  if (rc) {
    free(*out);
    *out = NULL;
  }
  return rc;
}

void fr_warp_destroy(fr_warp *w)
{
  if (!w)
    return;
  fr_vk_kernel_destroy(w->ctx, w->kernel);
  free(w);
}

void fr_warp_pack_items(const fr_warp_item *items, int count, uint32_t *words)
{
  for (int i = 0; i < count; i++) {
    uint32_t *o = words + (size_t)i * FR_WARP_ITEM_WORDS;
    memcpy(o, items[i].m, 6 * sizeof(float));
    o[6] = items[i].offset, o[7] = items[i].width, o[8] = items[i].height;
  }
}

int fr_warp_record(fr_warp *w, fr_vk_sequence *seq, const fr_warp_params *p, fr_vk_arg images, fr_vk_arg items,
                   fr_vk_arg out, fr_error *err)
{
  if (p->out_w < 1 || p->out_h < 1 || p->count < 0 || p->batch < p->count || p->batch < 1 || !(p->std != 0.0f))
    return fr_error_set(err, FR_ERR_INVALID, "warp: bad parameters (%dx%d, %d of %d items)", p->out_w, p->out_h,
                        p->count, p->batch);
  warp_push push = {(uint32_t)p->out_w, (uint32_t)p->out_h, (uint32_t)p->count, (uint32_t)p->batch,
                    (uint32_t)p->border, p->mean, p->std};
  fr_vk_arg args[3] = {images, items, out};
  uint64_t groups = ((uint64_t)p->batch * p->out_h * p->out_w + WG - 1) / WG;
  uint32_t max_x = fr_vk_context_device(w->ctx)->max_workgroup_count[0];
  uint32_t gx = groups <= max_x ? (uint32_t)groups : max_x;
  return fr_vk_sequence_dispatch(seq, w->kernel, args, &push, gx, (uint32_t)((groups + gx - 1) / gx), 1, NULL, err);
}

static float texel(const fr_warp_params *p, const uint8_t *img, const fr_warp_item *it, int x, int y, int c)
{
  int w = (int)it->width, h = (int)it->height;
  if (p->border == FR_WARP_ZERO && (x < 0 || y < 0 || x >= w || y >= h))
    return 0.0f;
  x = x < 0 ? 0 : x >= w ? w - 1 : x;
  y = y < 0 ? 0 : y >= h ? h - 1 : y;
  return (float)img[it->offset + ((size_t)y * w + x) * 3 + c];
}

void fr_ref_warp(const fr_warp_params *p, const uint8_t *images, const fr_warp_item *items, float *out)
{
  for (int b = 0; b < p->batch; b++)
    for (int y = 0; y < p->out_h; y++)
      for (int x = 0; x < p->out_w; x++) {
        float *o = out + (((size_t)b * p->out_h + y) * p->out_w + x) * 3;
        if (b >= p->count) {
          o[0] = o[1] = o[2] = 0.0f;
          continue;
        }
        const fr_warp_item *it = &items[b];
        float sx = it->m[0] * (float)x + it->m[1] * (float)y + it->m[2];
        float sy = it->m[3] * (float)x + it->m[4] * (float)y + it->m[5];
        sx = fminf(fmaxf(sx, -1.0e6f), 1.0e6f);
        sy = fminf(fmaxf(sy, -1.0e6f), 1.0e6f);
        float x0f = floorf(sx), y0f = floorf(sy), ax = sx - x0f, ay = sy - y0f;
        int x0 = (int)x0f, y0 = (int)y0f;
        for (int c = 0; c < 3; c++) {
          float top = texel(p, images, it, x0, y0, c) * (1.0f - ax) + texel(p, images, it, x0 + 1, y0, c) * ax;
          float bot =
              texel(p, images, it, x0, y0 + 1, c) * (1.0f - ax) + texel(p, images, it, x0 + 1, y0 + 1, c) * ax;
          float v = fminf(fmaxf(floorf(top * (1.0f - ay) + bot * ay + 0.5f), 0.0f), 255.0f);
          o[c] = (v - p->mean) / p->std;
        }
      }
}
