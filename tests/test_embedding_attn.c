/* /embedding_attn and --test-embedding end to end (issue 6 item 5): MobileFaceNet
 * with randomly initialised RI heads (attention on) saved as a model file; twelve
 * ORL faces and one non-image. faceri embed --embedding-attn and faceri run
 * --embedding-attn --workers 2 (fleet path: protocol v2, workers, results writer)
 * give the same /embedding_attn, equal to the L2-normalised v_attn of
 * fr_engine_run_outputs on the same preprocessed images; --test-embedding attn puts
 * those rows in /embedding, concat gives 2D unit rows [v, v_attn]/sqrt(2);
 * /quality/norm stays |v|. A head-less model is refused (exit 2), so is --resume
 * with another --test-embedding. */
#include <CUnit/Basic.h>
#include <hdf5.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "faceri/engine.h"
#include "faceri/preprocess.h"
#include "faceri/ri_infer.h"
#include "test_process.h"
#include "test_util.h"

enum { N_IMG = 12 };

static char g_dir[256], g_orl[512], g_model[600];
static int g_prepared;
static fr_vk_context *ctx;

static int feature_layer(const fr_model *m)
{
  for (int i = 0; i < m->n_layers; i++) {
    const fr_layer *l = &m->layers[i];
    if (l->out_h * l->out_w == 1 && l->in_h * l->in_w > 1 && l->input >= 0)
      return l->input;
  }
  return -1;
}

/* The paper's heads (feature-map regression and attention) from a seed, stored the
 * way faceri train --ri stores them (as test_engine_ri.c does). */
static int add_heads(fr_model *m, fr_error *err)
{
  int feature = feature_layer(m);
  if (feature < 0)
    return fr_error_set(err, FR_ERR_INVALID, "no feature layer");
  const fr_layer *l = &m->layers[feature];
  fr_ri_heads_config c = fr_ri_heads_defaults(l->out_h, l->out_w, l->out_c, m->embedding_size, 1);
  c.attention = 1;
  c.seed = 11;
  c.att_fwd_gemm = -1;
  fr_ri_heads *h = NULL;
  int rc = fr_ri_heads_create(ctx, &c, &h, err);
  if (!rc)
    rc = fr_ri_heads_store_in_model(h, feature, m, err);
  fr_ri_heads_destroy(h);
  return rc;
}

/* imgs/: ORL s1 and s2, images 1-6, and a text file (skipped: NaN rows); attn.h5. */
static int prepare(void)
{
  if (g_prepared)
    return g_prepared > 0;
  g_prepared = -1;
  struct stat st;
  if (stat(fr_model_default_path(), &st) != 0 || stat(g_orl, &st) != 0)
    return 0;
  char cmd[2048], out[256];
  snprintf(cmd, sizeof(cmd),
           "cd %s && mkdir -p orl imgs/s1 imgs/s2 && tar xf %s -C orl && for s in s1 s2; do for i in 1 2 3 4 5 6; "
           "do cp orl/orl/$s/$i.pgm imgs/$s/; done; done && echo notes > imgs/s1/readme.txt && echo ok",
           g_dir, g_orl);
  if (test_run_command(cmd, out, sizeof(out)) != 0 || !strstr(out, "ok"))
    return 0;
  fr_model m;
  fr_error err = {0};
  if (fr_model_load(fr_model_default_path(), &m, &err))
    return 0;
  snprintf(g_model, sizeof(g_model), "%s/attn.h5", g_dir);
  int rc = add_heads(&m, &err);
  if (!rc)
    rc = fr_model_save(&m, g_model, &err);
  if (rc)
    printf("\n    model with heads: %s", err.message);
  fr_model_free(&m);
  g_prepared = rc ? -1 : 1;
  return !rc;
}

/* A float matrix dataset (NULL and *cols 0 when absent). */
static float *read_matrix(const char *file, const char *name, int *rows, int *cols)
{
  *rows = *cols = 0;
  hid_t f = H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0)
    return NULL;
  float *data = NULL;
  if (H5Lexists(f, name, H5P_DEFAULT) > 0) {
    hid_t ds = H5Dopen2(f, name, H5P_DEFAULT), sp = H5Dget_space(ds);
    hsize_t dims[2] = {0, 1};
    int rank = H5Sget_simple_extent_dims(sp, dims, NULL);
    *rows = (int)dims[0];
    *cols = rank == 2 ? (int)dims[1] : 1;
    data = malloc((size_t)*rows * *cols * sizeof(float) + 1);
    if (H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) {
      free(data);
      data = NULL;
    }
    H5Sclose(sp);
    H5Dclose(ds);
  }
  H5Fclose(f);
  return data;
}

static void read_attr(const char *file, const char *name, char *out, size_t cap)
{
  out[0] = '\0';
  hid_t f = H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0 || H5Aexists(f, name) <= 0) {
    if (f >= 0)
      H5Fclose(f);
    return;
  }
  hid_t a = H5Aopen(f, name, H5P_DEFAULT), t = H5Aget_type(a);
  char *v = NULL;
  if (H5Aread(a, t, &v) >= 0 && v) {
    snprintf(out, cap, "%s", v);
    H5free_memory(v);
  }
  H5Tclose(t);
  H5Aclose(a);
  H5Fclose(f);
}

static int faceri(const char *args, char *out, size_t cap)
{
  char cmd[8192];
  snprintf(cmd, sizeof(cmd), "cd %s && %s/faceri %s%s", g_dir, FACERI_BINARY_DIR, args,
           strstr(args, "2>&1") ? "" : " 2>>stderr.log");
  return test_run_command(cmd, out, cap);
}

static double cosine(const float *a, const float *b, int d)
{
  double ab = 0, aa = 0, bb = 0;
  for (int i = 0; i < d; i++)
    ab += (double)a[i] * b[i], aa += (double)a[i] * a[i], bb += (double)b[i] * b[i];
  return ab / sqrt(aa * bb);
}

static int row_is_nan(const float *r, int d)
{
  for (int i = 0; i < d; i++)
    if (!isnan(r[i]))
      return 0;
  return 1;
}

/* Rows in the file's order: sorted keys, imgs/s1/1..6.pgm, imgs/s1/readme.txt, imgs/s2/1..6. */
static const char *key_of(int row, char *buf, size_t cap)
{
  if (row == 6)
    return NULL;
  int s = row < 6 ? 1 : 2, i = row < 6 ? row + 1 : row - 6;
  snprintf(buf, cap, "%s/imgs/s%d/%d.pgm", g_dir, s, i);
  return buf;
}

/* The engine's v (unit) and v_attn (unit) for row's image, preprocessed as faceri does. */
static int reference(fr_engine *e, const fr_model *m, int row, float *v, float *va)
{
  char path[700];
  if (!key_of(row, path, sizeof(path)))
    return -1;
  FILE *f = fopen(path, "rb");
  if (!f)
    return -1;
  uint8_t bytes[1 << 16];
  size_t n = fread(bytes, 1, sizeof(bytes), f);
  fclose(f);
  fr_preprocess pp = {.input_w = m->input_w, .input_h = m->input_h};
  for (int c = 0; c < 3; c++)
    pp.mean[c] = m->mean[c], pp.std[c] = m->std[c];
  float *in = malloc((size_t)m->input_w * m->input_h * 3 * sizeof(float)), norm;
  int w, h;
  fr_error err = {0};
  int rc = fr_preprocess_image(&pp, bytes, n, path, in, &w, &h, &err);
  fr_engine_outputs o = {.embeddings = v, .norms = &norm, .v_attn = va};
  if (!rc)
    rc = fr_engine_run_outputs(e, in, 1, &o, &err);
  free(in);
  double s = 0;
  for (int i = 0; i < m->embedding_size; i++)
    s += (double)va[i] * va[i];
  for (int i = 0; i < m->embedding_size; i++)
    va[i] = (float)(va[i] / sqrt(s));
  return rc;
}

static void test_attention_embedding(void)
{
  if (!prepare())
    TEST_SKIP("model or %s missing", g_orl);
  char out[8192];
  CU_ASSERT_EQUAL(faceri("embed --json --embedding-attn -m attn.h5 -o e.h5 imgs", out, sizeof(out)), 0);
  CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"test_embedding\":\"v\",\"embedding_attn\":192"));
  CU_ASSERT_EQUAL(faceri("embed --json --test-embedding attn -m attn.h5 -o ea.h5 imgs", out, sizeof(out)), 0);
  CU_ASSERT_EQUAL(faceri("embed --json --test-embedding concat -m attn.h5 -o ec.h5 imgs", out, sizeof(out)), 0);
  CU_ASSERT_EQUAL(faceri("run --json --embedding-attn --test-embedding concat --workers 2 --shard-size 4 -b 4 "
                         "-m attn.h5 -o r.h5 imgs", out, sizeof(out)), 0);
  CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"test_embedding\":\"concat\",\"embedding_attn\":192"));

  char f[4][700];
  const char *names[4] = {"e.h5", "ea.h5", "ec.h5", "r.h5"};
  for (int i = 0; i < 4; i++)
    snprintf(f[i], sizeof(f[i]), "%s/%s", g_dir, names[i]);
  int rows, cols, r2, c2;
  float *e_attn = read_matrix(f[0], "embedding_attn", &rows, &cols);
  float *r_attn = read_matrix(f[3], "embedding_attn", &r2, &c2);
  CU_ASSERT_FATAL(e_attn && r_attn && rows == N_IMG + 1 && cols == 192 && r2 == rows && c2 == cols);
  float *e_emb = read_matrix(f[0], "embedding", &rows, &cols);
  float *a_emb = read_matrix(f[1], "embedding", &r2, &c2);
  CU_ASSERT_FATAL(e_emb && cols == 192 && a_emb && c2 == 192);
  float *c_emb = read_matrix(f[2], "embedding", &rows, &cols);
  float *rc_emb = read_matrix(f[3], "embedding", &r2, &c2);
  CU_ASSERT_FATAL(c_emb && cols == 384 && rc_emb && c2 == 384);
  float *e_norm = read_matrix(f[0], "quality/norm", &rows, &c2), *a_norm = read_matrix(f[1], "quality/norm", &r2, &c2);
  CU_ASSERT_FATAL(e_norm && a_norm);
  int absent_rows, absent_cols;
  float *absent = read_matrix(f[1], "embedding_attn", &absent_rows, &absent_cols);
  CU_ASSERT(absent == NULL); /* no --embedding-attn: no dataset */
  char attr[32];
  read_attr(f[1], "test_embedding", attr, sizeof(attr));
  CU_ASSERT_STRING_EQUAL(attr, "attn");
  read_attr(f[3], "test_embedding", attr, sizeof(attr));
  CU_ASSERT_STRING_EQUAL(attr, "concat");

  fr_model m;
  fr_error err = {0};
  fr_engine *e = NULL;
  CU_ASSERT_EQUAL_FATAL(fr_model_load(g_model, &m, &err), FR_OK);
  fr_engine_options eo = {.max_batch = 1};
  CU_ASSERT_EQUAL_FATAL(fr_engine_create(ctx, &m, &eo, &e, &err), FR_OK);
  CU_ASSERT_FATAL(fr_engine_has_attention(e) && fr_engine_attention_dim(e) == 192);
  double worst_ref = 1, worst_fleet = 1, worst_attn = 1, worst_concat = 1, worst_v = 1, worst_unit = 0;
  for (int i = 0; i < N_IMG + 1; i++) {
    const size_t o = (size_t)i * 192;
    if (i == 6) { /* the text file: skipped, NaN everywhere */
      CU_ASSERT(row_is_nan(e_attn + o, 192) && row_is_nan(r_attn + o, 192) && row_is_nan(rc_emb + 2 * o, 384));
      continue;
    }
    float v[192], va[192];
    CU_ASSERT_EQUAL_FATAL(reference(e, &m, i, v, va), 0);
    CU_ASSERT(cosine(v, va, 192) < 0.99); /* v and v_attn differ: the checks below can tell them apart */
    worst_ref = fmin(worst_ref, cosine(e_attn + o, va, 192));
    worst_fleet = fmin(worst_fleet, cosine(r_attn + o, e_attn + o, 192));
    worst_attn = fmin(worst_attn, cosine(a_emb + o, va, 192));
    worst_v = fmin(worst_v, cosine(e_emb + o, v, 192));
    float cat[384];
    for (int j = 0; j < 192; j++)
      cat[j] = v[j], cat[192 + j] = va[j];
    worst_concat = fmin(worst_concat, fmin(cosine(c_emb + 2 * o, cat, 384), cosine(rc_emb + 2 * o, cat, 384)));
    double n2 = 0;
    for (int j = 0; j < 384; j++)
      n2 += (double)c_emb[2 * o + j] * c_emb[2 * o + j];
    worst_unit = fmax(worst_unit, fabs(sqrt(n2) - 1.0));
    CU_ASSERT(e_norm[i] > 0 && a_norm[i] == e_norm[i]); /* /quality/norm is |v| whatever /embedding holds */
  }
  printf("\n    worst cosines: embed vs engine %.7f, run vs embed %.7f, attn %.7f, concat %.7f, v %.7f; "
         "concat | |-1| %.2e", worst_ref, worst_fleet, worst_attn, worst_concat, worst_v, worst_unit);
  CU_ASSERT(worst_ref >= 0.99999 && worst_fleet >= 0.99999 && worst_attn >= 0.99999);
  CU_ASSERT(worst_concat >= 0.99999 && worst_v >= 0.99999 && worst_unit < 1e-5);
  fr_engine_destroy(e);
  fr_model_free(&m);
  free(e_attn), free(r_attn), free(e_emb), free(a_emb), free(c_emb), free(rc_emb), free(e_norm), free(a_norm);

  /* --resume with another choice: refused, naming the option. */
  CU_ASSERT_EQUAL(faceri("embed --json --resume --test-embedding attn -m attn.h5 -o e.h5 imgs 2>&1", out,
                         sizeof(out)), 1);
  CU_ASSERT_PTR_NOT_NULL(strstr(out, "--test-embedding v, this one attn"));
  CU_ASSERT_EQUAL(faceri("embed --json --resume -m attn.h5 -o e.h5 imgs 2>&1", out, sizeof(out)), 1);
  CU_ASSERT_PTR_NOT_NULL(strstr(out, "--embedding-attn"));
}

/* No attention head: every command refuses the options with exit 2, naming the model. */
static void test_headless_model_refused(void)
{
  if (!prepare())
    TEST_SKIP("model or %s missing", g_orl);
  char model[PATH_MAX], args[6000], out[4096];
  CU_ASSERT_FATAL(realpath(fr_model_default_path(), model) != NULL);
  const char *cmds[] = {"embed --embedding-attn", "embed --test-embedding concat", "run --embedding-attn --workers 1",
                        "run --test-embedding attn --workers 1",
                        "coordinate --bind tcp://127.0.0.1:1 --test-embedding attn"};
  for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
    snprintf(args, sizeof(args), "%s -m %s -o refused.h5 imgs 2>&1", cmds[i], model);
    CU_ASSERT_EQUAL(faceri(args, out, sizeof(out)), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "has no attention head"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, model));
  }
  CU_ASSERT_EQUAL(faceri("embed --test-embedding mean -o refused.h5 imgs 2>&1", out, sizeof(out)), 2);
  CU_ASSERT_PTR_NOT_NULL(strstr(out, "expected v, attn or concat"));
}

static int suite_init(void)
{
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  snprintf(g_dir, sizeof(g_dir), "/tmp/faceri-test-embedding-attn-XXXXXX");
  if (!mkdtemp(g_dir))
    return 1;
  snprintf(g_orl, sizeof(g_orl), "%s/orl.tar", test_data_dir());
  fr_error err = {0};
  return fr_vk_context_create(NULL, &ctx, &err) == FR_OK ? 0 : 1;
}

static int suite_clean(void)
{
  fr_vk_context_destroy(ctx);
  char cmd[600];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_dir);
  return system(cmd) == 0 ? 0 : 1;
}

int main(void)
{
  if (CU_initialize_registry() != CUE_SUCCESS)
    return 1;
  CU_pSuite s = CU_add_suite("/embedding_attn and --test-embedding", suite_init, suite_clean);
  CU_add_test(s, "embed and run agree with the engine", test_attention_embedding);
  CU_add_test(s, "a model without the attention head is refused", test_headless_model_refused);
  return test_run_all();
}
