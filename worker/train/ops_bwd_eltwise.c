/* The texel-fed element-wise ops of the backward pass (train_eltwise_bwd): activation
 * gradients with the PReLU slope gradient fused in, gradient sums, the activation
 * recompute, and the bias gradient's column sums. Same arithmetic in the same order as
 * train_eltwise and train_reduce, which remain for the other ops and devices. */
#include "ops_bwd_internal.h"

typedef struct eb_push {
  uint32_t rows, c4, rows_per_chunk, chunks, op, a_base, b_base, v_base;
} eb_push;

int fr_tops_eltwise_create(fr_train_ops *t, fr_error *err)
{
  if (!t->fast.texel_ok)
    return FR_OK;
  const fr_vk_device_info *info = fr_vk_context_device(t->ctx);
  fr_vk_binding_kind kinds[5] = {FR_BIND_TEXEL, FR_BIND_TEXEL, FR_BIND_TEXEL, FR_BIND_STORAGE, FR_BIND_STORAGE};
  const char *name = info->has_int64 ? "train_eltwise_bwd_64" : "train_eltwise_bwd";
  int rc = FR_OK;
  for (uint32_t sums = 0; sums < 2 && !rc; sums++) {
    uint32_t spec[2] = {t->wg, sums};
    rc = fr_vk_kernel_create(t->ctx, name, 5, kinds, sizeof(eb_push), spec, 2, &t->fast.eltwise[sums], err);
  }
  return rc;
}

void fr_tops_eltwise_destroy(fr_train_ops *t)
{
  for (int i = 0; i < 2; i++)
    fr_vk_kernel_destroy(t->ctx, t->fast.eltwise[i]);
}

int fr_tops_eltwise(fr_train_ops *t, fr_vk_sequence *seq, int op, uint64_t rows, uint64_t cols, fr_vk_arg a,
                    fr_vk_arg b, fr_vk_arg v, fr_vk_arg out, fr_vk_arg part, fr_error *err)
{
  if (!t->fast.eltwise[0])
    return TOPS_FALLBACK;
  /* An add has no channels: any shape of n floats with n % 4 == 0 is n / 4 texels. */
  if (op == EB_ADD && cols % 4 && (rows * cols) % 4 == 0) {
    rows = rows * cols / 4;
    cols = 4;
  }
  uint64_t n = rows * cols;
  if (cols % 4 || n / 4 > UINT32_MAX)
    return TOPS_FALLBACK;
  eb_push push = {(uint32_t)rows, (uint32_t)(cols / 4), 0, 0, (uint32_t)op, 0, 0, 0};
  int reads_b = op == EB_ADD || op == EB_RELU_BWD || op == EB_PRELU_BWD;
  int reads_v = op == EB_PRELU || op == EB_PRELU_BWD;
  fr_vk_arg args[5] = {{0}, {0}, {0}, out.buffer ? out : part, part.buffer ? part : out};
  if (!fr_tops_texel_view(t, a, n, &args[0], &push.a_base) ||
      (reads_b && !fr_tops_texel_view(t, b, n, &args[1], &push.b_base)) ||
      (reads_v && !fr_tops_texel_view(t, v, cols, &args[2], &push.v_base)))
    return TOPS_FALLBACK;
  if (!reads_b)
    args[1] = args[0];
  if (!reads_v)
    args[2] = args[0];
  if (!part.buffer)
    return fr_tops_dispatch(t, seq, t->fast.eltwise[0], args, &push, n / 4, err);
  fr_tops_chunking(rows, &push.rows_per_chunk, &push.chunks);
  return fr_tops_dispatch(t, seq, t->fast.eltwise[1], args, &push, (uint64_t)push.chunks * push.c4, err);
}
