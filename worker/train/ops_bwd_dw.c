/* Depthwise convolution backward passes on the texel-fed kernels (channels % 4 == 0):
 * 3x3 kernels with equal strides of 1 or 2 take the strip kernels (KS = 3), any other
 * depthwise shape (the 7x7 global conv) the per-tap ones (KS = 0). Chunking is a
 * function of the shape alone, so two runs reduce in the same order. */
#include "ops_bwd_dw.h"

#define DW_P 4u        /* dx / output pixels per lane along x: P in the shaders */
#define DW_ROWS_CPU 8u /* dx rows per lane of the input gradient (even, for stride 2) */
#define DW_ROWS_GPU 2u
/* Weight gradient: lanes a dispatch should have (chunks are added until it does), and
 * the fewest output rows per chunk. */
#define DW_TARGET_LANES 4096u
#define DW_MIN_ROWS 8u

typedef struct dw_push {
  uint32_t batch, in_h, in_w, c4, out_h, out_w, kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left;
  uint32_t x_tiles, y_tiles_or_rows_per_chunk, rows_or_chunks, base0, base1;
} dw_push;

static const char *name_data[2] = {"train_dw_bwd_data", "train_dw_bwd_data_64"};

int fr_tops_dw_create(fr_train_ops *t, fr_error *err)
{
  fr_tops_conv *f = &t->fast;
  const fr_vk_device_info *info = fr_vk_context_device(t->ctx);
  f->dw_wg = fr_tops_clamp_wg(info, f->cpu ? info->subgroup_size : 64);
  fr_vk_binding_kind kinds[3] = {FR_BIND_TEXEL, FR_BIND_TEXEL, FR_BIND_STORAGE};
  int rc = FR_OK;
  /* [0]: 3x3 stride 1, [1]: 3x3 stride 2, [2]: any (one kernel serves both gradients' generic case) */
  for (uint32_t i = 0; i < 3 && !rc; i++) {
    uint32_t spec[3] = {f->dw_wg, i < 2 ? 3u : 0u, i < 2 ? i + 1 : 1u};
    rc = fr_vk_kernel_create(t->ctx, name_data[info->has_int64 != 0], 3, kinds, sizeof(dw_push), spec, 3,
                             &f->dw_data[i], err);
    if (!rc)
      rc = fr_vk_kernel_create(t->ctx, "train_dw_bwd_filter", 3, kinds, sizeof(dw_push), spec, 3, &f->dw_filter[i],
                               err);
  }
  return rc;
}

void fr_tops_dw_destroy(fr_train_ops *t)
{
  for (int i = 0; i < 3; i++) {
    fr_vk_kernel_destroy(t->ctx, t->fast.dw_data[i]);
    fr_vk_kernel_destroy(t->ctx, t->fast.dw_filter[i]);
  }
}

/* 0: stride-1 3x3 strips, 1: stride-2 strips, 2: per tap or per pixel. */
static int variant(const fr_conv_params *p)
{
  if (p->kernel_h == 3 && p->kernel_w == 3 && p->stride_h == p->stride_w && (p->stride_h == 1 || p->stride_h == 2))
    return p->stride_h - 1;
  return 2;
}

int fr_tops_dw_supports(const fr_train_ops *t, const fr_conv_params *p, int filter)
{
  (void)filter;
  return t->fast.texel_ok && p->depthwise && p->out_c % 4 == 0;
}

const char *fr_tops_dw_kernel_name(const fr_train_ops *t, const fr_conv_params *p, int filter)
{
  (void)t;
  static const char *names[2][3] = {{"train_dw_bwd_data_s1", "train_dw_bwd_data_s2", "train_dw_bwd_data"},
                                    {"train_dw_bwd_filter_s1", "train_dw_bwd_filter_s2", "train_dw_bwd_filter"}};
  return names[filter != 0][variant(p)];
}

static dw_push make_push(const fr_conv_params *p)
{
  return (dw_push){(uint32_t)p->batch, (uint32_t)p->in_h, (uint32_t)p->in_w, (uint32_t)p->out_c / 4,
                   (uint32_t)p->out_h, (uint32_t)p->out_w, (uint32_t)p->kernel_h, (uint32_t)p->kernel_w,
                   (uint32_t)p->stride_h, (uint32_t)p->stride_w, (uint32_t)p->pad_top, (uint32_t)p->pad_left,
                   0, 0, 0, 0, 0};
}

static int dispatch_lanes(fr_train_ops *t, fr_vk_sequence *seq, const fr_vk_kernel *k, const fr_vk_arg *args,
                          const dw_push *push, uint64_t lanes, fr_error *err)
{
  const fr_vk_device_info *info = fr_vk_context_device(t->ctx);
  uint64_t groups = (lanes + t->fast.dw_wg - 1) / t->fast.dw_wg;
  uint32_t gx = groups <= info->max_workgroup_count[0] ? (uint32_t)groups : info->max_workgroup_count[0];
  uint64_t gy = gx ? (groups + gx - 1) / gx : 0;
  if (!groups)
    return FR_OK;
  if (lanes > UINT32_MAX || gy > info->max_workgroup_count[1])
    return TOPS_FALLBACK;
  return fr_vk_sequence_dispatch(seq, k, args, push, gx, (uint32_t)gy, 1, NULL, err);
}

int fr_tops_dw_record_data(fr_train_ops *t, fr_vk_sequence *seq, const fr_conv_params *p, fr_vk_arg dy,
                           fr_vk_arg weights, fr_vk_arg dx, fr_error *err)
{
  dw_push push = make_push(p);
  fr_vk_arg args[3] = {{0}, {0}, dx};
  uint64_t out_n = (uint64_t)p->batch * p->out_h * p->out_w * p->out_c;
  if (!fr_tops_texel_view(t, dy, out_n, &args[0], &push.base0) ||
      !fr_tops_texel_view(t, weights, (uint64_t)p->kernel_h * p->kernel_w * p->out_c, &args[1], &push.base1))
    return TOPS_FALLBACK;
  int v = variant(p);
  uint64_t lanes;
  if (v < 2) {
    /* Strips of equal length over the padded rows, so no lane gets a short leftover;
     * even lengths keep stride-2 row pairs aligned. */
    uint32_t padded = (uint32_t)(p->in_h + p->pad_top), most = t->fast.cpu ? DW_ROWS_CPU : DW_ROWS_GPU;
    uint32_t y_tiles = fr_div_up(padded, most), rows = fr_div_up(padded, y_tiles);
    rows += rows & 1u;
    push.x_tiles = fr_div_up((uint32_t)(p->in_w + p->pad_left), DW_P);
    push.y_tiles_or_rows_per_chunk = fr_div_up(padded, rows);
    push.rows_or_chunks = rows;
    lanes = (uint64_t)p->batch * push.y_tiles_or_rows_per_chunk * push.x_tiles * push.c4;
  } else {
    lanes = (uint64_t)p->batch * p->in_h * p->in_w * push.c4;
  }
  return dispatch_lanes(t, seq, t->fast.dw_data[v], args, &push, lanes, err);
}

/* The strip kernel's chunks of output rows (images x out_h of them) and how many
 * partial sums ([chunks][x_tiles] of them) it leaves. */
static void strip_chunking(const fr_conv_params *p, uint32_t *x_tiles, uint32_t *rows_per_chunk, uint32_t *chunks)
{
  uint64_t rows = (uint64_t)p->batch * p->out_h;
  *x_tiles = fr_div_up((uint32_t)p->out_w, DW_P);
  uint64_t per_chunk = (uint64_t)*x_tiles * ((uint32_t)p->out_c / 4);
  uint64_t want = (DW_TARGET_LANES + per_chunk - 1) / per_chunk, most = (rows + DW_MIN_ROWS - 1) / DW_MIN_ROWS;
  want = want > most ? most : want;
  want = want < 1 ? 1 : want;
  uint64_t r = (rows + want - 1) / want;
  r = r > CHUNK_MAX_ROWS ? CHUNK_MAX_ROWS : r;
  *rows_per_chunk = (uint32_t)r;
  *chunks = (uint32_t)((rows + r - 1) / r);
}

size_t fr_tops_dw_filter_partials(const fr_conv_params *p)
{
  if (!p->depthwise || p->out_c % 4 || variant(p) == 2)
    return 0;
  uint32_t x_tiles, r, chunks;
  strip_chunking(p, &x_tiles, &r, &chunks);
  return (size_t)chunks * x_tiles;
}

int fr_tops_dw_record_filter(fr_train_ops *t, fr_vk_sequence *seq, const fr_conv_params *p, fr_vk_arg x,
                             fr_vk_arg dy, fr_vk_arg scratch, fr_vk_arg dw, fr_error *err)
{
  dw_push push = make_push(p);
  uint64_t in_n = (uint64_t)p->batch * p->in_h * p->in_w * p->out_c;
  uint64_t out_n = (uint64_t)p->batch * p->out_h * p->out_w * p->out_c;
  fr_vk_arg args[3] = {{0}, {0}, scratch};
  if (!fr_tops_texel_view(t, x, in_n, &args[0], &push.base0) || !fr_tops_texel_view(t, dy, out_n, &args[1], &push.base1))
    return TOPS_FALLBACK;
  int v = variant(p);
  uint32_t taps = (uint32_t)(p->kernel_h * p->kernel_w), partials;
  uint64_t lanes;
  if (v < 2) {
    strip_chunking(p, &push.x_tiles, &push.y_tiles_or_rows_per_chunk, &push.rows_or_chunks);
    partials = push.rows_or_chunks * push.x_tiles;
    lanes = (uint64_t)partials * push.c4;
  } else {
    fr_tops_chunking((uint64_t)p->batch * p->out_h * p->out_w, &push.y_tiles_or_rows_per_chunk,
                     &push.rows_or_chunks);
    partials = push.rows_or_chunks;
    lanes = (uint64_t)partials * taps * push.c4;
  }
  size_t w_n = (size_t)taps * p->out_c;
  if ((size_t)partials * w_n > fr_train_conv_filter_scratch_floats(p))
    return fr_error_set(err, FR_ERR_INTERNAL, "depthwise backward (filter): %u partials overflow the scratch",
                        partials);
  if (partials == 1)
    args[2] = dw;
  int rc = dispatch_lanes(t, seq, t->fast.dw_filter[v], args, &push, lanes, err);
  if (rc || partials == 1)
    return rc;
  fr_vk_sequence_barrier(seq);
  return fr_tops_reduce_final(t, seq, (uint32_t)w_n, partials, 1.0f, (fr_vk_arg){0}, scratch, dw, err);
}
