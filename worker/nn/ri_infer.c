/* The learned RI at inference (faceri/ri_infer.h): the RI heads rebuilt from a model
 * file's /heads/ri tensors and run with inference semantics. */
#include "faceri/ri_infer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct fr_ri_infer {
  fr_vk_context *ctx;
  fr_ri_heads *heads;
  int feature_layer;
  fr_vk_buffer F, v;
  fr_vk_sequence *seq;
  int recorded_n; /* rows of the recorded host-array run, -1: none */
};

void fr_ri_config_encode(const fr_ri_heads_config *k, int feature_layer, float out[FR_RI_CONFIG_FLOATS])
{
  float v[FR_RI_CONFIG_FLOATS] = {
      [FR_RI_CFG_VERSION] = 1, [FR_RI_CFG_FEATURE_LAYER] = (float)feature_layer, [FR_RI_CFG_H] = (float)k->h,
      [FR_RI_CFG_W] = (float)k->w, [FR_RI_CFG_C] = (float)k->c, [FR_RI_CFG_DIM] = (float)k->dim,
      [FR_RI_CFG_REG_INPUT] = (float)k->reg_input, [FR_RI_CFG_ATTENTION] = (float)k->attention,
      [FR_RI_CFG_REDUCTION] = (float)k->reduction, [FR_RI_CFG_KERNEL] = (float)k->spatial_kernel,
      [FR_RI_CFG_BN_EPS] = k->bn_eps, [FR_RI_CFG_BN_MOMENTUM] = k->bn_momentum, [FR_RI_CFG_DROPOUT] = k->dropout,
      [FR_RI_CFG_ALPHA] = k->alpha, [FR_RI_CFG_BETA] = k->beta, [FR_RI_CFG_GAMMA] = k->gamma,
      [FR_RI_CFG_L1_BETA] = k->l1_beta, [FR_RI_CFG_TAU] = k->tau, [FR_RI_CFG_DETACH_VPROJ] = (float)k->detach_vproj,
      [FR_RI_CFG_PROJECT_NORMALIZED] = (float)k->project_normalized, [FR_RI_CFG_MSE_SUM_DIM] = (float)k->mse_sum_dim,
      [FR_RI_CFG_UI_TERMS] = (float)k->ui_terms};
  memcpy(out, v, sizeof(v));
}

int fr_model_has_ri_heads(const fr_model *m) { return fr_model_find_tensor(m, FR_RI_TENSOR_ROOT "config") != NULL; }

static int small_int(float x, int lo, int hi, int *out)
{
  if (!(x >= (float)lo && x <= (float)hi) || x != floorf(x))
    return 0;
  *out = (int)x;
  return 1;
}

int fr_ri_config_from_model(const fr_model *m, int max_batch, fr_ri_heads_config *cfg, int *feature_layer,
                            fr_error *err)
{
  const fr_model_tensor *t = fr_model_find_tensor(m, FR_RI_TENSOR_ROOT "config");
  if (!t)
    return fr_error_set(err, FR_ERR_INVALID, "model has no RI heads (/heads/ri/config): train it with faceri train --ri");
  if (t->rank != 1 || t->dims[0] < FR_RI_CONFIG_FLOATS)
    return fr_error_set(err, FR_ERR_FORMAT, "/heads/ri/config holds %lld values, expected %d",
                        (long long)(t->rank == 1 ? t->dims[0] : -1), FR_RI_CONFIG_FLOATS);
  const float *v = t->data;
  int version, f, h, w, c, dim, reg, att, red, k;
  int ok = small_int(v[FR_RI_CFG_VERSION], 1, 1, &version) &&
           small_int(v[FR_RI_CFG_FEATURE_LAYER], 0, m->n_layers - 1, &f) && small_int(v[FR_RI_CFG_H], 1, 4096, &h) &&
           small_int(v[FR_RI_CFG_W], 1, 4096, &w) && small_int(v[FR_RI_CFG_C], 1, 65536, &c) &&
           small_int(v[FR_RI_CFG_DIM], 1, 65536, &dim) && small_int(v[FR_RI_CFG_REG_INPUT], 0, 1, &reg) &&
           small_int(v[FR_RI_CFG_ATTENTION], 0, 1, &att) && small_int(v[FR_RI_CFG_REDUCTION], 1, 65536, &red) &&
           small_int(v[FR_RI_CFG_KERNEL], 1, 63, &k);
  if (!ok)
    return fr_error_set(err, FR_ERR_FORMAT, "/heads/ri/config: a field is out of range (version 1 expected)");
  const fr_layer *l = &m->layers[f];
  if (l->out_h != h || l->out_w != w || l->out_c != c || dim != m->embedding_size)
    return fr_error_set(err, FR_ERR_FORMAT,
                        "/heads/ri/config: heads on a %dx%dx%d map of layer %d (dim %d), the model's layer is %dx%dx%d "
                        "(dim %d)",
                        h, w, c, f, dim, l->out_h, l->out_w, l->out_c, m->embedding_size);
  *cfg = fr_ri_heads_defaults(h, w, c, dim, max_batch);
  cfg->reg_input = reg ? FR_RI_REG_EMBEDDING : FR_RI_REG_FEATURES;
  cfg->attention = att;
  cfg->reduction = red;
  cfg->spatial_kernel = k;
  cfg->bn_eps = v[FR_RI_CFG_BN_EPS];
  cfg->bn_momentum = v[FR_RI_CFG_BN_MOMENTUM];
  cfg->dropout = v[FR_RI_CFG_DROPOUT];
  cfg->alpha = v[FR_RI_CFG_ALPHA], cfg->beta = v[FR_RI_CFG_BETA], cfg->gamma = v[FR_RI_CFG_GAMMA];
  cfg->l1_beta = v[FR_RI_CFG_L1_BETA];
  cfg->tau = v[FR_RI_CFG_TAU];
  cfg->detach_vproj = v[FR_RI_CFG_DETACH_VPROJ] != 0.0f;
  cfg->project_normalized = v[FR_RI_CFG_PROJECT_NORMALIZED] != 0.0f;
  cfg->mse_sum_dim = v[FR_RI_CFG_MSE_SUM_DIM] != 0.0f;
  cfg->ui_terms = (unsigned)v[FR_RI_CFG_UI_TERMS] & 7u;
  *feature_layer = f;
  return FR_OK;
}

int fr_ri_heads_store_in_model(fr_ri_heads *h, int feature_layer, fr_model *m, fr_error *err)
{
  float cfg[FR_RI_CONFIG_FLOATS];
  fr_ri_config_encode(fr_ri_heads_config_of(h), feature_layer, cfg);
  int64_t d = FR_RI_CONFIG_FLOATS;
  int rc = fr_model_set_tensor(m, FR_RI_TENSOR_ROOT "config", 1, &d, cfg, err);
  for (int i = 0; !rc && i < fr_ri_heads_tensor_count(h); i++) {
    size_t n = fr_ri_heads_tensor_size(h, i);
    float *v = malloc(n * sizeof(float));
    char path[FR_MODEL_TENSOR_PATH];
    snprintf(path, sizeof(path), FR_RI_TENSOR_ROOT "%s", fr_ri_heads_tensor_name(h, i));
    rc = v ? fr_ri_heads_read_tensor(h, i, 0, v, err)
           : fr_error_set(err, FR_ERR_NOMEM, "/%s: out of memory for %zu values", path, n);
    int64_t dims = (int64_t)n;
    if (!rc)
      rc = fr_model_set_tensor(m, path, 1, &dims, v, err);
    free(v);
  }
  return rc;
}

int fr_ri_heads_load_from_model(fr_ri_heads *h, const fr_model *m, fr_error *err)
{
  for (int i = 0; i < fr_ri_heads_tensor_count(h); i++) {
    char path[FR_MODEL_TENSOR_PATH];
    snprintf(path, sizeof(path), FR_RI_TENSOR_ROOT "%s", fr_ri_heads_tensor_name(h, i));
    const fr_model_tensor *t = fr_model_find_tensor(m, path);
    int64_t n = 1;
    for (int k = 0; t && k < t->rank; k++)
      n *= t->dims[k];
    if (!t || (size_t)n != fr_ri_heads_tensor_size(h, i))
      return fr_error_set(err, FR_ERR_FORMAT, "/%s: %s (the heads need %zu values)", path,
                          t ? "wrong size" : "missing", fr_ri_heads_tensor_size(h, i));
    int rc = fr_ri_heads_write_tensor(h, i, t->data, (size_t)n, err);
    if (rc)
      return rc;
  }
  return FR_OK;
}

int fr_ri_infer_create(fr_vk_context *ctx, const fr_model *m, int max_batch, fr_ri_infer **out, fr_error *err)
{
  *out = NULL;
  fr_ri_heads_config cfg;
  int feature = -1;
  int rc = fr_ri_config_from_model(m, max_batch, &cfg, &feature, err);
  if (rc)
    return rc;
  fr_ri_infer *r = calloc(1, sizeof(*r));
  if (!r)
    return fr_error_set(err, FR_ERR_NOMEM, "RI inference: out of memory");
  r->ctx = ctx;
  r->feature_layer = feature;
  r->recorded_n = -1;
  rc = fr_ri_heads_create(ctx, &cfg, &r->heads, err);
  if (!rc)
    rc = fr_ri_heads_load_from_model(r->heads, m, err);
  if (rc) {
    fr_error_prefix(err, "RI inference");
    fr_ri_infer_destroy(r);
    return rc;
  }
  *out = r;
  return FR_OK;
}

void fr_ri_infer_destroy(fr_ri_infer *r)
{
  if (!r)
    return;
  fr_vk_sequence_destroy(r->seq);
  if (r->F.buffer)
    fr_vk_buffer_destroy(r->ctx, &r->F);
  if (r->v.buffer)
    fr_vk_buffer_destroy(r->ctx, &r->v);
  fr_ri_heads_destroy(r->heads);
  free(r);
}

int fr_ri_infer_feature_layer(const fr_ri_infer *r) { return r->feature_layer; }
const fr_ri_heads_config *fr_ri_infer_config(const fr_ri_infer *r) { return fr_ri_heads_config_of(r->heads); }

int fr_ri_infer_record(fr_ri_infer *r, fr_vk_sequence *seq, int row0, int nb, fr_vk_arg F, fr_vk_arg v,
                       fr_error *err)
{
  return fr_ri_heads_record_infer(r->heads, seq, row0, nb, F, v, err);
}

int fr_ri_infer_record_parts(fr_ri_infer *r, fr_vk_sequence *seq, int row0, int nb, fr_vk_arg F, fr_vk_arg v,
                             int parts, fr_error *err)
{
  return fr_ri_heads_record_infer_parts(r->heads, seq, row0, nb, F, v, parts, err);
}

int fr_ri_infer_read(fr_ri_infer *r, int n, float *xi_hat, float *v_attn, fr_error *err)
{
  return fr_ri_heads_read_outputs(r->heads, n, xi_hat, v_attn, err);
}

int fr_ri_infer_run(fr_ri_infer *r, const float *F, const float *v, int n, float *xi_hat, float *v_attn,
                    fr_error *err)
{
  const fr_ri_heads_config *k = fr_ri_heads_config_of(r->heads);
  int emb = k->reg_input == FR_RI_REG_EMBEDDING;
  if (!F || (emb && !v) || n < 1 || n > k->max_batch)
    return fr_error_set(err, FR_ERR_INVALID, "RI inference: %d rows (1..%d)%s", n, k->max_batch,
                        emb && !v ? ", no embedding for the embedding regression" : "");
  uint64_t fb = (uint64_t)k->max_batch * k->h * k->w * k->c * sizeof(float);
  uint64_t vb = (uint64_t)k->max_batch * k->dim * sizeof(float);
  int rc = FR_OK;
  if (!r->F.buffer)
    rc = fr_vk_buffer_create(r->ctx, fb, &r->F, err);
  if (!rc && !r->v.buffer)
    rc = fr_vk_buffer_create(r->ctx, vb, &r->v, err);
  if (!rc && !r->seq)
    rc = fr_vk_sequence_create(r->ctx, 0, &r->seq, err);
  if (!rc)
    rc = fr_vk_buffer_upload(r->ctx, &r->F, 0, F, (uint64_t)n * k->h * k->w * k->c * sizeof(float), err);
  if (!rc && emb)
    rc = fr_vk_buffer_upload(r->ctx, &r->v, 0, v, (uint64_t)n * k->dim * sizeof(float), err);
  if (!rc && r->recorded_n != n) {
    r->recorded_n = -1;
    rc = fr_vk_sequence_begin(r->seq, err);
    if (!rc)
      rc = fr_ri_heads_record_infer(r->heads, r->seq, 0, n, (fr_vk_arg){&r->F, 0, 0}, (fr_vk_arg){&r->v, 0, 0}, err);
    if (!rc)
      rc = fr_vk_sequence_end(r->seq, err);
    if (!rc)
      r->recorded_n = n;
  }
  if (!rc)
    rc = fr_vk_sequence_run(r->seq, err);
  if (!rc)
    rc = fr_ri_heads_read_outputs(r->heads, n, xi_hat, k->attention ? v_attn : NULL, err);
  if (rc)
    fr_error_prefix(err, "RI inference (%d rows)", n);
  return rc;
}
