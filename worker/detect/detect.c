/* MTCNN detection, following expo-face-detection's MTCNN.kt, Box.kt and MyUtil.kt
 * step by step (see include/faceri/detect.h). The networks and every resampling run
 * on the device: the image is uploaded once, and each pyramid level and box crop is
 * an affine warp (Android's filtered Bitmap scaling: half-pixel-centre bilinear with
 * clamped edges, rounded to 8 bits) written straight into the network's input,
 * already transposed. An image costs three submissions: every pyramid level at once,
 * then RNet and ONet on all boxes. The box logic runs on the host in the package's
 * integer and float32 arithmetic. */
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
  fr_vk_sequence *seq; /* the pyramid's submission */
  fr_detect_stats stats;
};

fr_detect_options fr_detect_defaults(void)
{
  return (fr_detect_options){.min_face = 0, .max_face = 0, .threshold = {0.6f, 0.7f, 0.7f}, .factor = 0.709f};
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
  if (!rc)
    rc = fr_vk_sequence_create(ctx, 0, &d->seq, err);
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
  fr_vk_sequence_destroy(d->seq);
  fr_vk_buffer_destroy(d->ctx, &d->image);
  fr_vk_buffer_destroy(d->ctx, &d->items);
  fr_warp_destroy(d->warp);
  fr_mtcnn_ops_destroy(d->kern);
  fr_ops_destroy(d->ops);
  free(d);
}

void fr_detector_stats(const fr_detector *d, fr_detect_stats *out) { *out = d->stats; }
void fr_detector_reset_stats(fr_detector *d) { memset(&d->stats, 0, sizeof(d->stats)); }

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
  int count;       /* warp items, already in d->items at byte `offset` */
  uint64_t offset;
} fill_job;

/* Packs items into d->items at byte offsets slot * stride (stride 0: packed together). */
static int upload_items(fr_detector *d, const fr_warp_item *items, int count, uint64_t stride, fr_error *err)
{
  uint64_t one = FR_WARP_ITEM_WORDS * sizeof(uint32_t), step = stride ? stride : one;
  uint64_t bytes = step * (uint64_t)(count - 1) + one + 4;
  uint8_t *packed = calloc(1, (size_t)bytes);
  if (!packed)
    return fr_error_set(err, FR_ERR_NOMEM, "detector: out of memory");
  if (stride)
    for (int i = 0; i < count; i++)
      fr_warp_pack_items(items + i, 1, (uint32_t *)(void *)(packed + step * (uint64_t)i));
  else
    fr_warp_pack_items(items, count, (uint32_t *)(void *)packed);
  int rc = ensure(d, &d->items, &d->items_cap, bytes, err);
  if (!rc)
    rc = fr_vk_buffer_upload(d->ctx, &d->items, 0, packed, bytes, err);
  free(packed);
  return rc;
}

static int fill_input(void *user, fr_vk_sequence *seq, fr_vk_arg input, int n, int h, int w, fr_error *err)
{
  fill_job *job = user;
  fr_detector *d = job->d;
  fr_warp_params p = {.out_w = w, .out_h = h, .count = job->count, .batch = n, .border = FR_WARP_CLAMP,
                      .mean = 127.5f, .std = 128.0f};
  return fr_warp_record(d->warp, seq, &p, (fr_vk_arg){&d->image, 0, 0}, (fr_vk_arg){&d->items, job->offset, 0},
                        input, err);
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
typedef struct level {
  float scale;
  int rw, rh;       /* the resized image */
  int out_w, out_h; /* PNet's map (of the untransposed image) */
} level;

/* PNet's boxes of one level, in the package's order, after its per-level NMS. */
static int pnet_boxes(const level *lv, const float *prob, const float *reg, float threshold, boxes *out,
                      fr_error *err)
{
  boxes cur = {0};
  int rc = FR_OK;
  /* net rows are x (out_w of them), columns y: the package transposes back and walks y, then x */
  for (int y = 0; y < lv->out_h && !rc; y++)
    for (int x = 0; x < lv->out_w && !rc; x++) {
      size_t cell = (size_t)x * lv->out_h + y;
      float score = prob[cell * 2 + 1];
      if (!(score > threshold))
        continue;
      box b = {.score = score};
      b.b[0] = (int)rintf((float)(x * 2) / lv->scale);
      b.b[1] = (int)rintf((float)(y * 2) / lv->scale);
      b.b[2] = (int)rintf((float)(x * 2 + 11) / lv->scale);
      b.b[3] = (int)rintf((float)(y * 2 + 11) / lv->scale);
      memcpy(b.bbr, reg + cell * 4, sizeof(b.bbr));
      rc = push_box(&cur, &b);
    }
  if (!rc) {
    nms(&cur, 0.5f, 0);
    for (int i = 0; i < cur.n && !rc; i++)
      if (!cur.v[i].deleted)
        rc = push_box(out, &cur.v[i]);
  }
  free(cur.v);
  return rc ? fr_error_set(err, FR_ERR_NOMEM, "detector: out of memory for boxes") : FR_OK;
}

/* PNet over up to FR_MTCNN_MAX_PENDING levels in one submission: each level is a warp
 * of the uploaded image straight into its input. */
static int pnet_levels(fr_detector *d, const fr_image *img, const level *lv, int count, float threshold,
                       boxes *out, fr_error *err)
{
  uint64_t align = fr_vk_context_device(d->ctx)->min_storage_offset_alignment;
  uint64_t stride = FR_WARP_ITEM_WORDS * sizeof(uint32_t);
  if (align > 1)
    stride = (stride + align - 1) / align * align;
  fr_warp_item items[FR_MTCNN_MAX_PENDING];
  for (int i = 0; i < count; i++) {
    float inv = 1.0f / lv[i].scale, off = 0.5f / lv[i].scale - 0.5f;
    items[i] = (fr_warp_item){{0.0f, inv, off, inv, 0.0f, off}, 0, (uint32_t)img->width, (uint32_t)img->height};
  }
  size_t cells = 0;
  for (int i = 0; i < count; i++)
    cells = cells > (size_t)lv[i].out_w * lv[i].out_h ? cells : (size_t)lv[i].out_w * lv[i].out_h;
  float *prob = malloc(cells * 2 * sizeof(float)), *reg = malloc(cells * 4 * sizeof(float));
  float *outs[2] = {prob, reg};
  fill_job jobs[FR_MTCNN_MAX_PENDING];
  int rc = prob && reg ? FR_OK : fr_error_set(err, FR_ERR_NOMEM, "detector: out of memory");
  if (!rc)
    rc = upload_items(d, items, count, stride, err);
  if (!rc)
    rc = fr_vk_sequence_begin(d->seq, err);
  int recorded = 0;
  for (int i = 0; i < count && !rc; i++) {
    jobs[i] = (fill_job){d, 1, stride * (uint64_t)i};
    /* the transposed input: rows are the resized image's columns */
    rc = fr_mtcnn_net_record(d->net[0], d->seq, 1, lv[i].rw, lv[i].rh, fill_input, &jobs[i], err);
    recorded += !rc;
  }
  if (!rc)
    rc = fr_vk_sequence_end(d->seq, err);
  if (!rc)
    rc = fr_vk_sequence_run(d->seq, err);
  d->stats.submissions += !rc;
  /* read every recorded level, even after an error, so no plan stays pending */
  for (int i = 0; i < recorded; i++) {
    int r2 = fr_mtcnn_net_read(d->net[0], 1, lv[i].rw, lv[i].rh, outs, rc ? NULL : err);
    rc = rc ? rc : r2;
    if (!rc)
      rc = pnet_boxes(&lv[i], prob, reg, threshold, out, err);
  }
  free(prob);
  free(reg);
  return rc;
}

/* The package's pyramid: levels from min_face up while the face fits the image,
 * here also up to max_face. Levels smaller than PNet's window end the loop. */
static int pyramid(const fr_detector *d, const fr_image *img, int min_face, int max_face, float factor, level **out,
                   int *count, fr_error *err)
{
  const fr_mtcnn_graph *g = &d->g[0];
  int n = 0, cap = 0;
  level *v = NULL;
  int wh_min = img->width < img->height ? img->width : img->height;
  float top = (float)(max_face > 0 && max_face < wh_min ? max_face : wh_min);
  int *oh = malloc(sizeof(int) * 3 * (size_t)g->n_nodes);
  if (!oh)
    return fr_error_set(err, FR_ERR_NOMEM, "detector: out of memory");
  int *ow = oh + g->n_nodes, *oc = oh + 2 * g->n_nodes;
  int rc = FR_OK;
  for (float cur = (float)min_face; cur <= top && !rc; cur /= factor) {
    float scale = 12.0f / cur;
    /* MyUtil.bitmapResize: Bitmap.createBitmap rounds the scaled size with Math.round */
    int rw = (int)floorf((float)img->width * scale + 0.5f), rh = (int)floorf((float)img->height * scale + 0.5f);
    fr_error probe = {0};
    if (fr_mtcnn_shapes(g, rw, rh, oh, ow, oc, &probe) != FR_OK)
      break; /* smaller than the network's window: the package's loop ends before this */
    int po = g->outputs[0], ro = g->outputs[1];
    if (oc[po] != 2 || oc[ro] != 4 || oh[ro] != oh[po] || ow[ro] != ow[po]) {
      rc = fr_error_set(err, FR_ERR_UNSUPPORTED, "pnet: outputs are not [.., 2] and [.., 4] maps");
      break;
    }
    if (n == cap) {
      cap = cap ? 2 * cap : 16;
      level *nv = realloc(v, sizeof(level) * (size_t)cap);
      if (!nv) {
        rc = fr_error_set(err, FR_ERR_NOMEM, "detector: out of memory");
        break;
      }
      v = nv;
    }
    /* transposed network: its rows are the image's x */
    v[n++] = (level){scale, rw, rh, oh[po], ow[po]};
  }
  free(oh);
  if (rc) {
    free(v);
    return rc;
  }
  *out = v;
  *count = n;
  return FR_OK;
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
  d->stats.boxes[stage] += k;
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
    fill_job job = {d, n, 0};
    rc = upload_items(d, items, n, 0, err);
    if (!rc)
      rc = fr_mtcnn_net_forward(d->net[stage], n, size, size, NULL, fill_input, &job, out, err);
    d->stats.submissions += !rc;
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
  if (!(o.factor > 0.05f && o.factor < 0.99f) || o.min_face < 0 || o.max_face < 0)
    return fr_error_set(err, FR_ERR_INVALID, "detect: pyramid factor %g or face size range %d..%d out of range",
                        (double)o.factor, o.min_face, o.max_face);
  int min_face = o.min_face ? o.min_face : (int)((float)img->width * 0.2f);
  if (min_face < 12)
    min_face = 12; /* smaller faces need upscaled levels: memory grows with 1/size^2 (docs/DETECTION.md) */
  level *lv = NULL;
  int n_levels = 0;
  int rc = pyramid(d, img, min_face, o.max_face, o.factor, &lv, &n_levels, err);
  if (!rc)
    rc = upload_image(d, img, err);
  boxes bs = {0};
  double t0 = now();
  for (int i = 0; i < n_levels && !rc; i += FR_MTCNN_MAX_PENDING) {
    int count = n_levels - i < FR_MTCNN_MAX_PENDING ? n_levels - i : FR_MTCNN_MAX_PENDING;
    rc = pnet_levels(d, img, lv + i, count, o.threshold[0], &bs, err);
  }
  free(lv);
  d->stats.images++;
  d->stats.levels += n_levels;
  d->stats.boxes[0] += bs.n;
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
  d->stats.seconds[0] += t1 - t0;
  d->stats.seconds[1] += t2 - t1;
  d->stats.seconds[2] += now() - t2;
  d->stats.faces += rc ? 0 : bs.n;
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
