/* Convolution backward passes: kernel choice and dispatch shapes.
 *
 * Kernel families (chosen from the shape and the device; the direct ones are the
 * reference implementation and the fallback everywhere else):
 *   train_conv_bwd_data_gemm    1x1 / linear input gradient, in_c and out_c % 4 == 0:
 *                               the forward GEMM's scheme on dy and the OHWI weights
 *   train_conv_bwd_filter_gemm  dense weight gradient, out_c % 4 == 0: a GEMM over the
 *                               output pixels, split into row chunks, then train_reduce
 *   train_dw_bwd_data/_filter   depthwise, channels % 4 == 0 (ops_bwd_dw.c)
 *   train_conv_bwd_data/filter  everything else, and every conv on devices without
 *                               RGBA32F texel buffers or 8-lane subgroup shuffles
 * Every texel binding is a view of exactly the tensor; a tensor whose offset is not a
 * multiple of 16 bytes, or that is longer than maxTexelBufferElements texels, takes the
 * direct kernels. Every reduction over pixels is a fixed-order sum per chunk of rows,
 * then a fixed-order sum of the chunks: two runs give the same bits. */
#include <stdlib.h>
#include <string.h>

#include "ops_bwd_internal.h"
#include "ops_bwd_dw.h"

#define GEMM_WG 64u
#define GEMM_R 4u  /* rows per lane: R in shaders/train_conv_bwd_data_gemm.glsl */
#define GEMM_T 8u  /* output channels per column tile: T there */
#define FILTER_LANES 8u /* output-channel texels per k-block: LANES in train_conv_bwd_filter_gemm.comp */
#define FILTER_KB 8u    /* k's per k-block: KB there */
/* Workgroups a weight-gradient dispatch should have at least, to spread over the cores
 * (and keep them busy to the end); chunks are added until it does. */
#define FILTER_TARGET_GROUPS 256u
static const uint32_t fixed_k4[3] = {16, 32, 64};

typedef enum conv_kind { KIND_DIRECT, KIND_GEMM, KIND_IM2COL, KIND_DW } conv_kind;

typedef struct conv_push {
  uint32_t batch, in_h, in_w, in_c, out_h, out_w, out_c, kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left;
  uint32_t depthwise, rows_per_chunk, chunks, weights;
} conv_push;

typedef struct data_gemm_push {
  uint32_t m, n4, k4, ntiles, tiles_per_group, dy_base, w_base;
} data_gemm_push;

typedef struct filter_gemm_push {
  uint32_t rows, out_c, k, in_c, in_h, in_w, out_h, out_w, kernel_w, stride_h, stride_w, pad_top, pad_left;
  uint32_t rows_per_chunk, chunks, co_groups, k_groups, dy_base, x_base, x_last;
} filter_gemm_push;

int fr_tops_conv_create(fr_train_ops *t, fr_error *err)
{
  fr_vk_context *ctx = t->ctx;
  const fr_vk_device_info *info = fr_vk_context_device(ctx);
  fr_tops_conv *f = &t->fast;
  fr_vk_binding_kind st[3] = {FR_BIND_STORAGE, FR_BIND_STORAGE, FR_BIND_STORAGE};
  int rc = fr_vk_kernel_create(ctx, "train_conv_bwd_data", 3, st, 14 * 4, &t->wg, 1, &t->bwd_data, err);
  if (!rc)
    rc = fr_vk_kernel_create(ctx, "train_conv_bwd_filter", 3, st, sizeof(conv_push), &t->wg, 1, &t->bwd_filter,
                             err);
  f->cpu = info->type == VK_PHYSICAL_DEVICE_TYPE_CPU;
  f->texel_ok = info->has_texel_rgba32f && info->subgroup_size >= 8 &&
                (info->subgroup_ops & VK_SUBGROUP_FEATURE_SHUFFLE_BIT) && info->max_push_constants >= 128 &&
                fr_tops_clamp_wg(info, 8) == 8;
  if (rc || !f->texel_ok)
    return rc;
  /* On a CPU one subgroup per workgroup keeps a workgroup's rows in one core's cache. */
  f->gemm_wg = fr_tops_clamp_wg(info, f->cpu ? info->subgroup_size : GEMM_WG);
  f->filter_wg = f->cpu ? FILTER_LANES : fr_tops_clamp_wg(info, GEMM_WG) / FILTER_LANES * FILTER_LANES;
  fr_vk_binding_kind tt_s[3] = {FR_BIND_TEXEL, FR_BIND_TEXEL, FR_BIND_STORAGE};
  const char *data_name = info->has_int64 ? "train_conv_bwd_data_gemm_64" : "train_conv_bwd_data_gemm";
  uint32_t spec[3] = {f->gemm_wg, 0, 0};
  rc = fr_vk_kernel_create(ctx, data_name, 3, tt_s, sizeof(data_gemm_push), spec, 2, &f->data_gemm, err);
  for (int i = 0; i < 3 && f->cpu && !rc; i++) {
    spec[1] = fixed_k4[i];
    rc = fr_vk_kernel_create(ctx, data_name, 3, tt_s, sizeof(data_gemm_push), spec, 2, &f->data_gemm_fixed[i], err);
  }
  for (uint32_t im2col = 0; im2col < 2 && !rc; im2col++) {
    uint32_t fs[3] = {f->filter_wg, f->filter_wg / FILTER_LANES, im2col};
    rc = fr_vk_kernel_create(ctx, "train_conv_bwd_filter_gemm", 3, tt_s, sizeof(filter_gemm_push), fs, 3,
                             &f->filter_gemm[im2col], err);
  }
  if (!rc)
    rc = fr_tops_dw_create(t, err);
  return rc;
}

void fr_tops_conv_destroy(fr_train_ops *t)
{
  fr_tops_conv *f = &t->fast;
  fr_tops_dw_destroy(t);
  fr_vk_kernel *k[] = {t->bwd_data, t->bwd_filter, f->data_gemm, f->data_gemm_fixed[0], f->data_gemm_fixed[1],
                       f->data_gemm_fixed[2], f->filter_gemm[0], f->filter_gemm[1]};
  for (size_t i = 0; i < sizeof(k) / sizeof(k[0]); i++)
    fr_vk_kernel_destroy(t->ctx, k[i]);
}

static size_t conv_weight_count(const fr_conv_params *p)
{
  return p->depthwise ? (size_t)p->kernel_h * p->kernel_w * p->out_c
                      : (size_t)p->out_c * p->kernel_h * p->kernel_w * p->in_c;
}

static int is_pointwise(const fr_conv_params *p)
{
  return p->kernel_h == 1 && p->kernel_w == 1 && p->stride_h == 1 && p->stride_w == 1 && p->pad_top == 0 &&
         p->pad_left == 0 && p->in_h == p->out_h && p->in_w == p->out_w;
}

static conv_kind choose(const fr_train_ops *t, const fr_conv_params *p, int filter)
{
  if (!t->fast.texel_ok)
    return KIND_DIRECT;
  if (p->depthwise)
    return fr_tops_dw_supports(t, p, filter) ? KIND_DW : KIND_DIRECT;
  if (p->out_c % 4)
    return KIND_DIRECT;
  if (!filter)
    return is_pointwise(p) && p->in_c % 4 == 0 ? KIND_GEMM : KIND_DIRECT;
  return is_pointwise(p) && p->in_c % 4 == 0 ? KIND_GEMM : KIND_IM2COL;
}

/* The weight gradient's row chunks for the GEMM kernel: enough chunks that the
 * dispatch has FILTER_TARGET_GROUPS workgroups, each of at least CHUNK_MIN_ROWS rows. */
static void filter_gemm_chunking(const fr_train_ops *t, const fr_conv_params *p, uint32_t *rows_per_chunk,
                                 uint32_t *chunks, uint32_t *co_groups, uint32_t *k_groups)
{
  uint64_t rows = (uint64_t)p->batch * p->out_h * p->out_w;
  uint32_t k = (uint32_t)(p->kernel_h * p->kernel_w * p->in_c);
  uint32_t kb_per_wg = t->fast.filter_wg ? t->fast.filter_wg / FILTER_LANES : 1;
  *co_groups = fr_div_up((uint32_t)p->out_c / 4, FILTER_LANES);
  *k_groups = fr_div_up(fr_div_up(k, FILTER_KB), kb_per_wg);
  uint64_t per_chunk = (uint64_t)*co_groups * *k_groups;
  uint64_t want = (FILTER_TARGET_GROUPS + per_chunk - 1) / per_chunk;
  uint64_t most = (rows + CHUNK_MIN_ROWS - 1) / CHUNK_MIN_ROWS;
  if (want > most)
    want = most;
  if (want < 1)
    want = 1;
  uint64_t r = (rows + want - 1) / want;
  if (r > CHUNK_MAX_ROWS)
    r = CHUNK_MAX_ROWS;
  *rows_per_chunk = (uint32_t)r;
  *chunks = (uint32_t)((rows + r - 1) / r);
}

size_t fr_train_conv_filter_scratch_floats(const fr_conv_params *p)
{
  uint32_t r, chunks;
  fr_tops_chunking((uint64_t)p->batch * p->out_h * p->out_w, &r, &chunks);
  /* The direct kernel's chunks. The dense GEMM's depend on the device's workgroup width
   * but never outnumber these (at most FILTER_TARGET_GROUPS chunks of CHUNK_MIN_ROWS rows
   * or more); the depthwise strips leave chunks x column strips partials. */
  size_t parts = chunks, dw = fr_tops_dw_filter_partials(p);
  if (dw > parts)
    parts = dw;
  size_t n = parts * conv_weight_count(p);
  return n > 0 ? n : 1;
}

const char *fr_train_conv_bwd_kernel_name(const fr_train_ops *t, const fr_conv_params *p, int filter)
{
  switch (choose(t, p, filter)) {
  case KIND_GEMM:
    return filter ? "train_conv_bwd_filter_gemm" : "train_conv_bwd_data_gemm";
  case KIND_IM2COL:
    return "train_conv_bwd_filter_gemm_i2c";
  case KIND_DW:
    return fr_tops_dw_kernel_name(t, p, filter);
  default:
    return fr_vk_kernel_name(filter ? t->bwd_filter : t->bwd_data);
  }
}

static int check_conv(const fr_conv_params *p, const char *op, fr_error *err)
{
  if (p->batch <= 0 || p->in_h <= 0 || p->in_w <= 0 || p->in_c <= 0 || p->out_h <= 0 || p->out_w <= 0 ||
      p->out_c <= 0 || p->kernel_h <= 0 || p->kernel_w <= 0 || p->stride_h <= 0 || p->stride_w <= 0 ||
      p->pad_top < 0 || p->pad_left < 0 || (p->depthwise && p->in_c != p->out_c))
    return fr_error_set(err, FR_ERR_INVALID, "%s: inconsistent shape parameters", op);
  /* Every output tap must start inside the padded input, as the forward assumes. */
  if ((int64_t)(p->out_h - 1) * p->stride_h - p->pad_top >= p->in_h ||
      (int64_t)(p->out_w - 1) * p->stride_w - p->pad_left >= p->in_w)
    return fr_error_set(err, FR_ERR_INVALID, "%s: output %dx%d does not fit input %dx%d", op, p->out_h, p->out_w,
                        p->in_h, p->in_w);
  return FR_OK;
}

int fr_tops_texel_view(const fr_train_ops *t, fr_vk_arg a, uint64_t floats, fr_vk_arg *view, uint32_t *base)
{
  const fr_vk_device_info *info = fr_vk_context_device(t->ctx);
  uint64_t align = info->min_texel_offset_alignment ? info->min_texel_offset_alignment : 16;
  if (!a.buffer || a.offset % 16 || a.offset >= a.buffer->size)
    return 0;
  uint64_t start = a.offset - a.offset % align;
  uint64_t skip = (a.offset - start) / 16;
  uint64_t bytes = (skip * 16 + floats * sizeof(float) + 15) & ~(uint64_t)15;
  if (bytes > a.buffer->size - start || bytes / 16 > info->max_texel_buffer_elements || skip > UINT32_MAX / 2)
    return 0;
  *view = (fr_vk_arg){a.buffer, start, bytes};
  *base = (uint32_t)skip;
  return 1;
}

static conv_push make_conv_push(const fr_conv_params *p)
{
  return (conv_push){(uint32_t)p->batch, (uint32_t)p->in_h, (uint32_t)p->in_w, (uint32_t)p->in_c,
                     (uint32_t)p->out_h, (uint32_t)p->out_w, (uint32_t)p->out_c, (uint32_t)p->kernel_h,
                     (uint32_t)p->kernel_w, (uint32_t)p->stride_h, (uint32_t)p->stride_w, (uint32_t)p->pad_top,
                     (uint32_t)p->pad_left, (uint32_t)(p->depthwise != 0), 0, 0, 0};
}

/* dx = dy W for a 1x1 conv; returns TOPS_FALLBACK (nothing recorded) where the texel
 * views or the grid do not fit, and the caller takes the direct kernel. */
static int record_data_gemm(fr_train_ops *t, fr_vk_sequence *seq, const fr_conv_params *p, fr_vk_arg dy,
                            fr_vk_arg weights, fr_vk_arg dx, fr_error *err)
{
  const fr_tops_conv *f = &t->fast;
  uint32_t m = (uint32_t)p->batch * p->out_h * p->out_w, k4 = (uint32_t)p->out_c / 4, n4 = (uint32_t)p->in_c / 4;
  data_gemm_push push = {m, n4, k4, fr_div_up((uint32_t)p->in_c, GEMM_T), 0, 0, 0};
  fr_vk_arg args[3] = {{0}, {0}, dx};
  if (!fr_tops_texel_view(t, dy, (uint64_t)m * p->out_c, &args[0], &push.dy_base) ||
      !fr_tops_texel_view(t, weights, conv_weight_count(p), &args[1], &push.w_base))
    return TOPS_FALLBACK;
  /* A CPU runs a workgroup on one core: give it every column tile, so its rows of dy are
   * read from memory once. lavapipe cuts loops past ~65k iterations. */
  uint32_t per_group = f->cpu ? push.ntiles : 1, max_group = 32768 / k4;
  if (per_group > max_group)
    per_group = max_group ? max_group : 1;
  push.tiles_per_group = per_group;
  uint32_t gx = fr_div_up(m, f->gemm_wg * GEMM_R), gy = fr_div_up(push.ntiles, per_group);
  const fr_vk_device_info *info = fr_vk_context_device(t->ctx);
  if (gx > info->max_workgroup_count[0] || gy > info->max_workgroup_count[1])
    return TOPS_FALLBACK;
  const fr_vk_kernel *k = f->data_gemm;
  for (int i = 0; i < 3; i++)
    if (f->data_gemm_fixed[i] && fixed_k4[i] == k4)
      k = f->data_gemm_fixed[i];
  return fr_vk_sequence_dispatch(seq, k, args, &push, gx, gy, 1, NULL, err);
}

int fr_train_record_conv_bwd_data(fr_train_ops *t, fr_vk_sequence *seq, const fr_conv_params *p, fr_vk_arg dy,
                                  fr_vk_arg weights, fr_vk_arg dx, fr_error *err)
{
  const char *op = "conv backward (data)";
  int rc = check_conv(p, op, err);
  uint64_t in_n = (uint64_t)p->batch * p->in_h * p->in_w * p->in_c;
  uint64_t out_n = (uint64_t)p->batch * p->out_h * p->out_w * p->out_c;
  if (!rc)
    rc = fr_tops_need(dy, out_n, op, "dy", err);
  if (!rc)
    rc = fr_tops_need(weights, conv_weight_count(p), op, "weights", err);
  if (!rc)
    rc = fr_tops_need(dx, in_n, op, "dx", err);
  if (rc)
    return rc;
  conv_kind kind = choose(t, p, 0);
  rc = TOPS_FALLBACK;
  if (kind == KIND_GEMM && in_n <= UINT32_MAX)
    rc = record_data_gemm(t, seq, p, dy, weights, dx, err);
  else if (kind == KIND_DW)
    rc = fr_tops_dw_record_data(t, seq, p, dy, weights, dx, err);
  if (rc != TOPS_FALLBACK)
    return rc;
  conv_push push = make_conv_push(p);
  fr_vk_arg args[3] = {dy, weights, dx};
  return fr_tops_dispatch(t, seq, t->bwd_data, args, &push, in_n, err);
}

/* First stage of the dense weight gradient into part (or straight into dw when one
 * chunk covers every row); TOPS_FALLBACK where the caller must take the direct kernel. */
static int record_filter_gemm(fr_train_ops *t, fr_vk_sequence *seq, const fr_conv_params *p, conv_kind kind,
                              fr_vk_arg x, fr_vk_arg dy, fr_vk_arg scratch, fr_vk_arg dw, fr_error *err)
{
  uint32_t rows = (uint32_t)p->batch * p->out_h * p->out_w, k = (uint32_t)(p->kernel_h * p->kernel_w * p->in_c);
  filter_gemm_push push = {rows, (uint32_t)p->out_c, k, (uint32_t)p->in_c, (uint32_t)p->in_h, (uint32_t)p->in_w,
                           (uint32_t)p->out_h, (uint32_t)p->out_w, (uint32_t)p->kernel_w, (uint32_t)p->stride_h,
                           (uint32_t)p->stride_w, (uint32_t)p->pad_top, (uint32_t)p->pad_left, 0, 0, 0, 0, 0, 0, 0};
  filter_gemm_chunking(t, p, &push.rows_per_chunk, &push.chunks, &push.co_groups, &push.k_groups);
  size_t w_n = conv_weight_count(p);
  if ((size_t)push.chunks * w_n > fr_train_conv_filter_scratch_floats(p))
    return fr_error_set(err, FR_ERR_INTERNAL, "conv backward (filter): %u chunks overflow the scratch", push.chunks);
  fr_vk_arg args[3] = {{0}, {0}, push.chunks == 1 ? dw : scratch};
  uint64_t in_n = (uint64_t)p->batch * p->in_h * p->in_w * p->in_c;
  if (!fr_tops_texel_view(t, dy, (uint64_t)rows * p->out_c, &args[0], &push.dy_base) ||
      !fr_tops_texel_view(t, x, in_n, &args[1], &push.x_base))
    return TOPS_FALLBACK;
  push.x_last = (uint32_t)(args[1].range / 16 - 1);
  uint64_t groups = (uint64_t)push.chunks * push.co_groups * push.k_groups;
  const fr_vk_device_info *info = fr_vk_context_device(t->ctx);
  uint32_t gx = groups <= info->max_workgroup_count[0] ? (uint32_t)groups : info->max_workgroup_count[0];
  uint64_t gy = (groups + gx - 1) / gx;
  if (gy > info->max_workgroup_count[1])
    return TOPS_FALLBACK;
  int rc = fr_vk_sequence_dispatch(seq, t->fast.filter_gemm[kind == KIND_IM2COL], args, &push, gx, (uint32_t)gy, 1,
                                   NULL, err);
  if (rc || push.chunks == 1)
    return rc;
  fr_vk_sequence_barrier(seq);
  return fr_tops_reduce_final(t, seq, (uint32_t)w_n, push.chunks, 1.0f, (fr_vk_arg){0}, scratch, dw, err);
}

int fr_train_record_conv_bwd_filter(fr_train_ops *t, fr_vk_sequence *seq, const fr_conv_params *p, fr_vk_arg x,
                                    fr_vk_arg dy, fr_vk_arg scratch, fr_vk_arg dw, fr_error *err)
{
  const char *op = "conv backward (filter)";
  int rc = check_conv(p, op, err);
  uint64_t in_n = (uint64_t)p->batch * p->in_h * p->in_w * p->in_c;
  uint64_t out_n = (uint64_t)p->batch * p->out_h * p->out_w * p->out_c;
  size_t w_n = conv_weight_count(p);
  if (!rc)
    rc = fr_tops_need(x, in_n, op, "x", err);
  if (!rc)
    rc = fr_tops_need(dy, out_n, op, "dy", err);
  if (!rc)
    rc = fr_tops_need(scratch, fr_train_conv_filter_scratch_floats(p), op, "scratch", err);
  if (!rc)
    rc = fr_tops_need(dw, w_n, op, "dw", err);
  if (rc)
    return rc;
  conv_kind kind = choose(t, p, 1);
  rc = TOPS_FALLBACK;
  if ((kind == KIND_GEMM || kind == KIND_IM2COL) && out_n <= UINT32_MAX && in_n <= UINT32_MAX)
    rc = record_filter_gemm(t, seq, p, kind, x, dy, scratch, dw, err);
  else if (kind == KIND_DW)
    rc = fr_tops_dw_record_filter(t, seq, p, x, dy, scratch, dw, err);
  if (rc != TOPS_FALLBACK)
    return rc;
  conv_push push = make_conv_push(p);
  fr_tops_chunking((uint64_t)p->batch * p->out_h * p->out_w, &push.rows_per_chunk, &push.chunks);
  push.weights = (uint32_t)w_n;
  fr_vk_arg args[3] = {x, dy, scratch};
  rc = fr_tops_dispatch(t, seq, t->bwd_filter, args, &push, (uint64_t)push.chunks * w_n, err);
  if (rc)
    return rc;
  fr_vk_sequence_barrier(seq);
  return fr_tops_reduce_final(t, seq, (uint32_t)w_n, push.chunks, 1.0f, (fr_vk_arg){0}, scratch, dw, err);
}
