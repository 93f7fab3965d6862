/* MTCNN detection, following expo-face-detection's MTCNN.kt, Box.kt and MyUtil.kt
 * step by step (see include/faceri/detect.h). The networks and every resampling run
 * on the device: the image is uploaded once, and each pyramid level and box crop is
 * an affine warp (Android's filtered Bitmap scaling: half-pixel-centre bilinear with
 * clamped edges, rounded to 8 bits) written straight into the network's input,
 * already transposed. The box logic runs on the host in the package's integer and
 * float32 arithmetic. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "faceri/align.h"
#include "faceri/detect.h"
#include "faceri/mtcnn.h"

#define RNET_CHUNK 256
#define ONET_CHUNK 64

typedef struct box {
  int b[4];
  float score, bbr[4], lm[10];
  int deleted;
} box;

typedef struct boxes {
  box *v;
  int n, cap;
} boxes;

struct fr_detector {
  fr_vk_context *ctx;
  fr_ops *ops;
  fr_mtcnn_ops *kern;
  fr_warp *warp;
  fr_mtcnn_graph g[3];
  fr_mtcnn_net *net[3];
  fr_vk_buffer image, items;
  uint64_t image_cap, items_cap;
  double seconds[3];
};

fr_detect_options fr_detect_defaults(void)
{
  return (fr_detect_options){.min_face = 0, .threshold = {0.6f, 0.7f, 0.7f}, .factor = 0.709f};
}

static double now(void)
{
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int fr_detector_create(fr_vk_context *ctx, const char *models_dir, fr_detector **out, fr_error *err)
{
  *out = NULL;
  fr_detector *d = calloc(1, sizeof(*d));
  if (!d)
    return fr_error_set(err, FR_ERR_NOMEM, "detector: out of memory");
  d->ctx = ctx;
  static const char *names[3] = {"pnet", "rnet", "onet"};
  int rc = fr_ops_create(ctx, &d->ops, err);
  if (!rc)
    rc = fr_mtcnn_ops_create(ctx, &d->kern, err);
  if (!rc)
    rc = fr_warp_create(ctx, &d->warp, err);
  for (int i = 0; i < 3 && !rc; i++) {
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s.tflite", models_dir, names[i]);
    rc = fr_mtcnn_import_tflite(path, &d->g[i], err);
    if (!rc && d->g[i].n_outputs != (i == 2 ? 3 : 2))
      rc = fr_error_set(err, FR_ERR_UNSUPPORTED, "%s: %d outputs, MTCNN's %s has %d", path, d->g[i].n_outputs,
                        names[i], i == 2 ? 3 : 2);
    if (!rc)
      rc = fr_mtcnn_net_create(ctx, d->ops, d->kern, &d->g[i], &d->net[i], err);
  }
  if (rc) {
    fr_detector_destroy(d);
    return rc;
  }
  *out = d;
  return FR_OK;
}

void fr_detector_destroy(fr_detector *d)
{
  if (!d)
    return;
  for (int i = 0; i < 3; i++) {
    fr_mtcnn_net_destroy(d->net[i]);
    fr_mtcnn_graph_free(&d->g[i]);
  }
  fr_vk_buffer_destroy(d->ctx, &d->image);
  fr_vk_buffer_destroy(d->ctx, &d->items);
  fr_warp_destroy(d->warp);
  fr_mtcnn_ops_destroy(d->kern);
  fr_ops_destroy(d->ops);
  free(d);
}

void fr_detector_stage_seconds(const fr_detector *d, double seconds[3])
{
  memcpy(seconds, d->seconds, sizeof(d->seconds));
}

/* Grows a host-visible-or-staged device buffer to at least `bytes`. */
static int ensure(fr_detector *d, fr_vk_buffer *b, uint64_t *cap, uint64_t bytes, fr_error *err)
{
  if (*cap >= bytes)
    return FR_OK;
  fr_vk_buffer_destroy(d->ctx, b);
  *cap = 0;
  uint64_t want = bytes + bytes / 4 + 256;
  int rc = fr_vk_buffer_create(d->ctx, want, b, err);
  if (!rc)
    *cap = want;
  return rc;
}

static int upload_image(fr_detector *d, const fr_image *img, fr_error *err)
{
  uint64_t bytes = (uint64_t)img->width * img->height * 3;
  int rc = ensure(d, &d->image, &d->image_cap, (bytes + 3) & ~(uint64_t)3, err);
  if (!rc)
    rc = fr_vk_buffer_upload(d->ctx, &d->image, 0, img->pixels, bytes, err);
  return rc;
}

/* ---- warps into a network input ---- */
typedef struct fill_job {
  fr_detector *d;
  const fr_warp_item *items;
  int count;
} fill_job;

static int fill_input(void *user, fr_vk_sequence *seq, fr_vk_arg input, int n, int h, int w, fr_error *err)
{
  fill_job *job = user;
  fr_detector *d = job->d;
  size_t words = (size_t)job->count * FR_WARP_ITEM_WORDS;
  uint32_t *packed = malloc(words * sizeof(uint32_t) + 4);
  if (!packed)
    return fr_error_set(err, FR_ERR_NOMEM, "detector: out of memory");
  fr_warp_pack_items(job->items, job->count, packed);
  int rc = ensure(d, &d->items, &d->items_cap, words * sizeof(uint32_t) + 4, err);
  if (!rc)
    rc = fr_vk_buffer_upload(d->ctx, &d->items, 0, packed, words * sizeof(uint32_t) + 4, err);
  free(packed);
  fr_warp_params p = {.out_w = w, .out_h = h, .count = job->count, .batch = n, .border = FR_WARP_CLAMP,
                      .mean = 127.5f, .std = 128.0f};
  if (!rc)
    rc = fr_warp_record(d->warp, seq, &p, (fr_vk_arg){&d->image, 0, 0}, (fr_vk_arg){&d->items, 0, 0}, input, err);
  return rc;
}

/* ---- the package's box logic ---- */
static int push_box(boxes *bs, const box *b)
{
  if (bs->n == bs->cap) {
    int cap = bs->cap ? bs->cap * 2 : 64;
    box *v = realloc(bs->v, (size_t)cap * sizeof(box));
    if (!v)
      return FR_ERR_NOMEM;
    bs->v = v, bs->cap = cap;
  }
  bs->v[bs->n++] = *b;
  return FR_OK;
}

static int bw(const box *b) { return b->b[2] - b->b[0] + 1; }
static int bh(const box *b) { return b->b[3] - b->b[1] + 1; }
static int area(const box *b) { return bw(b) * bh(b); }

/* MTCNN.nms: a box that loses stays the reference of its inner loop, as written. */
static void nms(boxes *bs, float threshold, int use_min)
{
  for (int i = 0; i < bs->n; i++) {
    box *a = &bs->v[i];
    if (a->deleted)
      continue;
    for (int j = i + 1; j < bs->n; j++) {
      box *b = &bs->v[j];
      if (b->deleted)
        continue;
      int x1 = a->b[0] > b->b[0] ? a->b[0] : b->b[0], y1 = a->b[1] > b->b[1] ? a->b[1] : b->b[1];
      int x2 = a->b[2] < b->b[2] ? a->b[2] : b->b[2], y2 = a->b[3] < b->b[3] ? a->b[3] : b->b[3];
      if (x2 < x1 || y2 < y1)
        continue;
      int inter = (x2 - x1 + 1) * (y2 - y1 + 1);
      int den = use_min ? (area(a) < area(b) ? area(a) : area(b)) : area(a) + area(b) - inter;
      float iou = (float)inter / (float)den;
      if (iou >= threshold) {
        if (a->score > b->score)
          b->deleted = 1;
        else
          a->deleted = 1;
      }
    }
  }
}

static void calibrate(box *b)
{
  int w = bw(b), h = bh(b);
  for (int i = 0; i < 4; i++) {
    float v = (float)b->b[i] + (float)(i % 2 ? h : w) * b->bbr[i];
    b->b[i] = fabsf(v) < 2e9f ? (int)v : 0; /* Kotlin's toInt() saturates; a wild box is dropped later */
    b->bbr[i] = 0.0f;
  }
}

static void square_limit(box *b, int w, int h)
{
  int bw_ = bw(b), bh_ = bh(b);
  if (bw_ > bh_) {
    b->b[1] -= (bw_ - bh_) / 2;
    b->b[3] += (bw_ - bh_ + 1) / 2;
  } else {
    b->b[0] -= (bh_ - bw_) / 2;
    b->b[2] += (bh_ - bw_ + 1) / 2;
  }
  if (b->b[0] < 0 || b->b[1] < 0) {
    int len = -b->b[0] > -b->b[1] ? -b->b[0] : -b->b[1];
    b->b[0] += len, b->b[1] += len;
  }
  if (b->b[2] >= w || b->b[3] >= h) {
    int len = b->b[2] - w + 1 > b->b[3] - h + 1 ? b->b[2] - w + 1 : b->b[3] - h + 1;
    b->b[2] -= len, b->b[3] -= len;
  }
}

static void compact(boxes *bs)
{
  int k = 0;
  for (int i = 0; i < bs->n; i++)
    if (!bs->v[i].deleted)
      bs->v[k++] = bs->v[i];
  bs->n = k;
}

/* ---- stages ---- */
static int pnet_level(fr_detector *d, const fr_image *img, float scale, float threshold, boxes *out,
                      fr_error *err)
{
  /* MyUtil.bitmapResize: Bitmap.createBitmap rounds the scaled size with Math.round */
  int rw = (int)floorf((float)img->width * scale + 0.5f), rh = (int)floorf((float)img->height * scale + 0.5f);
  const fr_mtcnn_graph *g = &d->g[0];
  int oh[64], ow[64], oc[64];
  fr_error probe = {0};
  /* the transposed input: rows are the resized image's columns */
  if (fr_mtcnn_shapes(g, rw, rh, oh, ow, oc, &probe) != FR_OK)
    return FR_OK; /* smaller than the network's window: the package's loop ends before this */
  float inv = 1.0f / scale, off = 0.5f / scale - 0.5f;
  fr_warp_item it = {{0.0f, inv, off, inv, 0.0f, off}, 0, (uint32_t)img->width, (uint32_t)img->height};
  fill_job job = {d, &it, 1};
  int po = g->outputs[0], ro = g->outputs[1];
  size_t cells = (size_t)oh[po] * ow[po];
  float *prob = malloc(cells * 2 * sizeof(float)), *reg = malloc(cells * 4 * sizeof(float));
  float *outs[2] = {prob, reg};
  int rc = prob && reg ? FR_OK : fr_error_set(err, FR_ERR_NOMEM, "detector: out of memory");
  if (!rc && (oc[po] != 2 || oc[ro] != 4 || oh[ro] != oh[po] || ow[ro] != ow[po]))
    rc = fr_error_set(err, FR_ERR_UNSUPPORTED, "pnet: outputs are not [.., 2] and [.., 4] maps");
  if (!rc)
    rc = fr_mtcnn_net_forward(d->net[0], 1, rw, rh, NULL, fill_input, &job, outs, err);
  /* net rows are x (outW of them), columns y: the package transposes back and walks y, then x */
  int out_w = oh[po], out_h = ow[po];
  boxes cur = {0};
  for (int y = 0; y < out_h && !rc; y++)
    for (int x = 0; x < out_w && !rc; x++) {
      size_t cell = (size_t)x * out_h + y;
      float score = prob[cell * 2 + 1];
      if (!(score > threshold))
        continue;
      box b = {.score = score};
      b.b[0] = (int)rintf((float)(x * 2) / scale);
      b.b[1] = (int)rintf((float)(y * 2) / scale);
      b.b[2] = (int)rintf((float)(x * 2 + 11) / scale);
      b.b[3] = (int)rintf((float)(y * 2 + 11) / scale);
      memcpy(b.bbr, reg + cell * 4, sizeof(b.bbr));
      if (push_box(&cur, &b))
        rc = fr_error_set(err, FR_ERR_NOMEM, "detector: out of memory for boxes");
    }
  if (!rc) {
    nms(&cur, 0.5f, 0);
    for (int i = 0; i < cur.n && !rc; i++)
      if (!cur.v[i].deleted && push_box(out, &cur.v[i]))
        rc = fr_error_set(err, FR_ERR_NOMEM, "detector: out of memory for boxes");
  }
  free(cur.v);
  free(prob);
  free(reg);
  return rc;
}

/* RNet (stage 1) or ONet (stage 2) on every box: crops warped from the image,
 * transposed, in chunks. Boxes whose crop leaves the image are dropped first. */
static int refine(fr_detector *d, const fr_image *img, boxes *bs, int stage, fr_error *err)
{
  int size = stage == 1 ? 24 : 48, chunk = stage == 1 ? RNET_CHUNK : ONET_CHUNK;
  int k = 0;
  for (int i = 0; i < bs->n; i++) {
    const box *b = &bs->v[i];
    if (b->b[0] >= 0 && b->b[1] >= 0 && b->b[2] < img->width && b->b[3] < img->height && bw(b) > 0 && bh(b) > 0)
      bs->v[k++] = *b;
  }
  bs->n = k;
  fr_warp_item *items = malloc(sizeof(fr_warp_item) * (size_t)chunk);
  float *out[3];
  out[0] = malloc(sizeof(float) * 2 * (size_t)chunk);
  out[1] = malloc(sizeof(float) * 4 * (size_t)chunk);
  out[2] = malloc(sizeof(float) * 10 * (size_t)chunk);
  int rc = items && out[0] && out[1] && out[2] ? FR_OK : fr_error_set(err, FR_ERR_NOMEM, "detector: out of memory");
  for (int start = 0; start < bs->n && !rc; start += chunk) {
    int n = bs->n - start < chunk ? bs->n - start : chunk;
    for (int i = 0; i < n; i++) {
      const box *b = &bs->v[start + i];
      /* MyUtil.cropAndResize, then transposeImage: net row i is crop column i */
      float sw = (float)size / (float)bw(b), sh = (float)size / (float)bh(b);
      items[i] = (fr_warp_item){{0.0f, 1.0f / sw, (float)b->b[0] + 0.5f / sw - 0.5f, 1.0f / sh, 0.0f,
                                 (float)b->b[1] + 0.5f / sh - 0.5f},
                                0, (uint32_t)img->width, (uint32_t)img->height};
    }
    fill_job job = {d, items, n};
    rc = fr_mtcnn_net_forward(d->net[stage], n, size, size, NULL, fill_input, &job, out, err);
    for (int i = 0; i < n && !rc; i++) {
      box *b = &bs->v[start + i];
      b->score = out[0][i * 2 + 1];
      memcpy(b->bbr, out[1] + i * 4, sizeof(b->bbr));
      if (stage == 2)
        for (int j = 0; j < 5; j++) {
          b->lm[j] = (float)b->b[0] + out[2][i * 10 + j] * (float)bw(b);
          b->lm[j + 5] = (float)b->b[1] + out[2][i * 10 + j + 5] * (float)bh(b);
        }
    }
  }
  free(items);
  for (int i = 0; i < 3; i++)
    free(out[i]);
  return rc;
}

int fr_detector_detect(fr_detector *d, const fr_image *img, const fr_detect_options *opt, fr_face **faces, int *n,
                       fr_error *err)
{
  *faces = NULL;
  *n = 0;
  fr_detect_options o = opt ? *opt : fr_detect_defaults();
  if (!img || !img->pixels || img->width < 1 || img->height < 1 || img->channels != 3)
    return fr_error_set(err, FR_ERR_INVALID, "detect: not an RGB image");
  if (!(o.factor > 0.05f && o.factor < 0.99f) || o.min_face < 0)
    return fr_error_set(err, FR_ERR_INVALID, "detect: pyramid factor %g or minimum face %d out of range",
                        (double)o.factor, o.min_face);
  int min_face = o.min_face ? o.min_face : (int)((float)img->width * 0.2f);
  if (min_face < 12)
    min_face = 12; /* smaller faces need upscaled levels: memory grows with 1/size^2 (docs/DETECTION.md) */
  int rc = upload_image(d, img, err);
  boxes bs = {0};
  double t0 = now();
  int wh_min = img->width < img->height ? img->width : img->height;
  for (float cur = (float)min_face; cur <= (float)wh_min && !rc; cur /= o.factor)
    rc = pnet_level(d, img, 12.0f / cur, o.threshold[0], &bs, err);
  double t1 = now();
  if (!rc) {
    nms(&bs, 0.7f, 0);
    for (int i = 0; i < bs.n; i++)
      calibrate(&bs.v[i]);
    compact(&bs);
    for (int i = 0; i < bs.n; i++)
      square_limit(&bs.v[i], img->width, img->height);
    rc = refine(d, img, &bs, 1, err);
  }
  if (!rc) {
    for (int i = 0; i < bs.n; i++)
      bs.v[i].deleted = bs.v[i].score < o.threshold[1];
    nms(&bs, 0.7f, 0);
    for (int i = 0; i < bs.n; i++)
      calibrate(&bs.v[i]);
    compact(&bs);
    for (int i = 0; i < bs.n; i++)
      square_limit(&bs.v[i], img->width, img->height);
  }
  double t2 = now();
  if (!rc)
    rc = refine(d, img, &bs, 2, err);
  if (!rc) {
    for (int i = 0; i < bs.n; i++) {
      bs.v[i].deleted = bs.v[i].score < o.threshold[2];
      calibrate(&bs.v[i]);
    }
    nms(&bs, 0.7f, 1);
    compact(&bs);
  }
  d->seconds[0] += t1 - t0;
  d->seconds[1] += t2 - t1;
  d->seconds[2] += now() - t2;
  if (!rc && bs.n > 0) {
    *faces = malloc(sizeof(fr_face) * (size_t)bs.n);
    if (!*faces)
      rc = fr_error_set(err, FR_ERR_NOMEM, "detector: out of memory");
    for (int i = 0; i < bs.n && !rc; i++) {
      memcpy((*faces)[i].box, bs.v[i].b, sizeof(bs.v[i].b));
      (*faces)[i].score = bs.v[i].score;
      memcpy((*faces)[i].landmarks, bs.v[i].lm, sizeof(bs.v[i].lm));
    }
    if (!rc)
      *n = bs.n;
  }
  free(bs.v);
  return rc;
}

int fr_detector_onet(fr_detector *d, const fr_image *img, const int b4[4], fr_face *face, fr_error *err)
{
  if (!img || !img->pixels || img->channels != 3)
    return fr_error_set(err, FR_ERR_INVALID, "onet: not an RGB image");
  box b = {.b = {b4[0], b4[1], b4[2], b4[3]}};
  square_limit(&b, img->width, img->height);
  boxes bs = {&b, 1, 1};
  int rc = upload_image(d, img, err);
  if (!rc)
    rc = refine(d, img, &bs, 2, err);
  if (!rc && bs.n == 0)
    return fr_error_set(err, FR_ERR_INVALID, "onet: box %d,%d,%d,%d does not fit the %dx%d image", b4[0], b4[1],
                        b4[2], b4[3], img->width, img->height);
  if (!rc) {
    calibrate(&b);
    memcpy(face->box, b.b, sizeof(b.b));
    face->score = b.score;
    memcpy(face->landmarks, b.lm, sizeof(b.lm));
  }
  return rc;
}
