/* Host side of the device ops: kernel choice, weight packing, dispatch shapes. */
#include <stdlib.h>
#include <string.h>

#include "faceri/ops.h"

#define WG 64u

struct fr_ops {
  fr_vk_context *ctx;
  fr_vk_kernel *conv_direct;
  fr_vk_kernel *l2norm;
};

typedef struct conv_push {
  uint32_t batch, in_h, in_w, in_c, out_h, out_w, out_c, kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left;
  uint32_t act, has_residual, depthwise;
} conv_push;

int fr_ops_create(fr_vk_context *ctx, fr_ops **out, fr_error *err)
{
  *out = NULL;
  fr_ops *ops = calloc(1, sizeof(*ops));
  if (!ops)
    return fr_error_set(err, FR_ERR_NOMEM, "ops: out of memory");
  ops->ctx = ctx;
  const fr_vk_binding_kind six_storage[6] = {FR_BIND_STORAGE, FR_BIND_STORAGE, FR_BIND_STORAGE,
                                             FR_BIND_STORAGE, FR_BIND_STORAGE, FR_BIND_STORAGE};
  uint32_t wg = WG;
  int rc = fr_vk_kernel_create(ctx, "conv_direct", 6, six_storage, sizeof(conv_push), &wg, 1, &ops->conv_direct, err);
  uint32_t wg_norm = 64;
  if (!rc)
    rc = fr_vk_kernel_create(ctx, "l2norm", 3, six_storage, 8, &wg_norm, 1, &ops->l2norm, err);
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
  fr_vk_kernel_destroy(ops->ctx, ops->l2norm);
  free(ops);
}

const char *fr_ops_conv_kernel_name(const fr_ops *ops, const fr_conv_params *p)
{
  (void)p;
  return fr_vk_kernel_name(ops->conv_direct);
}

size_t fr_ops_packed_weight_count(const fr_ops *ops, const fr_conv_params *p)
{
  (void)ops;
  if (p->depthwise)
    return (size_t)p->kernel_h * p->kernel_w * p->out_c;
  return (size_t)p->out_c * p->kernel_h * p->kernel_w * p->in_c;
}

void fr_ops_pack_conv_weights(const fr_ops *ops, const fr_conv_params *p, const float *weights, float *packed)
{
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

int fr_ops_record_conv(fr_ops *ops, fr_vk_sequence *seq, const fr_conv_params *p, fr_vk_arg input,
                       fr_vk_arg weights, fr_vk_arg bias, fr_vk_arg slope, fr_vk_arg residual, fr_vk_arg output,
                       const char *label, fr_error *err)
{
  int rc = check_conv(p, err);
  if (rc)
    return rc;
  conv_push push = {(uint32_t)p->batch, (uint32_t)p->in_h, (uint32_t)p->in_w, (uint32_t)p->in_c,
                    (uint32_t)p->out_h, (uint32_t)p->out_w, (uint32_t)p->out_c, (uint32_t)p->kernel_h,
                    (uint32_t)p->kernel_w, (uint32_t)p->stride_h, (uint32_t)p->stride_w, (uint32_t)p->pad_top,
                    (uint32_t)p->pad_left, (uint32_t)p->activation, (uint32_t)(p->has_residual != 0),
                    (uint32_t)(p->depthwise != 0)};
  fr_vk_arg args[6] = {input, weights, bias, p->activation == FR_ACT_PRELU ? slope : bias,
                       p->has_residual ? residual : input, output};
  uint64_t total = (uint64_t)p->batch * p->out_h * p->out_w * p->out_c;
  uint32_t gx, gy;
  grid_for(ops->ctx, (total + WG - 1) / WG, &gx, &gy);
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
