/* The RI heads' buffers, parameters and results (faceri/ri_heads.h); the recorded
 * phases are in ri_heads_record.c. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ri_heads_internal.h"

#define WG 64u
#define ALIGN_FLOATS 64u /* 256 bytes: any storage-buffer offset alignment a device asks for */
#define MAX_LOOP 65536u  /* lavapipe cuts longer loops (DESIGN §3) */

static size_t align_up(size_t n) { return (n + ALIGN_FLOATS - 1) / ALIGN_FLOATS * ALIGN_FLOATS; }

fr_ri_heads_config fr_ri_heads_defaults(int h, int w, int c, int dim, int max_batch)
{
  fr_ri_heads_config k;
  memset(&k, 0, sizeof(k));
  k.h = h, k.w = w, k.c = c, k.dim = dim, k.max_batch = max_batch;
  k.reg_input = FR_RI_REG_FEATURES;
  k.dropout = 0.5f;
  k.attention = 1;
  k.reduction = 16;
  k.spatial_kernel = 7;
  k.bn_eps = 1e-5f;
  k.bn_momentum = 0.01f;
  k.alpha = 5.0f, k.beta = 2.0f, k.gamma = 1.0f;
  k.l1_beta = 0.75f;
  k.tau = 1.645f;
  k.detach_vproj = 1;
  k.seed = 1;
  return k;
}

static int check_config(const fr_ri_heads_config *k, fr_error *err)
{
  if (k->h < 1 || k->w < 1 || k->c < 1 || k->dim < 1 || k->max_batch < 1 || k->max_batch > 16384 ||
      k->max_chunk < 0)
    return fr_error_set(err, FR_ERR_INVALID, "RI heads: feature map %dx%dx%d, dim %d, batch %d, chunk %d", k->h, k->w,
                        k->c, k->dim, k->max_batch, k->max_chunk);
  uint64_t hwc = (uint64_t)k->h * k->w * k->c;
  if (hwc > MAX_LOOP || (uint64_t)k->dim > MAX_LOOP || (uint64_t)k->max_batch * hwc >= (1ull << 32))
    return fr_error_set(err, FR_ERR_UNSUPPORTED, "RI heads: feature map of %llu values (at most %u) or batch too large",
                        (unsigned long long)hwc, MAX_LOOP);
  if (k->reg_input != FR_RI_REG_FEATURES && k->reg_input != FR_RI_REG_EMBEDDING)
    return fr_error_set(err, FR_ERR_INVALID, "RI heads: unknown regression input %d", (int)k->reg_input);
  if (!(k->dropout >= 0.0f && k->dropout < 1.0f))
    return fr_error_set(err, FR_ERR_INVALID, "RI heads: dropout %g is not in [0, 1)", (double)k->dropout);
  if (k->attention && (k->reduction < 1 || k->spatial_kernel < 1 || k->spatial_kernel % 2 == 0 ||
                       !(k->bn_eps > 0.0f) || !(k->bn_momentum >= 0.0f && k->bn_momentum <= 1.0f)))
    return fr_error_set(err, FR_ERR_INVALID, "RI heads: attention reduction %d, kernel %d (odd), BN eps %g, momentum %g",
                        k->reduction, k->spatial_kernel, (double)k->bn_eps, (double)k->bn_momentum);
  if (!(k->l1_beta > 0.0f) || !isfinite(k->alpha) || !isfinite(k->beta) || !isfinite(k->gamma) || !isfinite(k->tau))
    return fr_error_set(err, FR_ERR_INVALID, "RI heads: smooth-L1 beta %g must be > 0 and the weights finite",
                        (double)k->l1_beta);
  return FR_OK;
}

static int make_buffer(fr_ri_heads *h, fr_vk_buffer *b, size_t floats, const char *what, fr_error *err)
{
  uint64_t bytes = (uint64_t)(floats ? floats : 4) * sizeof(float);
  int rc = fr_vk_buffer_create(h->ctx, bytes, b, err);
  if (rc)
    fr_error_prefix(err, "RI heads %s (%llu bytes)", what, (unsigned long long)bytes);
  return rc;
}

static void layout(fr_ri_heads *h)
{
  const fr_ri_heads_config *k = &h->cfg;
  size_t B = (size_t)k->max_batch, C = (size_t)k->c, R = (size_t)h->hidden, D = (size_t)k->dim, HW = (size_t)h->hw;
  int att = k->attention;
  size_t n[R_COUNT] = {0};
  n[R_LOSS] = RI_LOSS_FLOATS;
  n[R_XH] = n[R_DXH] = B;
  n[R_ROWS] = 8 * B;
  n[R_VA] = n[R_DVA] = att ? B * D : 1;
  n[R_X2] = n[R_Z] = n[R_DX2] = n[R_DZ] = att ? 2 * B * C : 1;
  n[R_HPRE] = n[R_DH] = att ? 2 * B * R : 1;
  n[R_MC] = att ? B * C : 1;
  n[R_P] = n[R_DP] = att ? 2 * B * HW : 1;
  n[R_S] = n[R_SN] = n[R_MS] = n[R_DMS] = n[R_DSN] = n[R_DS] = att ? B * HW : 1;
  n[R_BN_MEAN] = n[R_BN_VAR] = n[R_BN_INVSTD] = 1;
  size_t off = 0;
  for (int i = 0; i < R_COUNT; i++) {
    h->r[i] = (uint32_t)off;
    off = align_up(off + n[i]);
  }
  h->hb_floats = off;
  off = 0;
  h->n_tensors = fr_ri_ref_tensor_count(k);
  for (int i = 0; i < h->n_tensors; i++) {
    h->toff[i] = off;
    h->tn[i] = fr_ri_ref_tensor_size(k, i);
    off = align_up(off + h->tn[i]);
  }
  h->n_params = off;
}

/* PyTorch's default initialisation, from a seeded generator (reproducible). */
static void initial_values(const fr_ri_heads *h, float *v)
{
  uint32_t rng = h->cfg.seed * 2654435761u + 12345u;
  double fan[T_COUNT] = {0};
  fan[T_REG_W] = fan[T_REG_B] = (double)h->tn[T_REG_W];
  fan[T_MLP1_W] = fan[T_MLP1_B] = h->cfg.c;
  fan[T_MLP2_W] = fan[T_MLP2_B] = h->hidden;
  fan[T_CONV_W] = 2.0 * h->cfg.spatial_kernel * h->cfg.spatial_kernel;
  fan[T_ATT_W] = fan[T_ATT_B] = (double)h->hwc;
  for (int i = 0; i < h->n_tensors; i++) {
    float *t = v + h->toff[i];
    if (i == T_BN_G || i == T_BN_RV) {
      t[0] = 1.0f;
      continue;
    }
    if (i == T_BN_B || i == T_BN_RM) {
      t[0] = 0.0f;
      continue;
    }
    float a = (float)(1.0 / sqrt(fan[i]));
    for (size_t k = 0; k < h->tn[i]; k++) {
      rng = rng * 1664525u + 1013904223u;
      t[k] = ((float)(rng >> 8) / 16777216.0f * 2.0f - 1.0f) * a;
    }
  }
}

int fr_ri_heads_create(fr_vk_context *ctx, const fr_ri_heads_config *cfg, fr_ri_heads **out, fr_error *err)
{
  *out = NULL;
  int rc = check_config(cfg, err);
  if (rc)
    return rc;
  fr_ri_heads *h = calloc(1, sizeof(*h));
  if (!h)
    return fr_error_set(err, FR_ERR_NOMEM, "RI heads: out of memory");
  h->ctx = ctx;
  h->cfg = *cfg;
  h->hidden = cfg->c / cfg->reduction > 0 ? cfg->c / cfg->reduction : 1;
  h->hw = cfg->h * cfg->w;
  h->hwc = (size_t)h->hw * cfg->c;
  h->chunk = cfg->max_chunk > 0 && cfg->max_chunk < cfg->max_batch ? cfg->max_chunk : cfg->max_batch;
  layout(h);
  const fr_vk_device_info *dev = fr_vk_context_device(ctx);
  uint32_t lim = dev->max_workgroup_size[0] < dev->max_workgroup_invocations ? dev->max_workgroup_size[0]
                                                                             : dev->max_workgroup_invocations;
  h->wg = WG < lim ? WG : lim;
  for (h->wg_tree = 1; h->wg_tree * 2 <= h->wg;)
    h->wg_tree *= 2;
  uint64_t biggest = (uint64_t)h->hb_floats * sizeof(float);
  if (cfg->attention && (uint64_t)h->chunk * h->hwc * sizeof(float) > biggest)
    biggest = (uint64_t)h->chunk * h->hwc * sizeof(float);
  if (biggest > dev->max_storage_buffer_range)
    rc = fr_error_set(err, FR_ERR_UNSUPPORTED, "RI heads: a %llu-byte binding exceeds the device's %llu; lower the batch "
                      "or the chunk", (unsigned long long)biggest, (unsigned long long)dev->max_storage_buffer_range);
  if (!rc)
    rc = fr_train_ops_create(ctx, &h->tops, err);
  fr_vk_binding_kind st[FR_VK_MAX_BINDINGS];
  for (int i = 0; i < FR_VK_MAX_BINDINGS; i++)
    st[i] = FR_BIND_STORAGE;
  if (!rc)
    rc = fr_vk_kernel_create(ctx, "train_ri_fc", 6, st, 12 * 4, &h->wg, 1, &h->fc, err);
  if (!rc)
    rc = fr_vk_kernel_create(ctx, "train_ri_fc_fwd", 6, st, 12 * 4, &h->wg_tree, 1, &h->fc_fwd, err);
  if (!rc)
    rc = fr_vk_kernel_create(ctx, "train_ri_loss", 8, st, 21 * 4, &h->wg, 1, &h->loss, err);
  if (!rc && cfg->attention)
    rc = fr_vk_kernel_create(ctx, "train_cbam", 6, st, 24 * 4, &h->wg, 1, &h->cbam, err);
  float *values = NULL;
  if (!rc) {
    values = calloc(h->n_params, sizeof(float));
    if (!values)
      rc = fr_error_set(err, FR_ERR_NOMEM, "RI heads: out of memory for %zu parameters", h->n_params);
  }
  if (!rc)
    rc = make_buffer(h, &h->params, h->n_params, "parameters", err);
  if (!rc)
    rc = make_buffer(h, &h->grads, h->n_params, "gradients", err);
  if (!rc) /* zero: the optimizer reads the gradients of every step, the gaps included */
    rc = fr_vk_buffer_upload(ctx, &h->grads, 0, values, h->n_params * sizeof(float), err);
  if (!rc) {
    initial_values(h, values);
    rc = fr_vk_buffer_upload(ctx, &h->params, 0, values, h->n_params * sizeof(float), err);
  }
  if (!rc)
    rc = make_buffer(h, &h->ctl, 4, "step scalars", err);
  if (!rc)
    rc = make_buffer(h, &h->hb, h->hb_floats, "batch buffer", err);
  if (!rc) { /* defined contents: the loss may be read before any run */
    float *zero = calloc(h->hb_floats, sizeof(float));
    rc = zero ? fr_vk_buffer_upload(ctx, &h->hb, 0, zero, h->hb_floats * sizeof(float), err)
              : fr_error_set(err, FR_ERR_NOMEM, "RI heads: out of memory");
    free(zero);
  }
  if (!rc && cfg->attention) {
    fr_conv_params cp = {0};
    cp.batch = cfg->max_batch, cp.in_h = cp.out_h = cfg->h, cp.in_w = cp.out_w = cfg->w;
    cp.in_c = 2, cp.out_c = 1, cp.kernel_h = cp.kernel_w = cfg->spatial_kernel, cp.stride_h = cp.stride_w = 1;
    cp.pad_top = cp.pad_left = cfg->spatial_kernel / 2;
    fr_conv_params ap = ri_att_fc_params(h, h->chunk);
    size_t s1 = fr_train_reduce_scratch_floats(cfg->max_batch * h->hw, 1), s2 = fr_train_conv_filter_scratch_floats(&cp);
    size_t s3 = fr_train_conv_filter_scratch_floats(&ap);
    s1 = s1 > s2 ? s1 : s2;
    rc = make_buffer(h, &h->scratch, s1 > s3 ? s1 : s3, "reduction scratch", err);
    /* whole 16-byte texels: the GEMMs read t1 through texel views */
    size_t chunk_floats = ((size_t)h->chunk * h->hwc + 3) & ~(size_t)3;
    if (!rc)
      rc = make_buffer(h, &h->t1, chunk_floats, "chunk tensor", err);
    if (!rc)
      rc = make_buffer(h, &h->t2, chunk_floats, "chunk tensor", err);
  }
  if (!rc)
    rc = ri_att_fc_create(h, err);
  if (!rc)
    rc = ri_att_fc_repack_now(h, err);
  if (!rc)
    rc = fr_ri_heads_begin_step(h, 0, 0.0f, 1.0f, err);
  free(values);
  if (rc) {
    fr_error_prefix(err, "creating the RI heads");
    fr_ri_heads_destroy(h);
    return rc;
  }
  *out = h;
  return FR_OK;
}

void fr_ri_heads_destroy(fr_ri_heads *h)
{
  if (!h)
    return;
  ri_att_fc_destroy(h);
  fr_vk_buffer *b[] = {&h->params, &h->grads, &h->ctl, &h->hb, &h->t1, &h->t2, &h->scratch};
  for (size_t i = 0; i < sizeof(b) / sizeof(b[0]); i++)
    if (b[i]->buffer)
      fr_vk_buffer_destroy(h->ctx, b[i]);
  fr_vk_kernel_destroy(h->ctx, h->fc);
  fr_vk_kernel_destroy(h->ctx, h->fc_fwd);
  fr_vk_kernel_destroy(h->ctx, h->loss);
  fr_vk_kernel_destroy(h->ctx, h->cbam);
  fr_train_ops_destroy(h->tops);
  free(h);
}

const fr_ri_heads_config *fr_ri_heads_config_of(const fr_ri_heads *h) { return &h->cfg; }

/* ---- parameters ---- */

int fr_ri_heads_tensor_count(const fr_ri_heads *h) { return h->n_tensors; }
const char *fr_ri_heads_tensor_name(const fr_ri_heads *h, int i) { return fr_ri_ref_tensor_name(&h->cfg, i); }
size_t fr_ri_heads_tensor_size(const fr_ri_heads *h, int i) { return i >= 0 && i < h->n_tensors ? h->tn[i] : 0; }
int fr_ri_heads_tensor_trainable(const fr_ri_heads *h, int i) { return fr_ri_ref_tensor_trainable(&h->cfg, i); }

int fr_ri_heads_read_tensor(fr_ri_heads *h, int i, int gradients, float *out, fr_error *err)
{
  if (i < 0 || i >= h->n_tensors)
    return fr_error_set(err, FR_ERR_INVALID, "RI heads: no tensor %d (%d tensors)", i, h->n_tensors);
  if (gradients && !fr_ri_heads_tensor_trainable(h, i))
    return fr_error_set(err, FR_ERR_INVALID, "RI heads: %s is state, it has no gradient", fr_ri_heads_tensor_name(h, i));
  return fr_vk_buffer_download(h->ctx, gradients ? &h->grads : &h->params, h->toff[i] * sizeof(float), out,
                               h->tn[i] * sizeof(float), err);
}

int fr_ri_heads_write_tensor(fr_ri_heads *h, int i, const float *values, size_t n, fr_error *err)
{
  if (i < 0 || i >= h->n_tensors)
    return fr_error_set(err, FR_ERR_INVALID, "RI heads: no tensor %d (%d tensors)", i, h->n_tensors);
  if (n != h->tn[i])
    return fr_error_set(err, FR_ERR_INVALID, "RI heads: %s has %zu values, got %zu", fr_ri_heads_tensor_name(h, i),
                        h->tn[i], n);
  for (size_t k = 0; k < n; k++)
    if (!isfinite(values[k]))
      return fr_error_set(err, FR_ERR_INVALID, "RI heads: %s value %zu is not finite", fr_ri_heads_tensor_name(h, i), k);
  if (i == T_BN_RV && !(values[0] >= 0.0f))
    return fr_error_set(err, FR_ERR_INVALID, "RI heads: running variance %g is negative", (double)values[0]);
  int rc = fr_vk_buffer_upload(h->ctx, &h->params, h->toff[i] * sizeof(float), values, n * sizeof(float), err);
  if (!rc && (i == T_ATT_W || i == T_ATT_B))
    rc = ri_att_fc_repack_now(h, err);
  return rc;
}

int fr_ri_heads_add_to_optimizer(fr_ri_heads *h, fr_optimizer *o, int group, fr_error *err)
{
  h->device_updates = 1; /* the inference path then regathers the packed weights itself */
  for (int i = 0; i < h->n_tensors; i++) {
    if (!fr_ri_heads_tensor_trainable(h, i))
      continue;
    int rc = fr_optimizer_add_param(o, group, ri_floats(&h->params, h->toff[i], h->tn[i]),
                                    ri_floats(&h->grads, h->toff[i], h->tn[i]), h->tn[i], err);
    if (rc) {
      fr_error_prefix(err, "RI heads: registering %s", fr_ri_heads_tensor_name(h, i));
      return rc;
    }
  }
  return FR_OK;
}

int fr_ri_heads_begin_step(fr_ri_heads *h, uint32_t step, float mu_ui, float sigma_ui, fr_error *err)
{
  if (!isfinite(mu_ui) || !(sigma_ui > 0.0f) || !isfinite(sigma_ui))
    return fr_error_set(err, FR_ERR_INVALID, "RI heads: mu_UI %g and sigma_UI %g must be finite, sigma > 0",
                        (double)mu_ui, (double)sigma_ui);
  uint32_t v[4] = {step, 0, 0, 0};
  memcpy(&v[1], &mu_ui, sizeof(float));
  memcpy(&v[2], &sigma_ui, sizeof(float));
  return fr_vk_buffer_upload(h->ctx, &h->ctl, 0, v, sizeof(v), err);
}

/* ---- results ---- */

int fr_ri_heads_read_loss(fr_ri_heads *h, fr_ri_loss_values *out, fr_error *err)
{
  float v[RI_LOSS_FLOATS];
  int rc = fr_vk_buffer_download(h->ctx, &h->hb, (uint64_t)h->r[R_LOSS] * sizeof(float), v, sizeof(v), err);
  if (rc)
    return rc;
  *out = (fr_ri_loss_values){v[0], v[1], v[2], v[3], (int)v[4], (int)v[5], (int)v[6], (int)v[7], v[8], v[9]};
  return FR_OK;
}

int fr_ri_heads_read_outputs(fr_ri_heads *h, int n, float *xi_hat, float *v_attn, fr_error *err)
{
  if (n < 1 || n > h->cfg.max_batch || (v_attn && !h->cfg.attention))
    return fr_error_set(err, FR_ERR_INVALID, "RI heads: reading %d rows (max %d)%s", n, h->cfg.max_batch,
                        v_attn && !h->cfg.attention ? ", v_attn without the attention head" : "");
  int rc = FR_OK;
  if (xi_hat)
    rc = fr_vk_buffer_download(h->ctx, &h->hb, (uint64_t)h->r[R_XH] * sizeof(float), xi_hat, (uint64_t)n * sizeof(float),
                               err);
  if (!rc && v_attn)
    rc = fr_vk_buffer_download(h->ctx, &h->hb, (uint64_t)h->r[R_VA] * sizeof(float), v_attn,
                               (uint64_t)n * h->cfg.dim * sizeof(float), err);
  return rc;
}

fr_vk_arg fr_ri_heads_xi_hat_arg(const fr_ri_heads *h) { return ri_floats(&h->hb, h->r[R_XH], (size_t)h->cfg.max_batch); }
fr_vk_arg fr_ri_heads_v_attn_arg(const fr_ri_heads *h)
{
  return ri_floats(&h->hb, h->r[R_VA], (size_t)h->cfg.max_batch * h->cfg.dim);
}
