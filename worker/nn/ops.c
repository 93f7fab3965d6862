/* Host side of the device ops: kernel choice, weight packing, dispatch shapes.
 *
 * Kernel families (chosen from the shape and the device, never from the batch, so
 * weights packed once stay valid for every batch chunk):
 *   conv_gemm     1x1 convs / linear layers, K % 4 == 0: texel-fed register-tiled GEMM
 *   conv_gemm_win dense convs with kernel_w * in_c <= 9 (the stem): implicit im2col, 3
 *                 texels per kernel row
 *   conv_gemm_i2c other dense convs: implicit im2col one scalar at a time
 *   conv_dw       depthwise convs with channels % 4 == 0
 *   conv_direct   everything else, and every conv on devices without usable texel buffers
 * Outputs with out_c % 4 == 0 use the *_64 builds where the device has shaderInt64:
 * lavapipe stores per lane and per component, so two 64-bit halves per texel halve the
 * store work (about half of a depthwise conv's time). On CPU devices the GEMMs with a
 * k-step count in fixed_shapes get a pipeline specialised for it (A fetched once per
 * lane instead of once per column tile). */
#include <stdlib.h>
#include <string.h>

#include "faceri/ops.h"

#define WG 64u
/* Must match R, CG and WL in shaders/conv_gemm.glsl. */
#define GEMM_R 4u
#define GEMM_CG 2u
#define GEMM_WL 8u /* lanes that share one fetch of weight texels: the narrowest subgroup */
/* GEMMs specialised for a k-step count on CPU devices: MobileFaceNet's 1x1 convs with
 * K = 64, 128 and 256, and its 3x3 stem (the window kind: 3 k-steps per kernel row).
 * K = 512 is left out: it is a few ms, and each unrolled variant costs compile time. */
#define GEMM_NFIXED 4
static const struct {
  uint32_t kind, k4; /* kind: spec constant IM2COL */
} fixed_shapes[GEMM_NFIXED] = {{0, 16}, {0, 32}, {0, 64}, {2, 9}};
#define GEMM_T (4u * GEMM_CG)
/* Must match P in shaders/conv_dw.glsl: output pixels along x per lane. */
#define DW_P 4u
/* Longest strip of output rows one depthwise lane computes. */
#define DW_ROWS_CPU 8u
#define DW_ROWS_GPU 2u

typedef enum conv_kind { KIND_DIRECT, KIND_GEMM, KIND_IM2COL, KIND_WINDOW, KIND_DW, KIND_DW3S1, KIND_DW3S2 } conv_kind;

struct fr_ops {
  fr_vk_context *ctx;
  fr_vk_kernel *conv_direct, *dw, *dw3s1, *dw3s2, *l2norm;
  /* [kind][out]: out 1 for out_c % 4 == 0 (whole-texel stores, 64-bit halves where the
   * device has shaderInt64), 0 any out_c. */
  fr_vk_kernel *gemm[3][2];
  /* CPU devices: GEMMs specialised as fixed_shapes[i] says ([i][out] as above). */
  fr_vk_kernel *gemm_fixed[GEMM_NFIXED][2];
  int texel_ok;               /* the texel-fed kernels exist on this device */
  int cpu;                    /* a CPU device (lavapipe): fewer, longer invocations */
  uint32_t direct_wg, gemm_wg, dw_wg;
};

typedef struct conv_push {
  uint32_t batch, in_h, in_w, in_c, out_h, out_w, out_c, kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left;
  uint32_t act, has_residual, depthwise;
} conv_push;

typedef struct gemm_push {
  uint32_t m, n, k4, ntiles, tiles_per_group, act, has_residual;
  uint32_t in_h, in_w, in_c, out_h, out_w, kernel_w, stride_h, stride_w, pad_top, pad_left, k;
} gemm_push;

typedef struct dw_push {
  uint32_t batch, in_h, in_w, c4, out_h, out_w, kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left;
  uint32_t act, has_residual, x_tiles, y_tiles, rows;
} dw_push;

static uint32_t clamp_wg(const fr_vk_device_info *info, uint32_t want)
{
  uint32_t lim = info->max_workgroup_size[0] < info->max_workgroup_invocations ? info->max_workgroup_size[0]
                                                                                 : info->max_workgroup_invocations;
  return want < lim ? want : lim;
}

int fr_ops_create(fr_vk_context *ctx, fr_ops **out, fr_error *err)
{
  *out = NULL;
  fr_ops *ops = calloc(1, sizeof(*ops));
  if (!ops)
    return fr_error_set(err, FR_ERR_NOMEM, "ops: out of memory");
  ops->ctx = ctx;
  const fr_vk_device_info *info = fr_vk_context_device(ctx);
  ops->cpu = info->type == VK_PHYSICAL_DEVICE_TYPE_CPU;
  /* The texel kernels need RGBA32F texel views (the engine keeps every binding within
   * maxTexelBufferElements texels, and the view creation checks it), and subgroups
   * with shuffles, at least GEMM_WL lanes wide to hand out a k-step of weights. */
  ops->texel_ok = info->has_texel_rgba32f && info->subgroup_size >= GEMM_WL &&
                  (info->subgroup_ops & VK_SUBGROUP_FEATURE_SHUFFLE_BIT) &&
                  info->max_push_constants >= sizeof(gemm_push);
  const fr_vk_binding_kind six_storage[6] = {FR_BIND_STORAGE, FR_BIND_STORAGE, FR_BIND_STORAGE,
                                             FR_BIND_STORAGE, FR_BIND_STORAGE, FR_BIND_STORAGE};
  const fr_vk_binding_kind texel_in[6] = {FR_BIND_TEXEL, FR_BIND_TEXEL, FR_BIND_TEXEL,
                                          FR_BIND_TEXEL, FR_BIND_TEXEL, FR_BIND_STORAGE};
  ops->direct_wg = clamp_wg(info, WG);
  int rc = fr_vk_kernel_create(ctx, "conv_direct", 6, six_storage, sizeof(conv_push), &ops->direct_wg, 1,
                               &ops->conv_direct, err);
  uint32_t wg_norm = clamp_wg(info, 64);
  if (!rc)
    rc = fr_vk_kernel_create(ctx, "l2norm", 3, six_storage, 8, &wg_norm, 1, &ops->l2norm, err);
  if (!rc && ops->texel_ok) {
    /* On a CPU one subgroup per workgroup keeps each workgroup's rows in one core's cache. */
    ops->gemm_wg = clamp_wg(info, ops->cpu ? info->subgroup_size : WG);
    ops->dw_wg = clamp_wg(info, ops->cpu ? info->subgroup_size : WG);
    /* Variants [..][1] store two 64-bit halves per texel (out_c % 4 == 0). */
    const char *gemm64 = info->has_int64 ? "conv_gemm_64" : "conv_gemm";
    /* spec 1 (IM2COL) is the GEMM kind: 0 plain, 1 im2col, 2 window. */
    for (uint32_t kind = 0; kind < 3 && !rc; kind++) {
      uint32_t spec[3] = {ops->gemm_wg, kind, 0};
      rc = fr_vk_kernel_create(ctx, "conv_gemm", 6, texel_in, sizeof(gemm_push), spec, 3, &ops->gemm[kind][0], err);
      if (!rc)
        rc = fr_vk_kernel_create(ctx, gemm64, 6, texel_in, sizeof(gemm_push), spec, 3, &ops->gemm[kind][1],
                                 err);
    }
    /* A GPU would spill the unrolled A block to scratch: only CPUs get these. */
    for (int i = 0; i < GEMM_NFIXED && ops->cpu && !rc; i++) {
      uint32_t spec[3] = {ops->gemm_wg, fixed_shapes[i].kind, fixed_shapes[i].k4};
      rc = fr_vk_kernel_create(ctx, "conv_gemm", 6, texel_in, sizeof(gemm_push), spec, 3, &ops->gemm_fixed[i][0],
                               err);
      if (!rc)
        rc = fr_vk_kernel_create(ctx, gemm64, 6, texel_in, sizeof(gemm_push), spec, 3,
                                 &ops->gemm_fixed[i][1], err);
    }
    uint32_t spec_dw[3][3] = {{ops->dw_wg, 0, 1}, {ops->dw_wg, 3, 1}, {ops->dw_wg, 3, 2}};
    fr_vk_kernel **dw[3] = {&ops->dw, &ops->dw3s1, &ops->dw3s2};
    for (int i = 0; i < 3 && !rc; i++)
      rc = fr_vk_kernel_create(ctx, info->has_int64 ? "conv_dw_64" : "conv_dw", 6, texel_in, sizeof(dw_push),
                               spec_dw[i], 3, dw[i], err);
  }
  if (rc) {
    fr_ops_destroy(ops);
    return rc;
  }
  *out = ops;
  return FR_OK;
}

void fr_ops_destroy(fr_ops *ops)
{
  if (!ops)
    return;
  fr_vk_kernel_destroy(ops->ctx, ops->conv_direct);
  for (int j = 0; j < 2; j++) {
    for (int i = 0; i < 3; i++)
      fr_vk_kernel_destroy(ops->ctx, ops->gemm[i][j]);
    for (int i = 0; i < GEMM_NFIXED; i++)
      fr_vk_kernel_destroy(ops->ctx, ops->gemm_fixed[i][j]);
  }
  fr_vk_kernel_destroy(ops->ctx, ops->dw);
  fr_vk_kernel_destroy(ops->ctx, ops->dw3s1);
  fr_vk_kernel_destroy(ops->ctx, ops->dw3s2);
  fr_vk_kernel_destroy(ops->ctx, ops->l2norm);
  free(ops);
}

static conv_kind choose_kernel(const fr_ops *ops, const fr_conv_params *p)
{
  if (!ops->texel_ok)
    return KIND_DIRECT;
  if (p->depthwise) {
    if (p->out_c % 4)
      return KIND_DIRECT;
    if (p->kernel_h == 3 && p->kernel_w == 3 && (p->stride_w == 1 || p->stride_w == 2))
      return p->stride_w == 1 ? KIND_DW3S1 : KIND_DW3S2;
    return KIND_DW;
  }
  if (p->kernel_h == 1 && p->kernel_w == 1 && p->stride_h == 1 && p->stride_w == 1 && p->pad_top == 0 &&
      p->pad_left == 0 && p->in_h == p->out_h && p->in_w == p->out_w && p->in_c % 4 == 0)
    return KIND_GEMM;
  return p->kernel_w * p->in_c <= 9 ? KIND_WINDOW : KIND_IM2COL;
}

const char *fr_ops_conv_kernel_name(const fr_ops *ops, const fr_conv_params *p)
{
  switch (choose_kernel(ops, p)) {
  case KIND_GEMM:
    return "conv_gemm";
  case KIND_IM2COL:
    return "conv_gemm_i2c";
  case KIND_WINDOW:
    return "conv_gemm_win";
  case KIND_DW:
    return "conv_dw";
  case KIND_DW3S1:
    return "conv_dw3s1";
  case KIND_DW3S2:
    return "conv_dw3s2";
  default:
    return "conv_direct";
  }
}

static size_t gemm_k(const fr_conv_params *p) { return (size_t)p->kernel_h * p->kernel_w * p->in_c; }
/* k-steps of 4 in the packed weights: the window kernel gives each kernel row 12 slots. */
static size_t gemm_k4(const fr_conv_params *p, conv_kind kind)
{
  return kind == KIND_WINDOW ? (size_t)p->kernel_h * 3 : (gemm_k(p) + 3) / 4;
}
static size_t gemm_tiles(const fr_conv_params *p) { return ((size_t)p->out_c + GEMM_T - 1) / GEMM_T; }

size_t fr_ops_packed_weight_count(const fr_ops *ops, const fr_conv_params *p)
{
  conv_kind kind = choose_kernel(ops, p);
  if (kind == KIND_GEMM || kind == KIND_IM2COL || kind == KIND_WINDOW)
    return gemm_tiles(p) * gemm_k4(p, kind) * GEMM_T * 4;
  if (p->depthwise)
    return (size_t)p->kernel_h * p->kernel_w * p->out_c;
  return (size_t)p->out_c * p->kernel_h * p->kernel_w * p->in_c;
}

/* GEMM layout: for column tile t (4*CG output channels) and k-step k4 (4 inputs),
 * T texels; texel kk*CG + g holds W[t*4*CG + 4g + 0..3][4*k4 + kk], zero-padded. This
 * is the order in which the subgroup's lanes fetch and broadcast them. */
static void pack_gemm(const fr_conv_params *p, conv_kind kind, const float *w, float *packed)
{
  size_t k = gemm_k(p), k4n = gemm_k4(p, kind), tiles = gemm_tiles(p), row = (size_t)p->kernel_w * p->in_c;
  for (size_t t = 0; t < tiles; t++)
    for (size_t k4 = 0; k4 < k4n; k4++)
      for (size_t kk = 0; kk < 4; kk++)
        for (size_t g = 0; g < GEMM_CG; g++)
          for (size_t c = 0; c < 4; c++) {
            size_t n = t * GEMM_T + 4 * g + c, ki = 4 * k4 + kk;
            int ok = ki < k;
            if (kind == KIND_WINDOW) { /* slot ki = ky * 12 + j holds tap j of kernel row ky */
              ok = ki % 12 < row;
              ki = ki / 12 * row + ki % 12;
            }
            size_t o = (((t * k4n + k4) * GEMM_T) + kk * GEMM_CG + g) * 4 + c;
            packed[o] = n < (size_t)p->out_c && ok ? w[n * k + ki] : 0.0f;
          }
}

void fr_ops_pack_conv_weights(const fr_ops *ops, const fr_conv_params *p, const float *weights, float *packed)
{
  conv_kind kind = choose_kernel(ops, p);
  if (kind == KIND_GEMM || kind == KIND_IM2COL || kind == KIND_WINDOW)
    pack_gemm(p, kind, weights, packed);
  else
    memcpy(packed, weights, fr_ops_packed_weight_count(ops, p) * sizeof(float));
}

size_t fr_ops_packed_channel_count(const fr_conv_params *p) { return ((size_t)p->out_c + 3) & ~(size_t)3; }

void fr_ops_pack_channels(const fr_conv_params *p, const float *values, float *packed)
{
  size_t n = fr_ops_packed_channel_count(p);
  memset(packed, 0, n * sizeof(float));
  if (values)
    memcpy(packed, values, (size_t)p->out_c * sizeof(float));
}

size_t fr_ops_tensor_bytes(const fr_ops *ops, int n, int h, int w, int c)
{
  (void)ops;
  return ((size_t)n * h * w * c * sizeof(float) + 15) & ~(size_t)15;
}

/* Splits a 1-D launch of `groups` workgroups over x and y so x stays within the device limit. */
static void grid_for(const fr_vk_context *ctx, uint64_t groups, uint32_t *gx, uint32_t *gy)
{
  uint32_t max_x = fr_vk_context_device(ctx)->max_workgroup_count[0];
  if (groups <= max_x) {
    *gx = (uint32_t)groups;
    *gy = 1;
  } else {
    *gx = max_x;
    *gy = (uint32_t)((groups + max_x - 1) / max_x);
  }
}

static int check_conv(const fr_conv_params *p, fr_error *err)
{
  if (p->batch <= 0 || p->in_h <= 0 || p->in_w <= 0 || p->in_c <= 0 || p->out_h <= 0 || p->out_w <= 0 ||
      p->out_c <= 0 || p->kernel_h <= 0 || p->kernel_w <= 0 || p->stride_h <= 0 || p->stride_w <= 0 ||
      p->pad_top < 0 || p->pad_left < 0 || (p->depthwise && p->in_c != p->out_c))
    return fr_error_set(err, FR_ERR_INVALID, "conv: inconsistent shape parameters");
  return FR_OK;
}

/* A texel view over exactly the tensor (rounded up to whole texels), so a binding
 * never spans more than the data and the last partial texel is still inside. */
static int texel_arg(fr_vk_arg a, size_t floats, const char *what, fr_vk_arg *out, fr_error *err)
{
  uint64_t bytes = ((uint64_t)floats * sizeof(float) + 15) & ~(uint64_t)15;
  uint64_t avail = a.buffer ? (a.range ? a.range : a.buffer->size - (a.offset < a.buffer->size ? a.offset : 0)) : 0;
  if (!a.buffer || a.offset >= a.buffer->size || avail < bytes)
    return fr_error_set(err, FR_ERR_INVALID,
                        "conv %s: the binding holds %llu bytes, the kernel reads %llu (allocate tensors with "
                        "fr_ops_tensor_bytes)",
                        what, (unsigned long long)avail, (unsigned long long)bytes);
  *out = a;
  out->range = bytes;
  return FR_OK;
}

static int record_gemm(fr_ops *ops, fr_vk_sequence *seq, const fr_conv_params *p, conv_kind kind,
                       const fr_vk_arg *args, const char *label, fr_error *err)
{
  uint32_t m = (uint32_t)p->batch * p->out_h * p->out_w, k = (uint32_t)gemm_k(p);
  uint32_t tiles = (uint32_t)gemm_tiles(p);
  /* A CPU runs each workgroup on one core: give it every column tile so its rows are
   * read from memory once. A GPU wants many small workgroups instead. */
  uint32_t per_group = ops->cpu ? tiles : 1;
  /* lavapipe silently cuts loops past ~65k iterations per invocation (DESIGN §3). */
  uint32_t k4 = (uint32_t)gemm_k4(p, kind), max_group = 32768 / (k4 ? k4 : 1);
  if (per_group > max_group)
    per_group = max_group ? max_group : 1;
  gemm_push push = {m, (uint32_t)p->out_c, k4, tiles, per_group, (uint32_t)p->activation,
                    (uint32_t)(p->has_residual != 0), (uint32_t)p->in_h, (uint32_t)p->in_w, (uint32_t)p->in_c,
                    (uint32_t)p->out_h, (uint32_t)p->out_w, (uint32_t)p->kernel_w, (uint32_t)p->stride_h,
                    (uint32_t)p->stride_w, (uint32_t)p->pad_top, (uint32_t)p->pad_left, k};
  uint32_t gx = fr_div_up(m, ops->gemm_wg * GEMM_R), gy = fr_div_up(tiles, per_group);
  if (gx > fr_vk_context_device(ops->ctx)->max_workgroup_count[0])
    return fr_error_set(err, FR_ERR_UNSUPPORTED, "conv %s: %u output rows need more workgroups than the device has",
                        label ? label : "", m);
  int texel_out = p->out_c % 4 == 0;
  uint32_t spec_kind = kind == KIND_GEMM ? 0 : kind == KIND_IM2COL ? 1 : 2;
  const fr_vk_kernel *kernel = ops->gemm[spec_kind][texel_out];
  for (int i = 0; i < GEMM_NFIXED; i++)
    if (ops->gemm_fixed[i][texel_out] && fixed_shapes[i].kind == spec_kind && fixed_shapes[i].k4 == k4)
      kernel = ops->gemm_fixed[i][texel_out];
  return fr_vk_sequence_dispatch(seq, kernel, args, &push, gx, gy, 1, label, err);
}

static int record_dw(fr_ops *ops, fr_vk_sequence *seq, const fr_conv_params *p, conv_kind kind,
                     const fr_vk_arg *args, const char *label, fr_error *err)
{
  uint32_t c4 = (uint32_t)p->out_c / 4, x_tiles = fr_div_up((uint32_t)p->out_w, DW_P);
  /* Each lane slides down a strip of output rows, fetching every input row of it once:
   * long strips on a CPU (few, long invocations), short ones on a GPU (more lanes).
   * Strips of equal length, so no lane gets a short leftover. */
  uint32_t max_rows = ops->cpu ? DW_ROWS_CPU : DW_ROWS_GPU;
  uint32_t y_tiles = fr_div_up((uint32_t)p->out_h, max_rows);
  uint32_t rows = fr_div_up((uint32_t)p->out_h, y_tiles);
  dw_push push = {(uint32_t)p->batch, (uint32_t)p->in_h, (uint32_t)p->in_w, c4, (uint32_t)p->out_h,
                  (uint32_t)p->out_w, (uint32_t)p->kernel_h, (uint32_t)p->kernel_w, (uint32_t)p->stride_h,
                  (uint32_t)p->stride_w, (uint32_t)p->pad_top, (uint32_t)p->pad_left, (uint32_t)p->activation,
                  (uint32_t)(p->has_residual != 0), x_tiles, y_tiles, rows};
  uint64_t lanes = (uint64_t)p->batch * y_tiles * x_tiles * c4;
  uint32_t gx, gy;
  grid_for(ops->ctx, (lanes + ops->dw_wg - 1) / ops->dw_wg, &gx, &gy);
  const fr_vk_kernel *k = kind == KIND_DW3S1 ? ops->dw3s1 : kind == KIND_DW3S2 ? ops->dw3s2 : ops->dw;
  return fr_vk_sequence_dispatch(seq, k, args, &push, gx, gy, 1, label, err);
}

int fr_ops_record_conv(fr_ops *ops, fr_vk_sequence *seq, const fr_conv_params *p, fr_vk_arg input,
                       fr_vk_arg weights, fr_vk_arg bias, fr_vk_arg slope, fr_vk_arg residual, fr_vk_arg output,
                       const char *label, fr_error *err)
{
  int rc = check_conv(p, err);
  if (rc)
    return rc;
  conv_kind kind = choose_kernel(ops, p);
  fr_vk_arg res = p->has_residual ? residual : output;
  fr_vk_arg sl = p->activation == FR_ACT_PRELU ? slope : bias;
  if (kind != KIND_DIRECT) {
    size_t in_n = (size_t)p->batch * p->in_h * p->in_w * p->in_c;
    size_t out_n = (size_t)p->batch * p->out_h * p->out_w * p->out_c;
    fr_vk_arg args[6];
    rc = texel_arg(input, in_n, "input", &args[0], err);
    if (!rc)
      rc = texel_arg(weights, fr_ops_packed_weight_count(ops, p), "weights", &args[1], err);
    if (!rc)
      rc = texel_arg(bias, fr_ops_packed_channel_count(p), "bias", &args[2], err);
    if (!rc)
      rc = texel_arg(sl, fr_ops_packed_channel_count(p), "slope", &args[3], err);
    /* Without a residual the binding is a placeholder the shader never reads. */
    if (!rc)
      rc = texel_arg(res, p->has_residual ? out_n : 4, "residual", &args[4], err);
    if (rc)
      return rc;
    args[5] = output;
    if (kind == KIND_DW || kind == KIND_DW3S1 || kind == KIND_DW3S2)
      return record_dw(ops, seq, p, kind, args, label, err);
    return record_gemm(ops, seq, p, kind, args, label, err);
  }
  conv_push push = {(uint32_t)p->batch, (uint32_t)p->in_h, (uint32_t)p->in_w, (uint32_t)p->in_c,
                    (uint32_t)p->out_h, (uint32_t)p->out_w, (uint32_t)p->out_c, (uint32_t)p->kernel_h,
                    (uint32_t)p->kernel_w, (uint32_t)p->stride_h, (uint32_t)p->stride_w, (uint32_t)p->pad_top,
                    (uint32_t)p->pad_left, (uint32_t)p->activation, (uint32_t)(p->has_residual != 0),
                    (uint32_t)(p->depthwise != 0)};
  fr_vk_arg args[6] = {input, weights, bias, sl, res, output};
  uint64_t total = (uint64_t)p->batch * p->out_h * p->out_w * p->out_c;
  uint32_t gx, gy;
  grid_for(ops->ctx, (total + ops->direct_wg - 1) / ops->direct_wg, &gx, &gy);
  return fr_vk_sequence_dispatch(seq, ops->conv_direct, args, &push, gx, gy, 1, label, err);
}

int fr_ops_record_l2norm(fr_ops *ops, fr_vk_sequence *seq, int rows, int dim, fr_vk_arg input, fr_vk_arg output,
                         fr_vk_arg norms, const char *label, fr_error *err)
{
  if (rows <= 0 || dim <= 0)
    return fr_error_set(err, FR_ERR_INVALID, "l2norm: %d rows of %d", rows, dim);
  uint32_t push[2] = {(uint32_t)rows, (uint32_t)dim};
  fr_vk_arg args[3] = {input, output, norms};
  return fr_vk_sequence_dispatch(seq, ops->l2norm, args, push, (uint32_t)rows, 1, 1, label, err);
}
