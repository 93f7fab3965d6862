/* The attention FC of the RI heads (h*w*c -> dim: 4.8 M weights for MobileFaceNet) on
 * the network's fast kernels, where one invocation or workgroup per output read every
 * weight once per image (about a third of a training step on a CPU device).
 *
 *   forward        a 1x1 conv on a 1x1x(h*w*c) input, fr_ops_record_conv: the texel
 *                  GEMM reads each weight once per tile of rows. It wants the weights
 *                  in its packed layout, a permutation with zero padding: the host
 *                  describes it once as an index map (as the trainer does for the
 *                  backbone) and one gather refreshes the packed copy, recorded before
 *                  every training forward and once after every host write. A GEMM over
 *                  a few dozen rows leaves most of a GPU idle (one workgroup per tile
 *                  of 256 rows), so GPUs keep train_ri_fc_fwd's workgroup per output
 *                  unless the config asks otherwise.
 *   input grad     train_ops' 1x1 bwd-data GEMM on the unpacked [dim, h*w*c] weights
 *   weight grad    train_ops' 1x1 bwd-filter GEMM (fixed-order chunks, no atomics);
 *                  a chunk after the first adds its share through dw_tmp
 * dL/dv_attn and v_attn pass through `stage` ([chunk, dim] at offset 0): the batch
 * buffer's rows of a chunk need not meet a binding's offset alignment. */
#include <stdlib.h>
#include <string.h>

#include "ri_heads_internal.h"

#define ALIGN_FLOATS 64u
#define EXACT_POSITIONS (1u << 24) /* index-map positions pass through floats while packing */

static size_t align_up(size_t n) { return (n + ALIGN_FLOATS - 1) / ALIGN_FLOATS * ALIGN_FLOATS; }
static fr_vk_arg whole(const fr_vk_buffer *b) { return (fr_vk_arg){b, 0, 0}; }

fr_conv_params ri_att_fc_params(const fr_ri_heads *h, int nb)
{
  fr_conv_params p;
  memset(&p, 0, sizeof(p));
  p.batch = nb;
  p.in_h = p.in_w = p.out_h = p.out_w = 1;
  p.in_c = (int)h->hwc;
  p.out_c = h->cfg.dim;
  p.kernel_h = p.kernel_w = p.stride_h = p.stride_w = 1;
  p.activation = FR_ACT_NONE;
  return p;
}

static int buffer(fr_ri_heads *h, fr_vk_buffer *b, size_t floats, const char *what, fr_error *err)
{
  uint64_t bytes = ((uint64_t)(floats ? floats : 4) * sizeof(float) + 15) & ~(uint64_t)15;
  int rc = fr_vk_buffer_create(h->ctx, bytes, b, err);
  if (rc)
    fr_error_prefix(err, "RI heads %s (%llu bytes)", what, (unsigned long long)bytes);
  return rc;
}

/* The packed layout as 1-based positions from the start of the weight tensor (0:
 * padding): pack a tensor whose values are its own positions. */
static int index_map(fr_ri_heads *h, fr_error *err)
{
  fr_conv_params p = ri_att_fc_params(h, 1);
  size_t nw = h->tn[T_ATT_W], pc = fr_ops_packed_channel_count(&p);
  h->pk_w = fr_ops_packed_weight_count(h->ops, &p);
  h->pk_b = align_up(h->pk_w);
  h->pk_n = h->pk_b + pc;
  size_t most = nw > pc ? nw : pc, packed = h->pk_w > pc ? h->pk_w : pc;
  float *in = malloc(most * sizeof(float)), *out = malloc(packed * sizeof(float));
  uint32_t *index = calloc(h->pk_n, sizeof(uint32_t));
  int rc = in && out && index ? FR_OK : fr_error_set(err, FR_ERR_NOMEM, "RI heads: out of memory for the index map");
  if (!rc) {
    for (size_t k = 0; k < nw; k++)
      in[k] = (float)(k + 1);
    fr_ops_pack_conv_weights(h->ops, &p, in, out);
    for (size_t k = 0; k < h->pk_w; k++)
      index[k] = (uint32_t)out[k];
    size_t b0 = h->toff[T_ATT_B] - h->toff[T_ATT_W];
    for (size_t k = 0; k < (size_t)h->cfg.dim; k++)
      in[k] = (float)(b0 + k + 1);
    fr_ops_pack_channels(&p, in, out);
    for (size_t k = 0; k < pc; k++)
      index[h->pk_b + k] = (uint32_t)out[k];
    rc = buffer(h, &h->pk_index, h->pk_n, "attention FC index map", err);
  }
  if (!rc)
    rc = fr_vk_buffer_upload(h->ctx, &h->pk_index, 0, index, h->pk_n * sizeof(uint32_t), err);
  if (!rc)
    rc = buffer(h, &h->pk, h->pk_n, "attention FC packed weights", err);
  free(in);
  free(out);
  free(index);
  return rc;
}

int ri_att_fc_create(fr_ri_heads *h, fr_error *err)
{
  if (!h->cfg.attention)
    return FR_OK;
  const fr_vk_device_info *dev = fr_vk_context_device(h->ctx);
  int want = h->cfg.att_fwd_gemm > 0 || (h->cfg.att_fwd_gemm == 0 && dev->type == VK_PHYSICAL_DEVICE_TYPE_CPU);
  /* Positions must stay exact in float32; heads that large keep the per-output kernel. */
  h->gemm_fwd = want && h->toff[T_ATT_B] - h->toff[T_ATT_W] + (size_t)h->cfg.dim < EXACT_POSITIONS;
  int rc = buffer(h, &h->stage, (size_t)h->chunk * h->cfg.dim, "attention FC rows", err);
  if (!rc && h->chunk < h->cfg.max_batch)
    rc = buffer(h, &h->dw_tmp, h->tn[T_ATT_W], "attention FC chunk gradient", err);
  if (rc || !h->gemm_fwd)
    return rc;
  rc = fr_ops_create(h->ctx, &h->ops, err);
  uint32_t wg = h->wg;
  fr_vk_binding_kind st[3] = {FR_BIND_STORAGE, FR_BIND_STORAGE, FR_BIND_STORAGE};
  if (!rc)
    rc = fr_vk_kernel_create(h->ctx, "train_repack", 3, st, sizeof(uint32_t), &wg, 1, &h->repack, err);
  if (!rc)
    rc = index_map(h, err);
  if (!rc)
    rc = fr_vk_sequence_create(h->ctx, 0, &h->seq, err);
  return rc;
}

void ri_att_fc_destroy(fr_ri_heads *h)
{
  fr_vk_buffer *b[] = {&h->pk, &h->pk_index, &h->stage, &h->dw_tmp};
  for (size_t i = 0; i < sizeof(b) / sizeof(b[0]); i++)
    if (b[i]->buffer)
      fr_vk_buffer_destroy(h->ctx, b[i]);
  fr_vk_sequence_destroy(h->seq);
  fr_vk_kernel_destroy(h->ctx, h->repack);
  fr_ops_destroy(h->ops);
}

int ri_att_fc_record_repack(fr_ri_heads *h, fr_vk_sequence *seq, fr_error *err)
{
  if (!h->gemm_fwd)
    return FR_OK;
  uint32_t n = (uint32_t)h->pk_n, groups = fr_div_up(n, h->wg);
  uint32_t max_x = fr_vk_context_device(h->ctx)->max_workgroup_count[0];
  uint32_t gx = groups < max_x ? groups : max_x, gy = fr_div_up(groups, gx);
  uint64_t from = (uint64_t)h->toff[T_ATT_W] * sizeof(float);
  fr_vk_arg args[3] = {whole(&h->pk_index), {&h->params, from, h->params.size - from}, whole(&h->pk)};
  fr_vk_sequence_barrier(seq);
  int rc = fr_vk_sequence_dispatch(seq, h->repack, args, &n, gx, gy, 1, NULL, err);
  fr_vk_sequence_barrier(seq);
  return rc;
}

int ri_att_fc_repack_now(fr_ri_heads *h, fr_error *err)
{
  if (!h->gemm_fwd)
    return FR_OK;
  int rc = fr_vk_sequence_begin(h->seq, err);
  if (!rc)
    rc = ri_att_fc_record_repack(h, h->seq, err);
  if (!rc)
    rc = fr_vk_sequence_end(h->seq, err);
  if (!rc)
    rc = fr_vk_sequence_run(h->seq, err);
  if (rc)
    fr_error_prefix(err, "RI heads: packing the attention FC");
  return rc;
}

int ri_att_fc_record_fwd(fr_ri_heads *h, fr_vk_sequence *seq, int nb, fr_error *err)
{
  fr_conv_params p = ri_att_fc_params(h, nb);
  fr_vk_arg w = {&h->pk, 0, (uint64_t)h->pk_w * sizeof(float)};
  fr_vk_arg b = {&h->pk, (uint64_t)h->pk_b * sizeof(float), 0};
  fr_vk_arg out = whole(&h->stage);
  return fr_ops_record_conv(h->ops, seq, &p, whole(&h->t1), w, b, b, out, out, NULL, err);
}

int ri_att_fc_record_bwd_filter(fr_ri_heads *h, fr_vk_sequence *seq, int row0, int nb, fr_error *err)
{
  fr_conv_params p = ri_att_fc_params(h, nb);
  fr_vk_arg dw = ri_floats(&h->grads, h->toff[T_ATT_W], h->tn[T_ATT_W]);
  int rc = fr_train_record_conv_bwd_filter(h->tops, seq, &p, whole(&h->t1), whole(&h->stage), whole(&h->scratch),
                                           row0 > 0 ? whole(&h->dw_tmp) : dw, err);
  if (rc || row0 == 0)
    return rc;
  fr_vk_sequence_barrier(seq);
  return fr_train_record_add(h->tops, seq, h->tn[T_ATT_W], dw, whole(&h->dw_tmp), dw, err);
}

int ri_att_fc_record_bwd_data(fr_ri_heads *h, fr_vk_sequence *seq, int nb, fr_error *err)
{
  fr_conv_params p = ri_att_fc_params(h, nb);
  return fr_train_record_conv_bwd_data(h->tops, seq, &p, whole(&h->stage),
                                       ri_floats(&h->params, h->toff[T_ATT_W], h->tn[T_ATT_W]), whole(&h->t1), err);
}
