/* The recorded phases of the RI heads (faceri/ri_heads.h): the dispatch order, the
 * buffers each stage reads and writes, and the barriers between them. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ri_heads_internal.h"

/* Must match shaders/train_ri_fc.comp. */
enum { FC_FWD, FC_BWD_DATA, FC_BWD_W, FC_BWD_B, FC_COPY };
enum { FC_ACCUM = 1, FC_DROPOUT = 2, FC_INPUT_RELU = 4, FC_MASK_RELU = 8 };
/* Must match shaders/train_cbam.comp. */
enum { CB_SPOOL, CB_GATE, CB_CPOOL, CB_CONV, CB_BN_EVAL, CB_APPLY, CB_DMS, CB_DF1, CB_GATE_BWD, CB_DF_ACC };

typedef struct fc_push {
  uint32_t mode, rows, K, O, x_off, y_off, a_off, row0, flags, seed, threshold;
  float scale;
} fc_push;

typedef struct cbam_push {
  uint32_t mode, nb, row0, hw, c, h, w, k;
  uint32_t o_x2, o_z, o_mc, o_p, o_s, o_ms, o_dms, o_dp, o_dx2, o_dz;
  uint32_t o_w7, o_g, o_b, o_rm, o_rv;
  float eps;
} cbam_push;

typedef struct loss_push {
  uint32_t stage, batch, dim, xi_stride, xi_offset, has;
  uint32_t o_xh, o_dxh, o_va, o_dva, o_rows, o_loss;
  uint32_t ui_terms, detach, proj_norm, mse_sum_dim;
  float alpha, beta, gamma, l1_beta, tau;
} loss_push;

static int dispatch(fr_ri_heads *h, fr_vk_sequence *seq, const fr_vk_kernel *k, const fr_vk_arg *args,
                    const void *push, uint64_t invocations, fr_error *err)
{
  const fr_vk_device_info *dev = fr_vk_context_device(h->ctx);
  uint64_t groups = (invocations + h->wg - 1) / h->wg;
  uint32_t gx = groups <= dev->max_workgroup_count[0] ? (uint32_t)groups : dev->max_workgroup_count[0];
  uint64_t gy = gx ? (groups + gx - 1) / gx : 0;
  if (invocations > UINT32_MAX || gy > dev->max_workgroup_count[1])
    return fr_error_set(err, FR_ERR_UNSUPPORTED, "%s: %llu invocations exceed one dispatch", fr_vk_kernel_name(k),
                        (unsigned long long)invocations);
  if (!invocations)
    return FR_OK;
  return fr_vk_sequence_dispatch(seq, k, args, push, gx, (uint32_t)gy, 1, NULL, err);
}

static fr_vk_arg whole(const fr_vk_buffer *b) { return (fr_vk_arg){b, 0, 0}; }
static fr_vk_arg prm(const fr_ri_heads *h, int t) { return ri_floats(&h->params, h->toff[t], h->tn[t]); }
static fr_vk_arg grd(const fr_ri_heads *h, int t) { return ri_floats(&h->grads, h->toff[t], h->tn[t]); }
static fr_vk_arg region(const fr_ri_heads *h, int r, size_t n) { return ri_floats(&h->hb, h->r[r], n); }

/* One FC dispatch; x and y are bound whole, with element offsets. */
typedef struct fc_call {
  int mode, flags, rows, K, O;
  fr_vk_arg x, w, b, y, a;
  uint32_t x_off, y_off, a_off, row0;
} fc_call;

static int fc(fr_ri_heads *h, fr_vk_sequence *seq, const fc_call *c, fr_error *err)
{
  double rate = (c->flags & FC_DROPOUT) ? (double)h->cfg.dropout : 0.0;
  double th = rate * 4294967296.0;
  uint32_t threshold = th <= 0 ? 0u : th >= 4294967295.0 ? 0xffffffffu : (uint32_t)th;
  fc_push p = {(uint32_t)c->mode, (uint32_t)c->rows, (uint32_t)c->K, (uint32_t)c->O, c->x_off, c->y_off, c->a_off,
               c->row0, (uint32_t)c->flags, h->cfg.seed, threshold, (float)(1.0 / (1.0 - rate))};
  fr_vk_arg a = c->a.buffer ? c->a : c->x;
  fr_vk_arg args[6] = {c->x, c->w, c->b, c->y, a, whole(&h->ctl)};
  if (c->mode == FC_FWD) { /* one workgroup per output */
    uint64_t outs = (uint64_t)c->rows * c->O;
    const fr_vk_device_info *dev = fr_vk_context_device(h->ctx);
    uint32_t gx = outs <= dev->max_workgroup_count[0] ? (uint32_t)outs : dev->max_workgroup_count[0];
    uint64_t gy = gx ? (outs + gx - 1) / gx : 0;
    if (gy > dev->max_workgroup_count[1])
      return fr_error_set(err, FR_ERR_UNSUPPORTED, "RI heads FC: %llu outputs exceed one dispatch",
                          (unsigned long long)outs);
    return outs ? fr_vk_sequence_dispatch(seq, h->fc_fwd, args, &p, gx, (uint32_t)gy, 1, NULL, err) : FR_OK;
  }
  uint64_t n = c->mode == FC_BWD_DATA ? (uint64_t)c->rows * c->K
               : c->mode == FC_BWD_W ? (uint64_t)c->O * c->K
               : c->mode == FC_COPY ? (uint64_t)c->rows * c->O : (uint64_t)c->O;
  return dispatch(h, seq, h->fc, args, &p, n, err);
}

static cbam_push cbam_base(const fr_ri_heads *h, int mode, int row0, int nb)
{
  const uint32_t *r = h->r;
  cbam_push p = {(uint32_t)mode, (uint32_t)nb, (uint32_t)row0, (uint32_t)h->hw, (uint32_t)h->cfg.c,
                 (uint32_t)h->cfg.h, (uint32_t)h->cfg.w, (uint32_t)h->cfg.spatial_kernel,
                 r[R_X2], r[R_Z], r[R_MC], r[R_P], r[R_S], r[R_MS], r[R_DMS], r[R_DP], r[R_DX2], r[R_DZ],
                 (uint32_t)h->toff[T_CONV_W], (uint32_t)h->toff[T_BN_G], (uint32_t)h->toff[T_BN_B],
                 (uint32_t)h->toff[T_BN_RM], (uint32_t)h->toff[T_BN_RV], h->cfg.bn_eps};
  return p;
}

/* F: the chunk's feature map; out: dF (CB_DF_ACC only). */
static int cbam(fr_ri_heads *h, fr_vk_sequence *seq, int mode, int row0, int nb, fr_vk_arg F, fr_vk_arg out,
                fr_error *err)
{
  cbam_push p = cbam_base(h, mode, row0, nb);
  fr_vk_arg args[6] = {F.buffer ? F : whole(&h->hb), whole(&h->hb), whole(&h->t1), whole(&h->t2),
                       out.buffer ? out : whole(&h->t2), whole(&h->params)};
  uint64_t per = mode == CB_SPOOL || mode == CB_GATE || mode == CB_GATE_BWD ? (uint64_t)h->cfg.c
                 : mode == CB_APPLY || mode == CB_DF_ACC ? (uint64_t)h->hwc : (uint64_t)h->hw;
  return dispatch(h, seq, h->cbam, args, &p, per * (uint64_t)nb, err);
}

static uint64_t avail_floats(fr_vk_arg a)
{
  uint64_t avail = a.offset < a.buffer->size ? a.buffer->size - a.offset : 0;
  if (a.range && a.range < avail)
    avail = a.range;
  return avail / sizeof(float);
}

static int check_arg(fr_vk_arg a, uint64_t floats, const char *phase, const char *what, fr_error *err)
{
  if (!a.buffer)
    return fr_error_set(err, FR_ERR_INVALID, "RI heads %s: no buffer for %s", phase, what);
  if (avail_floats(a) < floats)
    return fr_error_set(err, FR_ERR_INVALID, "RI heads %s: %s holds %llu floats, needs %llu", phase, what,
                        (unsigned long long)avail_floats(a), (unsigned long long)floats);
  return FR_OK;
}

static int check_chunk(const fr_ri_heads *h, int row0, int nb, fr_vk_arg F, const char *phase, fr_error *err)
{
  if (row0 < 0 || nb < 1 || nb > h->chunk || row0 > h->cfg.max_batch - nb)
    return fr_error_set(err, FR_ERR_INVALID, "RI heads %s: rows [%d, %d) (chunks of at most %d of %d rows)", phase, row0,
                        row0 + nb, h->chunk, h->cfg.max_batch);
  return check_arg(F, (uint64_t)nb * h->hwc, phase, "the feature map", err);
}

static int check_batch(const fr_ri_heads *h, int batch, const char *phase, fr_error *err)
{
  if (batch < 1 || batch > h->cfg.max_batch)
    return fr_error_set(err, FR_ERR_INVALID, "RI heads %s: batch %d (1..%d)", phase, batch, h->cfg.max_batch);
  return FR_OK;
}

/* The channel attention of one chunk up to the [max, mean] maps; x2, hpre, z, mc, p rows. */
static int channel_attention(fr_ri_heads *h, fr_vk_sequence *seq, int row0, int nb, fr_vk_arg F, fr_error *err)
{
  int C = h->cfg.c, R = h->hidden;
  fr_vk_arg hb = whole(&h->hb), none = {0};
  int rc = cbam(h, seq, CB_SPOOL, row0, nb, F, none, err);
  fr_vk_sequence_barrier(seq);
  fc_call l1 = {FC_FWD, 0, 2 * nb, C, R, hb, prm(h, T_MLP1_W), prm(h, T_MLP1_B), hb, none,
                h->r[R_X2] + (uint32_t)(2 * row0 * C), h->r[R_HPRE] + (uint32_t)(2 * row0 * R), 0, 0};
  if (!rc)
    rc = fc(h, seq, &l1, err);
  fr_vk_sequence_barrier(seq);
  fc_call l2 = {FC_FWD, FC_INPUT_RELU, 2 * nb, R, C, hb, prm(h, T_MLP2_W), prm(h, T_MLP2_B), hb, none,
                h->r[R_HPRE] + (uint32_t)(2 * row0 * R), h->r[R_Z] + (uint32_t)(2 * row0 * C), 0, 0};
  if (!rc)
    rc = fc(h, seq, &l2, err);
  fr_vk_sequence_barrier(seq);
  if (!rc)
    rc = cbam(h, seq, CB_GATE, row0, nb, F, none, err);
  fr_vk_sequence_barrier(seq);
  if (!rc)
    rc = cbam(h, seq, CB_CPOOL, row0, nb, F, none, err);
  return rc;
}

static int regression_fwd(fr_ri_heads *h, fr_vk_sequence *seq, int row0, int nb, fr_vk_arg x, int training,
                          fr_error *err)
{
  int K = (int)h->tn[T_REG_W];
  fc_call c = {FC_FWD, training && h->cfg.dropout > 0.0f ? FC_DROPOUT : 0, nb, K, 1, x, prm(h, T_REG_W),
               prm(h, T_REG_B), whole(&h->hb), (fr_vk_arg){0}, 0, h->r[R_XH] + (uint32_t)row0, 0, (uint32_t)row0};
  return fc(h, seq, &c, err);
}

/* dW, db (written at row 0, added after) and dx += of the regression head for rows
 * [row0, row0 + nb); x: those rows' input, dx: their gradient. */
static int regression_bwd(fr_ri_heads *h, fr_vk_sequence *seq, int row0, int nb, fr_vk_arg x, fr_vk_arg dx,
                          fr_error *err)
{
  int K = (int)h->tn[T_REG_W], drop = h->cfg.dropout > 0.0f ? FC_DROPOUT : 0, acc = row0 > 0 ? FC_ACCUM : 0;
  fr_vk_arg hb = whole(&h->hb), none = {0};
  uint32_t dxh = h->r[R_DXH] + (uint32_t)row0;
  fc_call w = {FC_BWD_W, drop | acc, nb, K, 1, x, grd(h, T_REG_W), grd(h, T_REG_B), hb, none, 0, dxh, 0, (uint32_t)row0};
  fc_call b = w;
  b.mode = FC_BWD_B;
  b.flags = acc;
  fc_call d = {FC_BWD_DATA, drop | FC_ACCUM, nb, K, 1, dx, prm(h, T_REG_W), prm(h, T_REG_B), hb, none, 0, dxh, 0,
               (uint32_t)row0};
  int rc = fc(h, seq, &w, err);
  if (!rc)
    rc = fc(h, seq, &b, err);
  if (!rc)
    rc = fc(h, seq, &d, err);
  fr_vk_sequence_barrier(seq);
  return rc;
}

int fr_ri_heads_record_fwd_chunk(fr_ri_heads *h, fr_vk_sequence *seq, int row0, int nb, fr_vk_arg F, fr_error *err)
{
  int rc = check_chunk(h, row0, nb, F, "forward", err);
  fr_vk_sequence_barrier(seq);
  if (!rc && h->cfg.reg_input == FR_RI_REG_FEATURES)
    rc = regression_fwd(h, seq, row0, nb, F, 1, err);
  if (!rc && h->cfg.attention)
    rc = channel_attention(h, seq, row0, nb, F, err);
  fr_vk_sequence_barrier(seq);
  return rc;
}

static fr_train_bn bn_of(const fr_ri_heads *h, int batch)
{
  fr_train_bn bn = {batch * h->hw, 1, h->cfg.bn_eps, h->cfg.bn_momentum, prm(h, T_BN_G), prm(h, T_BN_B),
                    region(h, R_BN_MEAN, 1), region(h, R_BN_VAR, 1), region(h, R_BN_INVSTD, 1), prm(h, T_BN_RM),
                    prm(h, T_BN_RV), grd(h, T_BN_G), grd(h, T_BN_B)};
  return bn;
}

int fr_ri_heads_record_fwd_batch(fr_ri_heads *h, fr_vk_sequence *seq, int batch, fr_vk_arg v, fr_error *err)
{
  int rc = check_batch(h, batch, "forward (batch)", err);
  fr_vk_sequence_barrier(seq);
  if (!rc && h->cfg.reg_input == FR_RI_REG_EMBEDDING) {
    rc = check_arg(v, (uint64_t)batch * h->cfg.dim, "forward (batch)", "the embedding", err);
    if (!rc)
      rc = regression_fwd(h, seq, 0, batch, v, 1, err);
  }
  if (!rc && h->cfg.attention) {
    size_t n = (size_t)batch * h->hw;
    /* the step's forward weights, after the last step's update */
    rc = ri_att_fc_record_repack(h, seq, err);
    if (!rc)
      rc = cbam(h, seq, CB_CONV, 0, batch, (fr_vk_arg){0}, (fr_vk_arg){0}, err);
    fr_vk_sequence_barrier(seq);
    fr_train_bn bn = bn_of(h, batch);
    if (!rc)
      rc = fr_train_record_bn_fwd(h->tops, seq, &bn, region(h, R_S, n), region(h, R_SN, n), whole(&h->scratch), err);
    fr_vk_sequence_barrier(seq);
    if (!rc)
      rc = fr_train_record_act(h->tops, seq, FR_TRAIN_SIGMOID, (int)n, 1, region(h, R_SN, n), region(h, R_SN, n),
                               region(h, R_MS, n), err);
  }
  fr_vk_sequence_barrier(seq);
  return rc;
}

/* nb rows of dim floats: stage -> the batch buffer at element `at` (to_hb), or back. */
static int stage_copy(fr_ri_heads *h, fr_vk_sequence *seq, uint32_t at, int nb, int to_hb, fr_error *err)
{
  fr_vk_arg hb = whole(&h->hb), st = whole(&h->stage);
  fc_call c = {FC_COPY, 0, nb, 0, h->cfg.dim, to_hb ? st : hb, prm(h, T_ATT_W), prm(h, T_ATT_B), to_hb ? hb : st,
               (fr_vk_arg){0}, to_hb ? 0 : at, to_hb ? at : 0, 0, 0};
  fr_vk_sequence_barrier(seq);
  int rc = fc(h, seq, &c, err);
  fr_vk_sequence_barrier(seq);
  return rc;
}

/* t1 = F2 of the chunk, then (forward) v_attn rows. */
static int attended(fr_ri_heads *h, fr_vk_sequence *seq, int row0, int nb, fr_vk_arg F, int fc_too, fr_error *err)
{
  int rc = cbam(h, seq, CB_APPLY, row0, nb, F, (fr_vk_arg){0}, err);
  fr_vk_sequence_barrier(seq);
  uint32_t va = h->r[R_VA] + (uint32_t)(row0 * h->cfg.dim);
  fc_call c = {FC_FWD, 0, nb, (int)h->hwc, h->cfg.dim, whole(&h->t1), prm(h, T_ATT_W), prm(h, T_ATT_B), whole(&h->hb),
               (fr_vk_arg){0}, 0, va, 0, 0};
  if (!rc && fc_too && h->gemm_fwd) {
    rc = ri_att_fc_record_fwd(h, seq, nb, err);
    if (!rc)
      rc = stage_copy(h, seq, va, nb, 1, err);
  } else if (!rc && fc_too)
    rc = fc(h, seq, &c, err);
  fr_vk_sequence_barrier(seq);
  return rc;
}

int fr_ri_heads_record_fwd2_chunk(fr_ri_heads *h, fr_vk_sequence *seq, int row0, int nb, fr_vk_arg F, fr_error *err)
{
  int rc = check_chunk(h, row0, nb, F, "forward (attention)", err);
  fr_vk_sequence_barrier(seq);
  if (!rc && h->cfg.attention)
    rc = attended(h, seq, row0, nb, F, 1, err);
  return rc;
}

int fr_ri_heads_record_loss(fr_ri_heads *h, fr_vk_sequence *seq, const fr_ri_targets *t, fr_error *err)
{
  const char *ph = "loss";
  int B = t->batch, D = h->cfg.dim, att = h->cfg.attention;
  int emb = h->cfg.reg_input == FR_RI_REG_EMBEDDING, needs_dv = emb || (att && !h->cfg.detach_vproj);
  int rc = check_batch(h, B, ph, err);
  if (!rc && (t->xi_stride < 1 || t->xi_offset < 0 || t->xi_offset >= t->xi_stride))
    rc = fr_error_set(err, FR_ERR_INVALID, "RI heads loss: xi stride %d, offset %d", t->xi_stride, t->xi_offset);
  if (!rc)
    rc = check_arg(t->xi, (uint64_t)(B - 1) * t->xi_stride + t->xi_offset + 1, ph, "xi", err);
  if (!rc && t->flags.buffer)
    rc = check_arg(t->flags, (uint64_t)B, ph, "the flags", err);
  if (!rc && (att || emb))
    rc = check_arg(t->v, (uint64_t)B * D, ph, "the embedding", err);
  if (!rc && att)
    rc = check_arg(t->centre, (uint64_t)D, ph, "the UI centre", err);
  if (!rc && needs_dv)
    rc = check_arg(t->dv, (uint64_t)B * D, ph, "the embedding gradient", err);
  if (!rc && t->dxi.buffer)
    rc = check_arg(t->dxi, (uint64_t)B, ph, "the xi gradient", err);
  if (rc)
    return rc;
  const fr_ri_heads_config *k = &h->cfg;
  fr_vk_arg hb = whole(&h->hb);
  uint32_t has = (t->flags.buffer ? 1u : 0u) | (t->dv.buffer ? 2u : 0u) | (t->dxi.buffer ? 4u : 0u) | (att ? 8u : 0u);
  loss_push p = {0, (uint32_t)B, (uint32_t)D, (uint32_t)t->xi_stride, (uint32_t)t->xi_offset, has,
                 h->r[R_XH], h->r[R_DXH], h->r[R_VA], h->r[R_DVA], h->r[R_ROWS], h->r[R_LOSS],
                 k->ui_terms, (uint32_t)(k->detach_vproj != 0), (uint32_t)(k->project_normalized != 0),
                 (uint32_t)(k->mse_sum_dim != 0), k->alpha, k->beta, k->gamma, k->l1_beta, k->tau};
  fr_vk_arg args[8] = {hb, t->xi, t->flags.buffer ? t->flags : hb, t->v.buffer ? t->v : hb,
                       t->centre.buffer ? t->centre : hb, t->dv.buffer ? t->dv : hb, t->dxi.buffer ? t->dxi : hb,
                       whole(&h->ctl)};
  fr_vk_sequence_barrier(seq);
  rc = dispatch(h, seq, h->loss, args, &p, (uint64_t)B, err);
  fr_vk_sequence_barrier(seq);
  p.stage = 1;
  if (!rc)
    rc = dispatch(h, seq, h->loss, args, &p, 1, err);
  fr_vk_sequence_barrier(seq);
  p.stage = 2;
  if (!rc)
    rc = dispatch(h, seq, h->loss, args, &p, (uint64_t)B * D, err);
  fr_vk_sequence_barrier(seq);
  if (!rc && emb)
    rc = regression_bwd(h, seq, 0, B, t->v, t->dv, err);
  return rc;
}

int fr_ri_heads_record_bwd_chunk(fr_ri_heads *h, fr_vk_sequence *seq, int row0, int nb, fr_vk_arg F, fr_error *err)
{
  int rc = check_chunk(h, row0, nb, F, "backward", err);
  if (rc || !h->cfg.attention)
    return rc;
  fr_vk_sequence_barrier(seq);
  rc = attended(h, seq, row0, nb, F, 0, err);
  int acc = row0 > 0 ? FC_ACCUM : 0, D = h->cfg.dim, K = (int)h->hwc;
  fr_vk_arg hb = whole(&h->hb), t1 = whole(&h->t1), none = {0};
  uint32_t dva = h->r[R_DVA] + (uint32_t)(row0 * D);
  fc_call b = {FC_BWD_B, acc, nb, K, D, t1, grd(h, T_ATT_W), grd(h, T_ATT_B), hb, none, 0, dva, 0, 0};
  if (!rc)
    rc = stage_copy(h, seq, dva, nb, 0, err);
  if (!rc)
    rc = ri_att_fc_record_bwd_filter(h, seq, row0, nb, err);
  if (!rc)
    rc = fc(h, seq, &b, err);
  fr_vk_sequence_barrier(seq); /* F2 read before dF2 overwrites it */
  if (!rc)
    rc = ri_att_fc_record_bwd_data(h, seq, nb, err);
  fr_vk_sequence_barrier(seq);
  if (!rc)
    rc = cbam(h, seq, CB_DMS, row0, nb, F, none, err);
  fr_vk_sequence_barrier(seq);
  return rc;
}

int fr_ri_heads_record_bwd_batch(fr_ri_heads *h, fr_vk_sequence *seq, int batch, fr_error *err)
{
  int rc = check_batch(h, batch, "backward (batch)", err);
  if (rc || !h->cfg.attention)
    return rc;
  size_t n = (size_t)batch * h->hw;
  fr_vk_sequence_barrier(seq);
  rc = fr_train_record_act_bwd(h->tops, seq, FR_TRAIN_SIGMOID, (int)n, 1, region(h, R_MS, n), region(h, R_DMS, n),
                               region(h, R_MS, n), region(h, R_DSN, n), whole(&h->scratch), (fr_vk_arg){0}, err);
  fr_vk_sequence_barrier(seq);
  fr_train_bn bn = bn_of(h, batch);
  if (!rc)
    rc = fr_train_record_bn_bwd(h->tops, seq, &bn, region(h, R_S, n), region(h, R_DSN, n), region(h, R_DS, n),
                                whole(&h->scratch), err);
  fr_vk_sequence_barrier(seq);
  fr_conv_params cp = {0};
  cp.batch = batch, cp.in_h = cp.out_h = h->cfg.h, cp.in_w = cp.out_w = h->cfg.w, cp.in_c = 2, cp.out_c = 1;
  cp.kernel_h = cp.kernel_w = h->cfg.spatial_kernel, cp.stride_h = cp.stride_w = 1;
  cp.pad_top = cp.pad_left = h->cfg.spatial_kernel / 2;
  if (!rc)
    rc = fr_train_record_conv_bwd_filter(h->tops, seq, &cp, region(h, R_P, 2 * n), region(h, R_DS, n),
                                         whole(&h->scratch), grd(h, T_CONV_W), err);
  if (!rc)
    rc = fr_train_record_conv_bwd_data(h->tops, seq, &cp, region(h, R_DS, n), prm(h, T_CONV_W), region(h, R_DP, 2 * n),
                                       err);
  fr_vk_sequence_barrier(seq);
  return rc;
}

int fr_ri_heads_record_bwd2_chunk(fr_ri_heads *h, fr_vk_sequence *seq, int row0, int nb, fr_vk_arg F, fr_vk_arg dF,
                                  fr_error *err)
{
  const char *ph = "backward (input gradient)";
  int rc = check_chunk(h, row0, nb, F, ph, err);
  if (!rc)
    rc = check_arg(dF, (uint64_t)nb * h->hwc, ph, "the feature-map gradient", err);
  if (rc)
    return rc;
  fr_vk_sequence_barrier(seq);
  if (h->cfg.reg_input == FR_RI_REG_FEATURES)
    rc = regression_bwd(h, seq, row0, nb, F, dF, err);
  if (rc || !h->cfg.attention)
    return rc;
  int acc = row0 > 0 ? FC_ACCUM : 0, D = h->cfg.dim, C = h->cfg.c, R = h->hidden;
  fr_vk_arg hb = whole(&h->hb), none = {0};
  rc = stage_copy(h, seq, h->r[R_DVA] + (uint32_t)(row0 * D), nb, 0, err);
  if (!rc)
    rc = ri_att_fc_record_bwd_data(h, seq, nb, err);
  fr_vk_sequence_barrier(seq);
  if (!rc)
    rc = cbam(h, seq, CB_DF1, row0, nb, F, none, err);
  fr_vk_sequence_barrier(seq);
  if (!rc)
    rc = cbam(h, seq, CB_GATE_BWD, row0, nb, F, none, err);
  fr_vk_sequence_barrier(seq);
  uint32_t hpre = h->r[R_HPRE] + (uint32_t)(2 * row0 * R), dz = h->r[R_DZ] + (uint32_t)(2 * row0 * C);
  uint32_t dh = h->r[R_DH] + (uint32_t)(2 * row0 * R), x2 = h->r[R_X2] + (uint32_t)(2 * row0 * C);
  uint32_t dx2 = h->r[R_DX2] + (uint32_t)(2 * row0 * C);
  fc_call w2 = {FC_BWD_W, acc | FC_INPUT_RELU, 2 * nb, R, C, hb, grd(h, T_MLP2_W), grd(h, T_MLP2_B), hb, none, hpre,
                dz, 0, 0};
  fc_call b2 = w2;
  b2.mode = FC_BWD_B;
  fc_call d2 = {FC_BWD_DATA, FC_MASK_RELU, 2 * nb, R, C, hb, prm(h, T_MLP2_W), prm(h, T_MLP2_B), hb, hb, dh, dz, hpre, 0};
  fc_call w1 = {FC_BWD_W, acc, 2 * nb, C, R, hb, grd(h, T_MLP1_W), grd(h, T_MLP1_B), hb, none, x2, dh, 0, 0};
  fc_call b1 = w1;
  b1.mode = FC_BWD_B;
  fc_call d1 = {FC_BWD_DATA, 0, 2 * nb, C, R, hb, prm(h, T_MLP1_W), prm(h, T_MLP1_B), hb, none, dx2, dh, 0, 0};
  if (!rc)
    rc = fc(h, seq, &w2, err);
  if (!rc)
    rc = fc(h, seq, &b2, err);
  if (!rc)
    rc = fc(h, seq, &d2, err);
  fr_vk_sequence_barrier(seq);
  if (!rc)
    rc = fc(h, seq, &w1, err);
  if (!rc)
    rc = fc(h, seq, &b1, err);
  if (!rc)
    rc = fc(h, seq, &d1, err);
  fr_vk_sequence_barrier(seq);
  if (!rc)
    rc = cbam(h, seq, CB_DF_ACC, row0, nb, F, dF, err);
  fr_vk_sequence_barrier(seq);
  return rc;
}

int fr_ri_heads_record_train(fr_ri_heads *h, fr_vk_sequence *seq, fr_vk_arg F, const fr_ri_targets *t, fr_vk_arg dF,
                             fr_error *err)
{
  int B = t->batch;
  int rc = fr_ri_heads_record_fwd_chunk(h, seq, 0, B, F, err);
  if (!rc)
    rc = fr_ri_heads_record_fwd_batch(h, seq, B, t->v, err);
  if (!rc)
    rc = fr_ri_heads_record_fwd2_chunk(h, seq, 0, B, F, err);
  if (!rc)
    rc = fr_ri_heads_record_loss(h, seq, t, err);
  if (!rc)
    rc = fr_ri_heads_record_bwd_chunk(h, seq, 0, B, F, err);
  if (!rc)
    rc = fr_ri_heads_record_bwd_batch(h, seq, B, err);
  if (!rc)
    rc = fr_ri_heads_record_bwd2_chunk(h, seq, 0, B, F, dF, err);
  return rc;
}

int fr_ri_heads_record_infer(fr_ri_heads *h, fr_vk_sequence *seq, int row0, int nb, fr_vk_arg F, fr_vk_arg v,
                             fr_error *err)
{
  return fr_ri_heads_record_infer_parts(h, seq, row0, nb, F, v, FR_RI_INFER_FEATURES | FR_RI_INFER_EMBEDDING, err);
}

int fr_ri_heads_record_infer_parts(fr_ri_heads *h, fr_vk_sequence *seq, int row0, int nb, fr_vk_arg F, fr_vk_arg v,
                                   int parts, fr_error *err)
{
  int emb = h->cfg.reg_input == FR_RI_REG_EMBEDDING;
  int feat = (parts & FR_RI_INFER_FEATURES) != 0, on_v = emb && (parts & FR_RI_INFER_EMBEDDING);
  int rc = parts & ~(FR_RI_INFER_FEATURES | FR_RI_INFER_EMBEDDING) || !parts
               ? fr_error_set(err, FR_ERR_INVALID, "RI heads inference: parts %d", parts)
               : FR_OK;
  if (!rc && feat)
    rc = check_chunk(h, row0, nb, F, "inference", err);
  else if (!rc && (row0 < 0 || nb < 1 || nb > h->chunk || row0 > h->cfg.max_batch - nb))
    rc = fr_error_set(err, FR_ERR_INVALID, "RI heads inference: rows [%d, %d) (chunks of at most %d of %d rows)", row0,
                      row0 + nb, h->chunk, h->cfg.max_batch);
  if (!rc && on_v)
    rc = check_arg(v, (uint64_t)nb * h->cfg.dim, "inference", "the embedding", err);
  if (rc || (!feat && !on_v))
    return rc;
  fr_vk_sequence_barrier(seq);
  if (on_v || (feat && !emb))
    rc = regression_fwd(h, seq, row0, nb, emb ? v : F, 0, err);
  if (!rc && feat && h->cfg.attention && h->device_updates)
    rc = ri_att_fc_record_repack(h, seq, err);
  if (!rc && feat && h->cfg.attention) {
    rc = channel_attention(h, seq, row0, nb, F, err);
    fr_vk_sequence_barrier(seq);
    if (!rc)
      rc = cbam(h, seq, CB_CONV, row0, nb, F, (fr_vk_arg){0}, err);
    fr_vk_sequence_barrier(seq);
    if (!rc)
      rc = cbam(h, seq, CB_BN_EVAL, row0, nb, F, (fr_vk_arg){0}, err);
    fr_vk_sequence_barrier(seq);
    if (!rc)
      rc = attended(h, seq, row0, nb, F, 1, err);
  }
  fr_vk_sequence_barrier(seq);
  return rc;
}
