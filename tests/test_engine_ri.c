/* The RI heads inside the engine (fr_engine_run_outputs): xi^ and v_attn of one engine
 * call against the heads run on host arrays (fr_ri_infer_run on the feature layer's
 * map and the raw embedding, both taken from engines without heads), for MobileFaceNet
 * with randomly initialised heads in three shapes: the paper's (feature-map regression
 * and attention), the CR-FIQA-style regression on the raw embedding with attention,
 * and the embedding regression alone (v_attn NaN). The older entry points give the
 * same embeddings and xi^. */
#include <CUnit/Basic.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "faceri/engine.h"
#include "faceri/ri_infer.h"
#include "test_util.h"

enum { N = 3 };

static fr_vk_context *ctx;
static fr_model g_model;
static int g_loaded;
static int g_feature = -1;
static float *g_in, *g_F, *g_raw;

/* The trainer's choice (fr_trainer_ri_feature): the input of the first layer that
 * reduces a map to 1x1. */
static int feature_layer(const fr_model *m)
{
  for (int i = 0; i < m->n_layers; i++) {
    const fr_layer *l = &m->layers[i];
    if (l->out_h * l->out_w == 1 && l->in_h * l->in_w > 1 && l->input >= 0)
      return l->input;
  }
  return -1;
}

/* Heads initialised from seed, stored in m as faceri train --ri stores them; the batch
 * norm's running statistics moved off 0/1 so inference must use them. */
static int add_heads(fr_model *m, fr_ri_reg_input reg, int attention, uint32_t seed, fr_error *err)
{
  const fr_layer *l = &m->layers[g_feature];
  fr_ri_heads_config c = fr_ri_heads_defaults(l->out_h, l->out_w, l->out_c, m->embedding_size, 1);
  c.reg_input = reg;
  c.attention = attention;
  c.seed = seed;
  c.att_fwd_gemm = -1; /* only its initial values are wanted: no GEMM pipelines to build */
  fr_ri_heads *h = NULL;
  int rc = fr_ri_heads_create(ctx, &c, &h, err);
  if (!rc)
    rc = fr_ri_heads_store_in_model(h, g_feature, m, err);
  for (int i = 0; !rc && i < m->n_tensors; i++) {
    if (strstr(m->tensors[i].path, "running_mean"))
      m->tensors[i].data[0] = 0.25f;
    if (strstr(m->tensors[i].path, "running_var"))
      m->tensors[i].data[0] = 2.5f;
  }
  fr_ri_heads_destroy(h);
  return rc;
}

static double rel_diff(const float *a, const float *b, size_t n)
{
  double worst = 0;
  for (size_t i = 0; i < n; i++) {
    double d = fabs((double)a[i] - (double)b[i]) / fmax(fabs((double)b[i]), 1e-3);
    worst = isfinite(a[i]) && isfinite(b[i]) ? fmax(worst, d) : INFINITY;
  }
  return worst;
}

/* F (the feature layer's map) and the raw embedding of g_in from engines without heads:
 * a copy of the model cut after the feature layer gives the map as its "embedding". */
static int host_inputs(fr_error *err)
{
  fr_model cut = g_model;
  const fr_layer *l = &g_model.layers[g_feature];
  cut.n_layers = g_feature + 1;
  cut.output_layer = g_feature;
  cut.embedding_size = l->out_h * l->out_w * l->out_c;
  cut.n_tensors = 0;
  cut.tensors = NULL;
  fr_engine_options eo = {.max_batch = N, .timing = 0};
  fr_engine *e = NULL, *ef = NULL;
  float *emb = malloc((size_t)N * cut.embedding_size * sizeof(float));
  g_F = malloc((size_t)N * cut.embedding_size * sizeof(float));
  g_raw = malloc((size_t)N * g_model.embedding_size * sizeof(float));
  int rc = emb && g_F && g_raw ? fr_engine_create(ctx, &g_model, &eo, &e, err) : FR_ERR_NOMEM;
  if (!rc)
    rc = fr_engine_create(ctx, &cut, &eo, &ef, err);
  if (!rc)
    rc = fr_engine_run(e, g_in, N, emb, NULL, g_raw, err);
  if (!rc)
    rc = fr_engine_run(ef, g_in, N, emb, NULL, g_F, err);
  fr_engine_destroy(e);
  fr_engine_destroy(ef);
  free(emb);
  return rc;
}

static int ready(void)
{
  if (g_loaded)
    return g_loaded > 0;
  fr_error err = {0};
  struct stat st;
  g_loaded = -1;
  if (stat(fr_model_default_path(), &st) != 0 || fr_model_load(fr_model_default_path(), &g_model, &err) != FR_OK)
    return 0;
  g_feature = feature_layer(&g_model);
  size_t img = (size_t)g_model.input_h * g_model.input_w * g_model.input_c;
  g_in = malloc(N * img * sizeof(float));
  if (g_feature < 0 || !g_in)
    return 0;
  uint32_t s = 12345u;
  for (size_t i = 0; i < N * img; i++) {
    s = s * 1664525u + 1013904223u;
    g_in[i] = (float)(s >> 8) / 8388608.0f - 1.0f;
  }
  int rc = host_inputs(&err);
  if (rc)
    printf("\n    host features: %s", err.message);
  g_loaded = rc ? -1 : 1;
  return !rc;
}

static void check_variant(fr_ri_reg_input reg, int attention, uint32_t seed, const char *label)
{
  if (!ready())
    TEST_SKIP("no model at %s", fr_model_default_path());
  fr_error err = {0};
  fr_model m;
  CU_ASSERT_EQUAL_FATAL(fr_model_load(fr_model_default_path(), &m, &err), FR_OK);
  CU_ASSERT_EQUAL_FATAL(add_heads(&m, reg, attention, seed, &err), FR_OK);
  int D = m.embedding_size;
  fr_engine_options eo = {.max_batch = N, .timing = 0};
  fr_engine *e = NULL;
  fr_ri_infer *inf = NULL;
  CU_ASSERT_EQUAL_FATAL(fr_engine_create(ctx, &m, &eo, &e, &err), FR_OK);
  CU_ASSERT_EQUAL(fr_engine_has_ri(e), 1);
  CU_ASSERT_EQUAL(fr_engine_has_attention(e), attention);
  CU_ASSERT_EQUAL(fr_engine_attention_dim(e), attention ? D : 0);
  static float emb[N * 512], emb2[N * 512], raw[N * 512], va[N * 512], va_host[N * 512];
  float ri[N], ri2[N], xi_host[N];
  fr_engine_outputs o = {emb, NULL, raw, ri, va};
  CU_ASSERT_EQUAL_FATAL(fr_engine_run_outputs(e, g_in, N, &o, &err), FR_OK);
  CU_ASSERT_EQUAL_FATAL(fr_ri_infer_create(ctx, &m, N, &inf, &err), FR_OK);
  CU_ASSERT_EQUAL_FATAL(fr_ri_infer_run(inf, g_F, g_raw, N, xi_host, attention ? va_host : NULL, &err), FR_OK);
  double d_xi = rel_diff(ri, xi_host, N), d_va = attention ? rel_diff(va, va_host, (size_t)N * D) : 0;
  printf("\n    %s: xi^ %.4g %.4g %.4g; engine vs heads on host arrays: xi^ %.2e, v_attn %.2e", label, (double)ri[0],
         (double)ri[1], (double)ri[2], d_xi, d_va);
  CU_ASSERT(d_xi < 1e-5);
  CU_ASSERT(d_va < 1e-5);
  CU_ASSERT(rel_diff(raw, g_raw, (size_t)N * D) == 0); /* the heads leave the network alone */
  for (int i = 0; !attention && i < N * D; i++)
    CU_ASSERT_FATAL(isnan(va[i]));
  /* the older entry points: same embeddings, same xi^ */
  CU_ASSERT_EQUAL(fr_engine_run_ri(e, g_in, N, emb2, NULL, NULL, ri2, &err), FR_OK);
  CU_ASSERT(memcmp(ri, ri2, sizeof(ri)) == 0);
  CU_ASSERT(memcmp(emb, emb2, (size_t)N * D * sizeof(float)) == 0);
  CU_ASSERT_EQUAL(fr_engine_run(e, g_in, N, emb2, NULL, NULL, &err), FR_OK);
  CU_ASSERT(memcmp(emb, emb2, (size_t)N * D * sizeof(float)) == 0);
  fr_ri_infer_destroy(inf);
  fr_engine_destroy(e);
  fr_model_free(&m);
}

static void test_feature_regression(void) { check_variant(FR_RI_REG_FEATURES, 1, 7, "feature-map regression, attention"); }
static void test_embedding_regression(void)
{
  check_variant(FR_RI_REG_EMBEDDING, 1, 8, "embedding regression, attention");
}
static void test_embedding_only(void) { check_variant(FR_RI_REG_EMBEDDING, 0, 9, "embedding regression alone"); }

/* Without heads: ri and v_attn are NaN, the query says so. */
static void test_no_heads(void)
{
  if (!ready())
    TEST_SKIP("no model at %s", fr_model_default_path());
  fr_error err = {0};
  fr_model m = g_model;
  m.n_tensors = 0;
  m.tensors = NULL;
  fr_engine_options eo = {.max_batch = N, .timing = 0};
  fr_engine *e = NULL;
  CU_ASSERT_EQUAL_FATAL(fr_engine_create(ctx, &m, &eo, &e, &err), FR_OK);
  CU_ASSERT(!fr_engine_has_ri(e) && !fr_engine_has_attention(e) && fr_engine_attention_dim(e) == 0);
  static float emb[N * 512], va[N * 512];
  float ri[N] = {0};
  fr_engine_outputs o = {emb, NULL, NULL, ri, va};
  CU_ASSERT_EQUAL_FATAL(fr_engine_run_outputs(e, g_in, N, &o, &err), FR_OK);
  for (int i = 0; i < N; i++)
    CU_ASSERT(isnan(ri[i]));
  for (int i = 0; i < N * m.embedding_size; i++)
    CU_ASSERT_FATAL(isnan(va[i]));
  fr_engine_destroy(e);
}

static void test_no_validation_messages(void) { CU_ASSERT_EQUAL(fr_vk_validation_messages(ctx), 0); }

int main(void)
{
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  fr_error err = {0};
  if (fr_vk_context_create(NULL, &ctx, &err)) {
    fprintf(stderr, "setup: %s\n", err.message);
    return 1;
  }
  CU_initialize_registry();
  CU_pSuite s = CU_add_suite("RI heads in the engine", NULL, NULL);
  CU_add_test(s, "feature-map regression and attention", test_feature_regression);
  CU_add_test(s, "embedding regression and attention", test_embedding_regression);
  CU_add_test(s, "embedding regression alone", test_embedding_only);
  CU_add_test(s, "a model without heads", test_no_heads);
  CU_add_test(s, "no validation messages", test_no_validation_messages);
  int rc = test_run_all();
  if (g_loaded > 0 || g_model.layers)
    fr_model_free(&g_model);
  free(g_in);
  free(g_F);
  free(g_raw);
  fr_vk_context_destroy(ctx);
  return rc;
}
