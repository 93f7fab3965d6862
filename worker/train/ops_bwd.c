/* Host side of the training ops: argument checks, reduction chunking, dispatch shapes.
 * These kernels are deliberately simple (storage buffers, one output per invocation):
 * correctness and bit-identical reruns first. The convolution backward kernels, where
 * training spends its time, are in ops_bwd_conv.c. */
#include <stdlib.h>
#include <string.h>

#include "ops_bwd_internal.h"

#define WG 64u

/* Must match the shaders' op codes. */
enum { OP_ADD, OP_MUL, OP_RELU, OP_RELU_BWD, OP_PRELU, OP_PRELU_BWD, OP_SIGMOID, OP_SIGMOID_BWD, OP_BIAS, OP_BN,
       OP_BN_BWD, OP_DROPOUT };
enum { R_SUM, R_DOT, R_SQDEV, R_DOTDEV, R_DOTNEG };
enum { BC_AVG_BWD, BC_MAX_BWD, BC_MUL };
enum { POOL_AVG, POOL_MAX, POOL_DOT };


typedef struct eltwise_push {
  uint32_t n, channels, op, seed, step, threshold;
  float f0;
} eltwise_push;

uint32_t fr_tops_clamp_wg(const fr_vk_device_info *info, uint32_t want)
{
  uint32_t lim = info->max_workgroup_size[0] < info->max_workgroup_invocations ? info->max_workgroup_size[0]
                                                                                 : info->max_workgroup_invocations;
  return want < lim ? want : lim;
}

int fr_train_ops_create(fr_vk_context *ctx, fr_train_ops **out, fr_error *err)
{
  *out = NULL;
  fr_train_ops *t = calloc(1, sizeof(*t));
  if (!t)
    return fr_error_set(err, FR_ERR_NOMEM, "train ops: out of memory");
  t->ctx = ctx;
  t->wg = fr_tops_clamp_wg(fr_vk_context_device(ctx), WG);
  /* The l2norm tree reduction halves the workgroup: it must be a power of two. */
  uint32_t wg_tree = 1;
  while (wg_tree * 2 <= t->wg)
    wg_tree *= 2;
  fr_vk_binding_kind st[FR_VK_MAX_BINDINGS];
  for (int i = 0; i < FR_VK_MAX_BINDINGS; i++)
    st[i] = FR_BIND_STORAGE;
  struct {
    const char *name;
    int bindings;
    uint32_t push;
    const uint32_t *wg;
    fr_vk_kernel **out;
  } k[] = {
      {"train_reduce", 6, sizeof(reduce_push), &t->wg, &t->reduce},
      {"train_eltwise", 8, sizeof(eltwise_push), &t->wg, &t->eltwise},
      {"train_bn_stats", 5, 16, &t->wg, &t->bn_stats},
      {"train_l2norm_bwd", 4, 8, &wg_tree, &t->l2norm_bwd},
      {"train_pool", 3, 16, &t->wg, &t->pool},
      {"train_pool_bwd", 3, 16, &t->wg, &t->pool_bwd},
      {"train_concat", 2, 20, &t->wg, &t->concat},
  };
  int rc = FR_OK;
  for (size_t i = 0; i < sizeof(k) / sizeof(k[0]) && !rc; i++)
    rc = fr_vk_kernel_create(ctx, k[i].name, k[i].bindings, st, k[i].push, k[i].wg, 1, k[i].out, err);
  if (!rc)
    rc = fr_tops_conv_create(t, err);
  if (!rc)
    rc = fr_tops_eltwise_create(t, err);
  if (rc) {
    fr_train_ops_destroy(t);
    return rc;
  }
  *out = t;
  return FR_OK;
}

void fr_train_ops_destroy(fr_train_ops *t)
{
  if (!t)
    return;
  fr_tops_eltwise_destroy(t);
  fr_tops_conv_destroy(t);
  fr_vk_kernel *k[] = {t->reduce, t->eltwise, t->bn_stats,
                       t->l2norm_bwd, t->pool, t->pool_bwd, t->concat};
  for (size_t i = 0; i < sizeof(k) / sizeof(k[0]); i++)
    fr_vk_kernel_destroy(t->ctx, k[i]);
  free(t);
}

/* A function of the shape alone, so reruns reduce in the same order. */
void fr_tops_chunking(uint64_t rows, uint32_t *rows_per_chunk, uint32_t *chunks)
{
  uint64_t r = (rows + CHUNK_MAX_COUNT - 1) / CHUNK_MAX_COUNT;
  if (r < CHUNK_MIN_ROWS)
    r = CHUNK_MIN_ROWS;
  if (r > CHUNK_MAX_ROWS)
    r = CHUNK_MAX_ROWS;
  *rows_per_chunk = (uint32_t)r;
  *chunks = (uint32_t)((rows + r - 1) / r);
}

size_t fr_train_reduce_scratch_floats(int rows, int cols)
{
  if (rows <= 0 || cols <= 0)
    return 0;
  uint32_t r, chunks;
  fr_tops_chunking((uint64_t)rows, &r, &chunks);
  return (size_t)chunks * cols;
}

int fr_tops_need(fr_vk_arg a, uint64_t floats, const char *op, const char *what, fr_error *err)
{
  if (!a.buffer)
    return fr_error_set(err, FR_ERR_INVALID, "%s: no buffer for %s", op, what);
  uint64_t avail = a.offset < a.buffer->size ? a.buffer->size - a.offset : 0;
  if (a.range && a.range < avail)
    avail = a.range;
  if (avail < floats * sizeof(float))
    return fr_error_set(err, FR_ERR_INVALID, "%s: %s holds %llu bytes, the op needs %llu", op, what,
                        (unsigned long long)avail, (unsigned long long)(floats * sizeof(float)));
  return FR_OK;
}

int fr_tops_dispatch(fr_train_ops *t, fr_vk_sequence *seq, const fr_vk_kernel *k, const fr_vk_arg *args,
                    const void *push, uint64_t invocations, fr_error *err)
{
  uint64_t groups = (invocations + t->wg - 1) / t->wg;
  uint32_t max_x = fr_vk_context_device(t->ctx)->max_workgroup_count[0];
  uint32_t max_y = fr_vk_context_device(t->ctx)->max_workgroup_count[1];
  uint32_t gx = groups <= max_x ? (uint32_t)groups : max_x;
  uint64_t gy = (groups + gx - 1) / gx;
  if (invocations > UINT32_MAX || gy > max_y)
    return fr_error_set(err, FR_ERR_UNSUPPORTED, "%s: %llu invocations exceed one dispatch; split the batch",
                        fr_vk_kernel_name(k), (unsigned long long)invocations);
  if (!invocations)
    return FR_OK;
  return fr_vk_sequence_dispatch(seq, k, args, push, gx, (uint32_t)gy, 1, NULL, err);
}

int fr_tops_reduce_final(fr_train_ops *t, fr_vk_sequence *seq, uint32_t cols, uint32_t chunks, float scale,
                         fr_vk_arg v1, fr_vk_arg part, fr_vk_arg out, fr_error *err)
{
  reduce_push push = {0, cols, 0, chunks, 0, 1, v1.buffer != NULL, scale};
  fr_vk_arg v = v1.buffer ? v1 : part;
  fr_vk_arg args[6] = {part, part, part, v, part, out};
  return fr_tops_dispatch(t, seq, t->reduce, args, &push, cols, err);
}

/* Both stages of a column reduction of [rows, cols]; mode's operands a, b, v0. */
static int record_column_reduce(fr_train_ops *t, fr_vk_sequence *seq, const char *op, int mode, int rows, int cols,
                                fr_vk_arg a, fr_vk_arg b, fr_vk_arg v0, float scale, fr_vk_arg v1,
                                fr_vk_arg scratch, fr_vk_arg out, fr_error *err)
{
  if (rows <= 0 || cols <= 0)
    return fr_error_set(err, FR_ERR_INVALID, "%s: %d rows of %d channels", op, rows, cols);
  uint64_t n = (uint64_t)rows * cols;
  int rc = fr_tops_need(a, n, op, "input", err);
  if (!rc && b.buffer)
    rc = fr_tops_need(b, n, op, "second input", err);
  if (!rc && v0.buffer)
    rc = fr_tops_need(v0, (uint64_t)cols, op, "per-channel input", err);
  if (!rc)
    rc = fr_tops_need(scratch, fr_train_reduce_scratch_floats(rows, cols), op, "scratch", err);
  if (!rc)
    rc = fr_tops_need(out, (uint64_t)cols, op, "output", err);
  if (rc)
    return rc;
  reduce_push push = {(uint32_t)rows, (uint32_t)cols, 0, 0, (uint32_t)mode, 0, 0, 1.0f};
  fr_tops_chunking((uint64_t)rows, &push.rows_per_chunk, &push.chunks);
  fr_vk_arg args[6] = {a, b.buffer ? b : a, v0.buffer ? v0 : a, a, scratch, out};
  fr_vk_arg none = {0};
  rc = mode == R_SUM ? fr_tops_eltwise(t, seq, EB_COLSUM, (uint64_t)rows, (uint64_t)cols, a, none, none, none,
                                       scratch, err)
                     : TOPS_FALLBACK;
  if (rc == TOPS_FALLBACK)
    rc = fr_tops_dispatch(t, seq, t->reduce, args, &push, (uint64_t)push.chunks * cols, err);
  if (rc)
    return rc;
  fr_vk_sequence_barrier(seq);
  return fr_tops_reduce_final(t, seq, (uint32_t)cols, push.chunks, scale, v1, scratch, out, err);
}

int fr_train_record_bias_bwd(fr_train_ops *t, fr_vk_sequence *seq, int rows, int channels, fr_vk_arg dy,
                             fr_vk_arg scratch, fr_vk_arg db, fr_error *err)
{
  fr_vk_arg none = {0};
  return record_column_reduce(t, seq, "bias backward", R_SUM, rows, channels, dy, none, none, 1.0f, none, scratch,
                              db, err);
}

/* One element-wise dispatch; unused bindings are bound to `a`. */
static int record_eltwise(fr_train_ops *t, fr_vk_sequence *seq, const char *op, eltwise_push push, fr_vk_arg a,
                          fr_vk_arg b, fr_vk_arg out, const fr_vk_arg *v, int nv, fr_error *err)
{
  if (push.n == 0 || push.channels == 0)
    return fr_error_set(err, FR_ERR_INVALID, "%s: empty tensor", op);
  int rc = fr_tops_need(a, push.n, op, "input", err);
  if (!rc && b.buffer)
    rc = fr_tops_need(b, push.n, op, "second input", err);
  if (!rc)
    rc = fr_tops_need(out, push.n, op, "output", err);
  for (int i = 0; i < nv && !rc; i++)
    rc = fr_tops_need(v[i], push.channels, op, "per-channel vector", err);
  if (rc)
    return rc;
  int eb = push.op == OP_ADD ? EB_ADD : push.op == OP_RELU ? EB_RELU : push.op == OP_PRELU ? EB_PRELU
         : push.op == OP_RELU_BWD ? EB_RELU_BWD : push.op == OP_PRELU_BWD ? EB_PRELU_BWD : -1;
  fr_vk_arg none = {0};
  rc = eb < 0 ? TOPS_FALLBACK
              : fr_tops_eltwise(t, seq, eb, push.n / push.channels, push.channels, a, b, nv ? v[0] : none, out, none,
                                err);
  if (rc != TOPS_FALLBACK)
    return rc;
  fr_vk_arg args[8] = {a, b.buffer ? b : a, out, a, a, a, a, a};
  for (int i = 0; i < nv; i++)
    args[3 + i] = v[i];
  return fr_tops_dispatch(t, seq, t->eltwise, args, &push, push.n, err);
}

static int check_rows(const char *op, int64_t rows, int channels, fr_error *err)
{
  if (rows <= 0 || channels <= 0 || (uint64_t)rows * (uint64_t)channels > UINT32_MAX)
    return fr_error_set(err, FR_ERR_INVALID, "%s: %lld rows of %d channels", op, (long long)rows, channels);
  return FR_OK;
}

int fr_train_record_act(fr_train_ops *t, fr_vk_sequence *seq, fr_train_act act, int rows, int channels, fr_vk_arg x,
                        fr_vk_arg slope, fr_vk_arg y, fr_error *err)
{
  int rc = check_rows("activation", rows, channels, err);
  if (rc)
    return rc;
  uint32_t op = act == FR_TRAIN_RELU ? OP_RELU : act == FR_TRAIN_PRELU ? OP_PRELU : OP_SIGMOID;
  eltwise_push push = {(uint32_t)rows * (uint32_t)channels, (uint32_t)channels, op, 0, 0, 0, 0.0f};
  fr_vk_arg none = {0};
  return record_eltwise(t, seq, "activation", push, x, none, y, &slope, act == FR_TRAIN_PRELU, err);
}

int fr_train_record_act_bwd(fr_train_ops *t, fr_vk_sequence *seq, fr_train_act act, int rows, int channels,
                            fr_vk_arg saved, fr_vk_arg dy, fr_vk_arg slope, fr_vk_arg dx, fr_vk_arg scratch,
                            fr_vk_arg dslope, fr_error *err)
{
  const char *op = "activation backward";
  int rc = check_rows(op, rows, channels, err);
  if (rc)
    return rc;
  uint32_t code = act == FR_TRAIN_RELU ? OP_RELU_BWD : act == FR_TRAIN_PRELU ? OP_PRELU_BWD : OP_SIGMOID_BWD;
  eltwise_push push = {(uint32_t)rows * (uint32_t)channels, (uint32_t)channels, code, 0, 0, 0, 0.0f};
  if (act == FR_TRAIN_PRELU && dslope.buffer) {
    /* One pass for dx and the slope gradient's chunk sums where the texel kernel runs. */
    uint64_t n = (uint64_t)rows * channels;
    rc = fr_tops_need(dy, n, op, "dy", err);
    if (!rc)
      rc = fr_tops_need(saved, n, op, "x", err);
    if (!rc)
      rc = fr_tops_need(slope, (uint64_t)channels, op, "slope", err);
    if (!rc)
      rc = fr_tops_need(dx, n, op, "dx", err);
    if (!rc)
      rc = fr_tops_need(scratch, fr_train_reduce_scratch_floats(rows, channels), op, "scratch", err);
    if (!rc)
      rc = fr_tops_need(dslope, (uint64_t)channels, op, "slope gradient", err);
    if (!rc)
      rc = fr_tops_eltwise(t, seq, EB_PRELU_BWD, (uint64_t)rows, (uint64_t)channels, dy, saved, slope, dx, scratch,
                           err);
    if (rc != TOPS_FALLBACK) {
      if (rc)
        return rc;
      fr_vk_sequence_barrier(seq);
      uint32_t r, chunks;
      fr_tops_chunking((uint64_t)rows, &r, &chunks);
      return fr_tops_reduce_final(t, seq, (uint32_t)channels, chunks, 1.0f, (fr_vk_arg){0}, scratch, dslope, err);
    }
  }
  rc = record_eltwise(t, seq, op, push, dy, saved, dx, &slope, act == FR_TRAIN_PRELU, err);
  if (rc || act != FR_TRAIN_PRELU || !dslope.buffer)
    return rc;
  /* The slope gradient reads only dy and x, so it needs no barrier after dx. */
  fr_vk_arg none = {0};
  return record_column_reduce(t, seq, "PReLU slope gradient", R_DOTNEG, rows, channels, dy, saved, none, 1.0f, none,
                              scratch, dslope, err);
}

int fr_train_record_bias(fr_train_ops *t, fr_vk_sequence *seq, int rows, int channels, fr_vk_arg x, fr_vk_arg bias,
                         fr_vk_arg y, fr_error *err)
{
  int rc = check_rows("bias", rows, channels, err);
  if (rc)
    return rc;
  eltwise_push push = {(uint32_t)rows * (uint32_t)channels, (uint32_t)channels, OP_BIAS, 0, 0, 0, 0.0f};
  fr_vk_arg none = {0};
  return record_eltwise(t, seq, "bias", push, x, none, y, &bias, 1, err);
}

static int record_binary(fr_train_ops *t, fr_vk_sequence *seq, const char *op, uint32_t code, size_t n, fr_vk_arg a,
                         fr_vk_arg b, fr_vk_arg out, fr_error *err)
{
  if (n == 0 || n > UINT32_MAX)
    return fr_error_set(err, FR_ERR_INVALID, "%s: %zu elements", op, n);
  if (!b.buffer)
    return fr_error_set(err, FR_ERR_INVALID, "%s: no buffer for the second input", op);
  eltwise_push push = {(uint32_t)n, 1, code, 0, 0, 0, 0.0f};
  return record_eltwise(t, seq, op, push, a, b, out, NULL, 0, err);
}

int fr_train_record_add(fr_train_ops *t, fr_vk_sequence *seq, size_t n, fr_vk_arg a, fr_vk_arg b, fr_vk_arg out,
                        fr_error *err)
{
  return record_binary(t, seq, "add", OP_ADD, n, a, b, out, err);
}

int fr_train_record_mul(fr_train_ops *t, fr_vk_sequence *seq, size_t n, fr_vk_arg a, fr_vk_arg b, fr_vk_arg out,
                        fr_error *err)
{
  return record_binary(t, seq, "multiply", OP_MUL, n, a, b, out, err);
}

int fr_train_record_dropout(fr_train_ops *t, fr_vk_sequence *seq, size_t n, float rate, uint32_t seed,
                            uint32_t step, fr_vk_arg x, fr_vk_arg y, fr_error *err)
{
  if (!(rate >= 0.0f && rate < 1.0f))
    return fr_error_set(err, FR_ERR_INVALID, "dropout: rate %g is not in [0, 1)", (double)rate);
  if (n == 0 || n > UINT32_MAX)
    return fr_error_set(err, FR_ERR_INVALID, "dropout: %zu elements", n);
  double th = (double)rate * 4294967296.0;
  uint32_t threshold = th <= 0 ? 0u : th >= 4294967295.0 ? 0xffffffffu : (uint32_t)th;
  eltwise_push push = {(uint32_t)n, 1, OP_DROPOUT, seed, step, threshold, (float)(1.0 / (1.0 - (double)rate))};
  fr_vk_arg none = {0};
  return record_eltwise(t, seq, "dropout", push, x, none, y, NULL, 0, err);
}

int fr_train_record_l2norm_bwd(fr_train_ops *t, fr_vk_sequence *seq, int rows, int dim, fr_vk_arg y, fr_vk_arg norms,
                               fr_vk_arg dy, fr_vk_arg dx, fr_error *err)
{
  const char *op = "l2norm backward";
  int rc = check_rows(op, rows, dim, err);
  uint64_t n = (uint64_t)rows * dim;
  if (!rc)
    rc = fr_tops_need(y, n, op, "y", err);
  if (!rc)
    rc = fr_tops_need(norms, (uint64_t)rows, op, "norms", err);
  if (!rc)
    rc = fr_tops_need(dy, n, op, "dy", err);
  if (!rc)
    rc = fr_tops_need(dx, n, op, "dx", err);
  if (!rc && (uint32_t)rows > fr_vk_context_device(t->ctx)->max_workgroup_count[0])
    rc = fr_error_set(err, FR_ERR_UNSUPPORTED, "%s: %d rows exceed the device's workgroup count", op, rows);
  if (rc)
    return rc;
  uint32_t push[2] = {(uint32_t)rows, (uint32_t)dim};
  fr_vk_arg args[4] = {y, norms, dy, dx};
  return fr_vk_sequence_dispatch(seq, t->l2norm_bwd, args, push, (uint32_t)rows, 1, 1, NULL, err);
}

static int check_bn(const fr_train_bn *bn, const char *op, int backward, fr_error *err)
{
  int rc = check_rows(op, bn->rows, bn->channels, err);
  if (!rc && !(bn->eps > 0.0f))
    rc = fr_error_set(err, FR_ERR_INVALID, "%s: eps %g must be positive", op, (double)bn->eps);
  /* The forward reads and writes the first seven, the backward the ones marked 2. */
  const fr_vk_arg *v[] = {&bn->gamma, &bn->beta, &bn->mean, &bn->var, &bn->invstd,
                          &bn->running_mean, &bn->running_var, &bn->dgamma, &bn->dbeta};
  static const char *names[] = {"gamma", "beta", "mean", "var", "invstd", "running mean", "running var",
                                "dgamma", "dbeta"};
  static const int used[] = {3, 1, 3, 1, 3, 1, 1, 2, 2};
  for (int i = 0; i < 9 && !rc; i++)
    if (used[i] & (backward ? 2 : 1))
      rc = fr_tops_need(*v[i], (uint64_t)bn->channels, op, names[i], err);
  return rc;
}

int fr_train_record_bn_fwd(fr_train_ops *t, fr_vk_sequence *seq, const fr_train_bn *bn, fr_vk_arg x, fr_vk_arg y,
                           fr_vk_arg scratch, fr_error *err)
{
  const char *op = "batch norm";
  int rc = check_bn(bn, op, 0, err);
  uint64_t n = (uint64_t)bn->rows * bn->channels;
  if (!rc)
    rc = fr_tops_need(y, n, op, "output", err);
  if (rc)
    return rc;
  fr_vk_arg none = {0};
  float inv_rows = (float)(1.0 / bn->rows);
  /* Mean first, then the mean squared deviation: the one-pass E[x^2] - E[x]^2 loses
   * the variance to cancellation when the mean is large. */
  rc = record_column_reduce(t, seq, op, R_SUM, bn->rows, bn->channels, x, none, none, inv_rows, none, scratch,
                            bn->mean, err);
  if (rc)
    return rc;
  fr_vk_sequence_barrier(seq);
  rc = record_column_reduce(t, seq, op, R_SQDEV, bn->rows, bn->channels, x, none, bn->mean, inv_rows, none, scratch,
                            bn->var, err);
  if (rc)
    return rc;
  fr_vk_sequence_barrier(seq);
  struct {
    uint32_t channels, rows;
    float eps, momentum;
  } sp = {(uint32_t)bn->channels, (uint32_t)bn->rows, bn->eps, bn->momentum};
  fr_vk_arg sargs[5] = {bn->mean, bn->var, bn->invstd, bn->running_mean, bn->running_var};
  rc = fr_tops_dispatch(t, seq, t->bn_stats, sargs, &sp, (uint64_t)bn->channels, err);
  if (rc)
    return rc;
  fr_vk_sequence_barrier(seq);
  eltwise_push push = {(uint32_t)n, (uint32_t)bn->channels, OP_BN, 0, 0, 0, 0.0f};
  fr_vk_arg v[4] = {bn->mean, bn->invstd, bn->gamma, bn->beta};
  return record_eltwise(t, seq, op, push, x, none, y, v, 4, err);
}

int fr_train_record_bn_bwd(fr_train_ops *t, fr_vk_sequence *seq, const fr_train_bn *bn, fr_vk_arg x, fr_vk_arg dy,
                           fr_vk_arg dx, fr_vk_arg scratch, fr_error *err)
{
  const char *op = "batch norm backward";
  int rc = check_bn(bn, op, 1, err);
  uint64_t n = (uint64_t)bn->rows * bn->channels;
  if (!rc)
    rc = fr_tops_need(dx, n, op, "dx", err);
  if (rc)
    return rc;
  fr_vk_arg none = {0};
  rc = record_column_reduce(t, seq, op, R_SUM, bn->rows, bn->channels, dy, none, none, 1.0f, none, scratch,
                            bn->dbeta, err);
  if (rc)
    return rc;
  /* The scratch is reused: order the second reduction after the first. */
  fr_vk_sequence_barrier(seq);
  /* dgamma = invstd * sum dy (x - mean), with x - mean exact rather than a stored xhat. */
  rc = record_column_reduce(t, seq, op, R_DOTDEV, bn->rows, bn->channels, dy, x, bn->mean, 1.0f, bn->invstd, scratch,
                            bn->dgamma, err);
  if (rc)
    return rc;
  fr_vk_sequence_barrier(seq);
  eltwise_push push = {(uint32_t)n, (uint32_t)bn->channels, OP_BN_BWD, 0, 0, 0, (float)bn->rows};
  fr_vk_arg v[5] = {bn->mean, bn->invstd, bn->gamma, bn->dbeta, bn->dgamma};
  return record_eltwise(t, seq, op, push, dy, x, dx, v, 5, err);
}

static int record_mid(fr_train_ops *t, fr_vk_sequence *seq, const char *op, const fr_vk_kernel *k, uint32_t mode,
                      int outer, int len, int inner, fr_vk_arg a, uint64_t a_n, fr_vk_arg b, uint64_t b_n,
                      fr_vk_arg out, uint64_t out_n, fr_error *err)
{
  if (outer <= 0 || len <= 0 || inner <= 0 || (uint64_t)outer * len * inner > UINT32_MAX)
    return fr_error_set(err, FR_ERR_INVALID, "%s: shape %d x %d x %d", op, outer, len, inner);
  int rc = fr_tops_need(a, a_n, op, "input", err);
  if (!rc && b.buffer)
    rc = fr_tops_need(b, b_n, op, "second input", err);
  if (!rc)
    rc = fr_tops_need(out, out_n, op, "output", err);
  if (rc)
    return rc;
  uint32_t push[4] = {(uint32_t)outer, (uint32_t)len, (uint32_t)inner, mode};
  fr_vk_arg args[3] = {a, b.buffer ? b : a, out};
  return fr_tops_dispatch(t, seq, k, args, push, (uint64_t)outer * inner, err);
}

int fr_train_record_pool(fr_train_ops *t, fr_vk_sequence *seq, fr_train_pool mode, int outer, int len, int inner,
                         fr_vk_arg x, fr_vk_arg y, fr_error *err)
{
  uint64_t full = (uint64_t)outer * len * inner, red = (uint64_t)outer * inner;
  fr_vk_arg none = {0};
  return record_mid(t, seq, "pool", t->pool, mode == FR_POOL_MAX ? POOL_MAX : POOL_AVG, outer, len, inner, x, full,
                    none, 0, y, red, err);
}

int fr_train_record_pool_bwd(fr_train_ops *t, fr_vk_sequence *seq, fr_train_pool mode, int outer, int len, int inner,
                             fr_vk_arg x, fr_vk_arg dy, fr_vk_arg dx, fr_error *err)
{
  uint64_t full = (uint64_t)outer * len * inner, red = (uint64_t)outer * inner;
  if (mode == FR_POOL_AVG && !x.buffer)
    x = dy; /* average pooling's gradient does not read x */
  return record_mid(t, seq, "pool backward", t->pool_bwd, mode == FR_POOL_MAX ? BC_MAX_BWD : BC_AVG_BWD, outer, len,
                    inner, x, mode == FR_POOL_MAX ? full : red, dy, red, dx, full, err);
}

int fr_train_record_bcast_mul(fr_train_ops *t, fr_vk_sequence *seq, int outer, int len, int inner, fr_vk_arg x,
                              fr_vk_arg s, fr_vk_arg y, fr_error *err)
{
  uint64_t full = (uint64_t)outer * len * inner, red = (uint64_t)outer * inner;
  if (!s.buffer)
    return fr_error_set(err, FR_ERR_INVALID, "broadcast multiply: no buffer for the scale");
  return record_mid(t, seq, "broadcast multiply", t->pool_bwd, BC_MUL, outer, len, inner, x, full, s, red, y, full,
                    err);
}

int fr_train_record_bcast_mul_bwd_scale(fr_train_ops *t, fr_vk_sequence *seq, int outer, int len, int inner,
                                        fr_vk_arg x, fr_vk_arg dy, fr_vk_arg ds, fr_error *err)
{
  uint64_t full = (uint64_t)outer * len * inner, red = (uint64_t)outer * inner;
  if (!dy.buffer)
    return fr_error_set(err, FR_ERR_INVALID, "broadcast multiply backward: no buffer for dy");
  return record_mid(t, seq, "broadcast multiply backward", t->pool, POOL_DOT, outer, len, inner, dy, full, x, full,
                    ds, red, err);
}

int fr_train_record_concat(fr_train_ops *t, fr_vk_sequence *seq, int rows, int part_c, int total_c, int offset,
                           int split, fr_vk_arg part, fr_vk_arg whole, fr_error *err)
{
  const char *op = "concat";
  if (rows <= 0 || part_c <= 0 || offset < 0 || total_c < part_c || offset > total_c - part_c ||
      (uint64_t)rows * total_c > UINT32_MAX)
    return fr_error_set(err, FR_ERR_INVALID, "%s: %d channels at offset %d of %d (%d rows)", op, part_c, offset,
                        total_c, rows);
  int rc = fr_tops_need(part, (uint64_t)rows * part_c, op, "part", err);
  if (!rc)
    rc = fr_tops_need(whole, (uint64_t)rows * total_c, op, "whole", err);
  if (rc)
    return rc;
  uint32_t push[5] = {(uint32_t)rows, (uint32_t)part_c, (uint32_t)total_c, (uint32_t)offset, split != 0};
  fr_vk_arg args[2] = {part, whole};
  return fr_tops_dispatch(t, seq, t->concat, args, push, (uint64_t)rows * part_c, err);
}
