/* Host side of the classification losses: argument checks, workspace layout, and the
 * dispatch sequence
 *   [normalise W] -> cosines -> softmax CE rows (+ dL/dc) -> mean loss
 *                                       \-> dx (two stages over class chunks), dW (+ projection)
 * Kernels are plain storage-buffer loops (correctness and bit-identical reruns first);
 * the cosine GEMM is the one to move onto the fast texel-buffer GEMM when C grows. */
#include <math.h>
#include <stdlib.h>

#include "faceri/train_loss.h"

#define WG 64u
/* Classes per dx partial: bounded so that no invocation loops past lavapipe's ~65k
 * iteration limiter (DESIGN §3), and small enough to spread the work. */
#define DX_CHUNK 1024u
#define MAX_BATCH 16384

enum { DX_PART, DX_FINAL, DW, DW_PROJ };

struct fr_loss {
  fr_vk_context *ctx;
  fr_vk_kernel *norm, *logits, *softmax, *bwd;
  uint32_t wg, wg_tree;
  uint64_t align_floats;
};

typedef struct softmax_push {
  uint32_t batch, classes, arcface, easy_margin, backward, stage;
  float s, cos_m, sin_m, th, mm;
} softmax_push;

typedef struct bwd_push {
  uint32_t batch, dim, classes, chunk_classes, chunks, mode;
} bwd_push;

/* Segment offsets (floats) in the workspace. */
typedef struct layout {
  uint64_t wn, norms, cos, g, rows, part, total;
  uint32_t chunks;
} layout;

fr_loss_params fr_loss_arcface_defaults(int batch, int dim, int classes)
{
  return (fr_loss_params){FR_LOSS_ARCFACE, batch, dim, classes, 64.0f, 0.5f, 0};
}

int fr_loss_create(fr_vk_context *ctx, fr_loss **out, fr_error *err)
{
  *out = NULL;
  fr_loss *l = calloc(1, sizeof(*l));
  if (!l)
    return fr_error_set(err, FR_ERR_NOMEM, "loss: out of memory");
  l->ctx = ctx;
  const fr_vk_device_info *info = fr_vk_context_device(ctx);
  uint32_t lim = info->max_workgroup_size[0] < info->max_workgroup_invocations ? info->max_workgroup_size[0]
                                                                               : info->max_workgroup_invocations;
  l->wg = WG < lim ? WG : lim;
  /* The softmax trees halve the workgroup: a power of two. */
  l->wg_tree = 1;
  while (l->wg_tree * 2 <= l->wg)
    l->wg_tree *= 2;
  uint64_t a = info->min_storage_offset_alignment / sizeof(float);
  l->align_floats = a ? a : 1;
  fr_vk_binding_kind st[FR_VK_MAX_BINDINGS];
  for (int i = 0; i < FR_VK_MAX_BINDINGS; i++)
    st[i] = FR_BIND_STORAGE;
  int rc = fr_vk_kernel_create(ctx, "train_arcface_norm", 3, st, 8, &l->wg, 1, &l->norm, err);
  if (!rc)
    rc = fr_vk_kernel_create(ctx, "train_arcface_logits", 3, st, 12, &l->wg, 1, &l->logits, err);
  if (!rc)
    rc = fr_vk_kernel_create(ctx, "train_softmax_ce", 5, st, sizeof(softmax_push), &l->wg_tree, 1, &l->softmax, err);
  if (!rc)
    rc = fr_vk_kernel_create(ctx, "train_arcface_bwd", 6, st, sizeof(bwd_push), &l->wg, 1, &l->bwd, err);
  if (rc) {
    fr_loss_destroy(l);
    return rc;
  }
  *out = l;
  return FR_OK;
}

void fr_loss_destroy(fr_loss *l)
{
  if (!l)
    return;
  fr_vk_kernel_destroy(l->ctx, l->norm);
  fr_vk_kernel_destroy(l->ctx, l->logits);
  fr_vk_kernel_destroy(l->ctx, l->softmax);
  fr_vk_kernel_destroy(l->ctx, l->bwd);
  free(l);
}

static uint64_t align_up(uint64_t n, uint64_t a) { return (n + a - 1) / a * a; }

static layout make_layout(const fr_loss *l, const fr_loss_params *p)
{
  layout L = {0};
  uint64_t a = l->align_floats, B = (uint64_t)p->batch, D = (uint64_t)p->dim, C = (uint64_t)p->classes;
  L.chunks = (uint32_t)((C + DX_CHUNK - 1) / DX_CHUNK);
  uint64_t at = 0;
  L.wn = at;
  at = align_up(at + (p->kind == FR_LOSS_ARCFACE ? C * D : 0), a);
  L.norms = at;
  at = align_up(at + C, a);
  L.cos = at;
  at = align_up(at + B * C, a);
  L.g = at;
  at = align_up(at + B * C, a);
  L.rows = at;
  at = align_up(at + B, a);
  L.part = at;
  L.total = at + (uint64_t)L.chunks * B * D;
  return L;
}

static int check_params(const fr_loss_params *p, fr_error *err)
{
  if (!p || p->batch <= 0 || p->dim <= 0 || p->classes <= 0)
    return fr_error_set(err, FR_ERR_INVALID, "loss: shape batch %d, dim %d, classes %d", p ? p->batch : 0,
                        p ? p->dim : 0, p ? p->classes : 0);
  if (p->batch > MAX_BATCH || (int64_t)p->classes * p->dim >= INT32_MAX ||
      (int64_t)p->batch * p->classes >= INT32_MAX || (int64_t)p->batch * p->dim * ((p->classes + DX_CHUNK - 1) / DX_CHUNK) >= INT32_MAX)
    return fr_error_set(err, FR_ERR_UNSUPPORTED, "loss: shape batch %d, dim %d, classes %d is too large for one call",
                        p->batch, p->dim, p->classes);
  /* A loop over the dimension runs in one invocation: keep it under the loop limiter. */
  if (p->dim > 65536)
    return fr_error_set(err, FR_ERR_UNSUPPORTED, "loss: embedding dimension %d exceeds 65536", p->dim);
  if (p->kind != FR_LOSS_ARCFACE && p->kind != FR_LOSS_SOFTMAX)
    return fr_error_set(err, FR_ERR_INVALID, "loss: unknown kind %d", (int)p->kind);
  if (!(isfinite(p->s) && p->s > 0.0f))
    return fr_error_set(err, FR_ERR_INVALID, "loss: scale s = %g must be positive", (double)p->s);
  if (p->kind == FR_LOSS_ARCFACE && !(p->m >= 0.0f && p->m < 1.5707963f))
    return fr_error_set(err, FR_ERR_INVALID, "loss: margin m = %g is not in [0, pi/2)", (double)p->m);
  if (p->kind == FR_LOSS_SOFTMAX && p->m != 0.0f)
    return fr_error_set(err, FR_ERR_INVALID, "loss: softmax mode takes no margin (m = %g)", (double)p->m);
  return FR_OK;
}

size_t fr_loss_workspace_floats(const fr_loss *l, const fr_loss_params *p)
{
  if (check_params(p, NULL))
    return 0;
  return (size_t)make_layout(l, p).total;
}

static fr_vk_arg sub(fr_vk_arg ws, uint64_t offset_floats, uint64_t floats)
{
  return (fr_vk_arg){ws.buffer, ws.offset + offset_floats * sizeof(float), (floats ? floats : 1) * sizeof(float)};
}

fr_vk_arg fr_loss_cosines_arg(const fr_loss *l, const fr_loss_params *p, fr_vk_arg ws)
{
  layout L = make_layout(l, p);
  return sub(ws, L.cos, (uint64_t)p->batch * p->classes);
}

fr_vk_arg fr_loss_row_losses_arg(const fr_loss *l, const fr_loss_params *p, fr_vk_arg ws)
{
  layout L = make_layout(l, p);
  return sub(ws, L.rows, (uint64_t)p->batch);
}

fr_vk_arg fr_loss_dlogits_arg(const fr_loss *l, const fr_loss_params *p, fr_vk_arg ws)
{
  layout L = make_layout(l, p);
  return sub(ws, L.g, (uint64_t)p->batch * p->classes);
}

static int need(fr_vk_arg a, uint64_t floats, const char *what, fr_error *err)
{
  if (!a.buffer)
    return fr_error_set(err, FR_ERR_INVALID, "loss: no buffer for %s", what);
  uint64_t avail = a.offset < a.buffer->size ? a.buffer->size - a.offset : 0;
  if (a.range && a.range < avail)
    avail = a.range;
  if (avail < floats * sizeof(float))
    return fr_error_set(err, FR_ERR_INVALID, "loss: %s holds %llu bytes, the loss needs %llu", what,
                        (unsigned long long)avail, (unsigned long long)(floats * sizeof(float)));
  return FR_OK;
}

static int dispatch(fr_loss *l, fr_vk_sequence *seq, const fr_vk_kernel *k, const fr_vk_arg *args, const void *push,
                    uint64_t invocations, fr_error *err)
{
  uint64_t groups = (invocations + l->wg - 1) / l->wg;
  uint32_t max_x = fr_vk_context_device(l->ctx)->max_workgroup_count[0];
  uint32_t max_y = fr_vk_context_device(l->ctx)->max_workgroup_count[1];
  uint32_t gx = groups <= max_x ? (uint32_t)groups : max_x;
  uint64_t gy = (groups + gx - 1) / gx;
  if (gy > max_y)
    return fr_error_set(err, FR_ERR_UNSUPPORTED, "%s: %llu invocations exceed one dispatch", fr_vk_kernel_name(k),
                        (unsigned long long)invocations);
  return fr_vk_sequence_dispatch(seq, k, args, push, gx, (uint32_t)gy, 1, NULL, err);
}

int fr_loss_record(fr_loss *l, fr_vk_sequence *seq, const fr_loss_params *p, fr_vk_arg x, fr_vk_arg w,
                   fr_vk_arg labels, fr_vk_arg workspace, fr_vk_arg loss, fr_vk_arg dx, fr_vk_arg dw,
                   fr_error *err)
{
  int rc = check_params(p, err);
  if (rc)
    return rc;
  uint64_t B = (uint64_t)p->batch, D = (uint64_t)p->dim, C = (uint64_t)p->classes;
  int arc = p->kind == FR_LOSS_ARCFACE;
  layout L = make_layout(l, p);
  rc = need(x, B * D, "x (embeddings)", err);
  if (!rc)
    rc = need(w, C * D, "w (class weights)", err);
  if (!rc)
    rc = need(labels, B, "labels", err);
  if (!rc)
    rc = need(workspace, L.total, "workspace", err);
  if (!rc)
    rc = need(loss, 1, "loss", err);
  if (!rc && dx.buffer)
    rc = need(dx, B * D, "dx", err);
  if (!rc && dw.buffer)
    rc = need(dw, C * D, "dw", err);
  if (!rc && workspace.offset % (l->align_floats * sizeof(float)))
    rc = fr_error_set(err, FR_ERR_INVALID, "loss: workspace offset %llu is not a multiple of %llu bytes",
                      (unsigned long long)workspace.offset, (unsigned long long)(l->align_floats * sizeof(float)));
  /* Each softmax lane loops over classes / workgroup size: keep it under the limiter. */
  if (!rc && C > (uint64_t)l->wg_tree * 65536u)
    rc = fr_error_set(err, FR_ERR_UNSUPPORTED, "loss: %llu classes exceed %llu in one call", (unsigned long long)C,
                      (unsigned long long)l->wg_tree * 65536u);
  if (!rc && B > fr_vk_context_device(l->ctx)->max_workgroup_count[0])
    rc = fr_error_set(err, FR_ERR_UNSUPPORTED, "loss: batch %llu exceeds the device's workgroup count",
                      (unsigned long long)B);
  if (rc)
    return rc;
  fr_vk_arg wn = arc ? sub(workspace, L.wn, C * D) : w;
  fr_vk_arg norms = sub(workspace, L.norms, C), cos_a = sub(workspace, L.cos, B * C);
  fr_vk_arg g = sub(workspace, L.g, B * C), rows = sub(workspace, L.rows, B);
  fr_vk_arg part = sub(workspace, L.part, (uint64_t)L.chunks * B * D);
  int backward = dx.buffer || dw.buffer;

  if (arc) {
    uint32_t np[2] = {(uint32_t)C, (uint32_t)D};
    fr_vk_arg a[3] = {w, wn, norms};
    if ((rc = dispatch(l, seq, l->norm, a, np, C, err)))
      return rc;
    fr_vk_sequence_barrier(seq);
  }
  uint32_t lp[3] = {(uint32_t)B, (uint32_t)D, (uint32_t)C};
  fr_vk_arg la[3] = {x, wn, cos_a};
  if ((rc = dispatch(l, seq, l->logits, la, lp, B * C, err)))
    return rc;
  fr_vk_sequence_barrier(seq);

  double m = p->m;
  softmax_push sp = {(uint32_t)B, (uint32_t)C, (uint32_t)arc, (uint32_t)(p->easy_margin != 0), (uint32_t)backward, 0,
                     p->s, (float)cos(m), (float)sin(m), (float)cos(M_PI - m), (float)(sin(M_PI - m) * m)};
  fr_vk_arg sa[5] = {cos_a, labels, g, rows, loss};
  rc = fr_vk_sequence_dispatch(seq, l->softmax, sa, &sp, (uint32_t)B, 1, 1, NULL, err);
  if (rc)
    return rc;
  fr_vk_sequence_barrier(seq);
  sp.stage = 1;
  if ((rc = fr_vk_sequence_dispatch(seq, l->softmax, sa, &sp, 1, 1, 1, NULL, err)))
    return rc;
  if (!backward)
    return FR_OK;

  bwd_push bp = {(uint32_t)B, (uint32_t)D, (uint32_t)C, DX_CHUNK, L.chunks, DX_PART};
  if (dx.buffer) {
    fr_vk_arg a[6] = {g, wn, x, norms, part, dx};
    if ((rc = dispatch(l, seq, l->bwd, a, &bp, (uint64_t)L.chunks * B * D, err)))
      return rc;
  }
  if (dw.buffer) {
    /* Reads only g and x: no barrier needed after the dx partials. */
    bp.mode = DW;
    fr_vk_arg a[6] = {g, wn, x, norms, part, dw};
    if ((rc = dispatch(l, seq, l->bwd, a, &bp, C * D, err)))
      return rc;
  }
  fr_vk_sequence_barrier(seq);
  if (dx.buffer) {
    bp.mode = DX_FINAL;
    fr_vk_arg a[6] = {g, wn, x, norms, part, dx};
    if ((rc = dispatch(l, seq, l->bwd, a, &bp, B * D, err)))
      return rc;
  }
  if (dw.buffer && arc) {
    bp.mode = DW_PROJ;
    fr_vk_arg a[6] = {g, wn, x, norms, part, dw};
    if ((rc = dispatch(l, seq, l->bwd, a, &bp, C, err)))
      return rc;
  }
  return FR_OK;
}
