/* faceri train --ri end to end (issue 6 item 8): a tiny run on real faces (3 ORL
 * identities, 7 images each, batch 4 + 2 UI head crops from inria-persons, the last
 * stages and the heads trained, --degrade) shows every loss term lower in the last
 * epoch than in the first; on the held-out images (the other 3 of each identity, each
 * also degraded to 8-24 px) the learned RI (fr_ri_infer on layer 48's output) ranks
 * like Eq. 3's RI from the trained prototypes and UI centre: Spearman >= 0.5. The
 * model file carries the heads (/heads/ri), and a run stopped and resumed gives the
 * same weights, heads and losses bit for bit. */
#include <CUnit/Basic.h>
#include <hdf5.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../coordinator/train_run_internal.h"
#include "faceri/degrade.h"
#include "faceri/engine.h"
#include "faceri/image.h"
#include "faceri/ri.h"
#include "faceri/results_reader.h"
#include "faceri/ri_infer.h"
#include "test_process.h"
#include "test_util.h"

static char g_dir[256];
static char g_orl[512], g_inria[512];

static int ready(void)
{
  struct stat st;
  return stat(fr_model_default_path(), &st) == 0 && stat(g_orl, &st) == 0 && stat(g_inria, &st) == 0;
}

/* ORL s1-s3: images 1-7 to train/, 8-10 to held/; 40 INRIA crops to ui/; a model
 * copy with a UI centre from them. */
static int prepared;
static int prepare(void)
{
  if (prepared)
    return prepared > 0;
  char cmd[8192], out[4096], model[PATH_MAX];
  if (!realpath(fr_model_default_path(), model))
    return 0;
  snprintf(cmd, sizeof(cmd),
           "cd %s && mkdir -p orl ui && tar xf %s -C orl && tar xf %s -C ui --wildcards 'inria-persons/crop0010*' && "
           "for s in s1 s2 s3; do mkdir -p train/$s held/$s; for i in 1 2 3 4 5 6 7; do cp orl/orl/$s/$i.pgm train/$s/; "
           "done; for i in 8 9 10; do cp orl/orl/$s/$i.pgm held/$s/; done; done && cp %s m.h5 && "
           "%s/faceri model set-ui m.h5 ui/inria-persons >/dev/null 2>set-ui.log && echo ok",
           g_dir, g_orl, g_inria, model, FACERI_BINARY_DIR);
  prepared = test_run_command(cmd, out, sizeof(out)) == 0 && strstr(out, "ok") ? 1 : -1;
  return prepared > 0;
}

#define COMMON                                                                                                     \
  "--batch 4 --train-from 47 --optim adamw --lr 1e-4 --weight-decay 0 --seed 3 --ri --ui-per-batch 2 "             \
  "--project-normalized --ri-dropout 0 --degrade"

static int train(const char *extra, const char *out_name, char *json, size_t cap)
{
  char cmd[4096];
  snprintf(cmd, sizeof(cmd), "cd %s && %s/faceri train " COMMON " %s --init m.h5 --ui ui/inria-persons -o %s train 2>%s.log",
           g_dir, FACERI_BINARY_DIR, extra, out_name, out_name);
  return test_run_command(cmd, json, cap);
}

static double field(const char *json, const char *section, const char *name)
{
  const char *s = strstr(json, section);
  char key[64];
  snprintf(key, sizeof(key), "\"%s\":", name);
  const char *k = s ? strstr(s, key) : NULL;
  return k ? atof(k + strlen(key)) : NAN;
}

static char g_json[8192];
static int g_trained;

static void test_terms_fall(void)
{
  if (!ready())
    TEST_SKIP("model, %s or %s missing", g_orl, g_inria);
  CU_ASSERT_FATAL(prepare());
  CU_ASSERT_EQUAL_FATAL(train("--epochs 3", "ri.h5", g_json, sizeof(g_json)), 0);
  g_trained = 1;
  CU_ASSERT_PTR_NOT_NULL(strstr(g_json, "\"status\":\"complete\""));
  CU_ASSERT_PTR_NOT_NULL(strstr(g_json, "\"epochs_done\":3"));
  CU_ASSERT_PTR_NOT_NULL(strstr(g_json, "\"ui_images\":"));
  const char *terms[5] = {"arcface", "l1", "id", "mse", "total"};
  printf("\n   ");
  for (int k = 0; k < 5; k++) {
    double a = field(g_json, "\"first_epoch\":{", terms[k]), b = field(g_json, "\"last_epoch\":{", terms[k]);
    printf(" %s %.4g -> %.4g;", terms[k], a, b);
    CU_ASSERT(b < a);
  }
}

/* F (layer 48's output) from a copy of the model cut after that layer: the engine's
 * raw output of it is the NHWC map. */
static int features(const fr_model *m, int layer, const float *in, int n, float *F, float *v, fr_error *err)
{
  fr_vk_context *ctx = NULL;
  fr_engine *e = NULL, *ef = NULL;
  fr_model cut = *m;
  cut.n_layers = layer + 1;
  cut.output_layer = layer;
  cut.embedding_size = m->layers[layer].out_h * m->layers[layer].out_w * m->layers[layer].out_c;
  fr_engine_options eo = {.max_batch = n, .timing = 0};
  float *tmp = malloc((size_t)n * cut.embedding_size * sizeof(float));
  float *tmp2 = malloc((size_t)n * m->embedding_size * sizeof(float));
  int rc = tmp && tmp2 ? fr_vk_context_create(NULL, &ctx, err) : FR_ERR_NOMEM;
  if (!rc)
    rc = fr_engine_create(ctx, m, &eo, &e, err);
  if (!rc)
    rc = fr_engine_create(ctx, &cut, &eo, &ef, err);
  if (!rc)
    rc = fr_engine_run(e, in, n, tmp2, NULL, v, err);
  if (!rc)
    rc = fr_engine_run(ef, in, n, tmp, NULL, F, err);
  fr_engine_destroy(e);
  fr_engine_destroy(ef);
  fr_vk_context_destroy(ctx);
  free(tmp);
  free(tmp2);
  return rc;
}

static void test_learned_ri_ranks_like_eq3(void)
{
  if (!ready() || !g_trained)
    TEST_SKIP("no trained model (the previous test did not run)");
  char path[512];
  snprintf(path, sizeof(path), "%s/ri.h5", g_dir);
  fr_model m;
  fr_error err = {0};
  CU_ASSERT_EQUAL_FATAL(fr_model_load(path, &m, &err), FR_OK);
  CU_ASSERT_FATAL(fr_model_has_ri_heads(&m) && m.ui_centre);
  const fr_model_tensor *proto = fr_model_find_tensor(&m, "prototypes/weights");
  CU_ASSERT_FATAL(proto && proto->dims[0] == 3);
  /* 9 held-out images, each as is and degraded to 8, 12, 16, 24 px */
  enum { PER = 5, N = 9 * PER };
  static const int sizes[PER] = {0, 8, 12, 16, 24};
  int W = m.input_w, H = m.input_h, dim = m.embedding_size;
  size_t img = (size_t)W * H * 3;
  float *in = malloc(N * img * sizeof(float));
  uint8_t *px = malloc(img);
  int32_t labels[N];
  CU_ASSERT_FATAL(in && px);
  int n = 0;
  for (int s = 1; s <= 3; s++)
    for (int i = 8; i <= 10; i++) {
      char file[600];
      snprintf(file, sizeof(file), "%s/held/s%d/%d.pgm", g_dir, s, i);
      FILE *f = fopen(file, "rb");
      CU_ASSERT_PTR_NOT_NULL_FATAL(f);
      static uint8_t bytes[1 << 16];
      size_t nb = fread(bytes, 1, sizeof(bytes), f);
      fclose(f);
      fr_image a = {0}, b = {0};
      CU_ASSERT_EQUAL_FATAL(fr_image_decode(bytes, nb, file, &a, &err), FR_OK);
      CU_ASSERT_EQUAL_FATAL(fr_image_resize_bilinear(&a, W, H, &b, &err), FR_OK);
      for (int k = 0; k < PER; k++, n++) {
        memcpy(px, b.pixels, img);
        if (sizes[k]) {
          fr_degrade_options o = fr_degrade_defaults();
          o.min_size = o.max_size = sizes[k];
          CU_ASSERT_EQUAL_FATAL(fr_degrade_rgb8(px, W, H, (uint64_t)n, &o, px, NULL, &err), FR_OK);
        }
        fr_train_data_to_input(px, W, H, m.mean, m.std, 0, in + (size_t)n * img);
        labels[n] = s - 1; /* classes are the sorted names s1, s2, s3 */
      }
      fr_image_free(&a);
      fr_image_free(&b);
    }
  fr_vk_context *ctx = NULL;
  fr_ri_infer *inf = NULL;
  CU_ASSERT_EQUAL_FATAL(fr_vk_context_create(NULL, &ctx, &err), FR_OK);
  CU_ASSERT_EQUAL_FATAL(fr_ri_infer_create(ctx, &m, N, &inf, &err), FR_OK);
  const fr_ri_heads_config *k = fr_ri_infer_config(inf);
  float *F = malloc((size_t)N * k->h * k->w * k->c * sizeof(float)), *v = malloc((size_t)N * dim * sizeof(float));
  float xi_hat[N];
  double xi[N], a[N];
  CU_ASSERT_FATAL(F && v);
  int rc = features(&m, fr_ri_infer_feature_layer(inf), in, N, F, v, &err);
  if (rc)
    printf("\n    features: %s", err.message);
  CU_ASSERT_EQUAL_FATAL(rc, FR_OK);
  CU_ASSERT_EQUAL_FATAL(fr_ri_infer_run(inf, F, v, N, xi_hat, NULL, &err), FR_OK);
  fr_ri_index(v, N, dim, proto->data, 3, labels, m.ui_centre, NULL, NULL, NULL, xi, NULL);
  for (int i = 0; i < N; i++)
    a[i] = xi_hat[i];
  double rho = fr_run_ri_spearman(a, xi, N);
  printf("\n    held out: %d images, Spearman(learned RI, Eq. 3 RI) = %.3f", N, rho);
  CU_ASSERT(rho >= 0.5);
  /* faceri embed and faceri run with this model fill /quality/ri with the same xi^ (the
   * heads run inside the engine, on the feature layer's output) */
  static const char *const runs[2] = {"embed", "run --workers 1"};
  for (int r = 0; r < 2; r++) {
    char cmd[2048], json[4096];
    snprintf(cmd, sizeof(cmd), "cd %s && %s/faceri %s --json -m ri.h5 -o held%d.h5 held 2>&1 >/dev/null | tail -3 >&2",
             g_dir, FACERI_BINARY_DIR, runs[r], r);
    FILE *pipe = popen(cmd, "r");
    size_t got = pipe ? fread(json, 1, sizeof(json) - 1, pipe) : 0;
    json[got] = '\0';
    CU_ASSERT_FATAL(pipe && pclose(pipe) == 0);
    snprintf(path, sizeof(path), "%s/held%d.h5", g_dir, r);
    fr_results_reader *rr = NULL;
    CU_ASSERT_EQUAL_FATAL(fr_results_reader_open(path, 0, &rr, &err), FR_OK);
    CU_ASSERT_EQUAL_FATAL(fr_results_reader_items(rr), 9);
    char *keys[9];
    float ri[9];
    CU_ASSERT_EQUAL_FATAL(fr_results_read_keys(rr, 0, 9, keys, &err), FR_OK);
    CU_ASSERT_EQUAL_FATAL(fr_results_read_column(rr, "quality/ri", 0, 9, ri, &err), FR_OK);
    double worst = 0;
    int matched = 0;
    for (int j = 0; j < 9; j++) {
      int s = 0, i = 0;
      if (sscanf(keys[j], "held/s%d/%d.pgm", &s, &i) != 2 || s < 1 || s > 3 || i < 8 || i > 10)
        continue;
      double want = xi_hat[((s - 1) * 3 + (i - 8)) * PER];
      if (!(fabs((double)ri[j] - want) <= 1e-3 * fmax(fabs(want), 1e-3)))
        printf("\n    %s: /quality/ri %g, heads on host features %g", keys[j], (double)ri[j], want);
      double rel = fabs((double)ri[j] - want) / fmax(fabs(want), 1e-3);
      worst = isfinite(ri[j]) ? fmax(worst, rel) : INFINITY;
      matched++;
    }
    printf("\n    faceri %s: /quality/ri vs the heads on host features: %d items, worst relative difference %.2e",
           runs[r], matched, worst);
    CU_ASSERT_EQUAL(matched, 9);
    CU_ASSERT(worst < 1e-3);
    fr_results_free_keys(keys, 9);
    fr_results_reader_close(rr);
  }
  fr_ri_infer_destroy(inf);
  fr_vk_context_destroy(ctx);
  free(F);
  free(v);
  free(in);
  free(px);
  fr_model_free(&m);
}

/* A model trained with the CR-FIQA-style regression on the embedding: the engine's one
 * call gives the xi^ and v_attn of the heads run on host features and host raw embeddings. */
static void test_embedding_regression_in_engine(void)
{
  if (!ready())
    TEST_SKIP("model, %s or %s missing", g_orl, g_inria);
  CU_ASSERT_FATAL(prepare());
  char json[8192], path[512];
  CU_ASSERT_EQUAL_FATAL(train("--max-steps 1 --reg-input embedding", "emb.h5", json, sizeof(json)), 0);
  snprintf(path, sizeof(path), "%s/emb.h5", g_dir);
  fr_model m;
  fr_error err = {0};
  CU_ASSERT_EQUAL_FATAL(fr_model_load(path, &m, &err), FR_OK);
  enum { N = 4 };
  int dim = m.embedding_size;
  size_t img = (size_t)m.input_w * m.input_h * 3;
  float *in = malloc(N * img * sizeof(float)), xi_hat[N], xi_eng[N];
  uint32_t seed = 99u;
  for (size_t i = 0; in && i < N * img; i++) {
    seed = seed * 1664525u + 1013904223u;
    in[i] = (float)(seed >> 8) / 8388608.0f - 1.0f;
  }
  fr_vk_context *ctx = NULL;
  fr_ri_infer *inf = NULL;
  fr_engine *e = NULL;
  CU_ASSERT_EQUAL_FATAL(fr_vk_context_create(NULL, &ctx, &err), FR_OK);
  CU_ASSERT_EQUAL_FATAL(fr_ri_infer_create(ctx, &m, N, &inf, &err), FR_OK);
  const fr_ri_heads_config *k = fr_ri_infer_config(inf);
  CU_ASSERT_FATAL(k->reg_input == FR_RI_REG_EMBEDDING && k->attention);
  float *F = malloc((size_t)N * k->h * k->w * k->c * sizeof(float)), *v = malloc((size_t)N * dim * sizeof(float));
  float *va = malloc((size_t)N * dim * sizeof(float)), *va_eng = malloc((size_t)N * dim * sizeof(float));
  float *emb = malloc((size_t)N * dim * sizeof(float));
  CU_ASSERT_FATAL(in && F && v && va && va_eng && emb);
  CU_ASSERT_EQUAL_FATAL(features(&m, fr_ri_infer_feature_layer(inf), in, N, F, v, &err), FR_OK);
  CU_ASSERT_EQUAL_FATAL(fr_ri_infer_run(inf, F, v, N, xi_hat, va, &err), FR_OK);
  fr_engine_options eo = {.max_batch = N, .timing = 0};
  CU_ASSERT_EQUAL_FATAL(fr_engine_create(ctx, &m, &eo, &e, &err), FR_OK);
  CU_ASSERT(fr_engine_has_ri(e) && fr_engine_attention_dim(e) == dim);
  fr_engine_outputs o = {emb, NULL, NULL, xi_eng, va_eng};
  CU_ASSERT_EQUAL_FATAL(fr_engine_run_outputs(e, in, N, &o, &err), FR_OK);
  double worst = 0, worst_va = 0;
  for (int i = 0; i < N; i++)
    worst = isfinite(xi_eng[i]) ? fmax(worst, fabs(xi_eng[i] - xi_hat[i]) / fmax(fabs(xi_hat[i]), 1e-3)) : INFINITY;
  for (int i = 0; i < N * dim; i++)
    worst_va = fmax(worst_va, fabs(va_eng[i] - va[i]) / fmax(fabs(va[i]), 1e-3));
  printf("\n    embedding regression: engine vs heads on host arrays: xi^ %.2e, v_attn %.2e (xi^ %.4g %.4g ...)", worst,
         worst_va, (double)xi_eng[0], (double)xi_eng[1]);
  CU_ASSERT(worst < 1e-5);
  CU_ASSERT(worst_va < 1e-5);
  fr_engine_destroy(e);
  fr_ri_infer_destroy(inf);
  fr_vk_context_destroy(ctx);
  free(in), free(F), free(v), free(va), free(va_eng), free(emb);
  fr_model_free(&m);
}

/* faceri model info on the trained model names its heads, UI centre and training state. */
static void test_model_info(void)
{
  if (!ready() || !g_trained)
    TEST_SKIP("no trained model (the first test did not run)");
  char cmd[2048], out[65536];
  snprintf(cmd, sizeof(cmd), "cd %s && %s/faceri model info ri.h5", g_dir, FACERI_BINARY_DIR);
  CU_ASSERT_EQUAL_FATAL(test_run_command(cmd, out, sizeof(out)), 0);
  static const char *const expect[] = {
      "RI heads        regression and attention, on layer 48", "  regression    on the flattened feature map",
      "dropout 0 in training", "  attention     CBAM (reduction 16, 7x7 spatial conv", "-> v_attn [192]",
      "alpha 5, beta 2, gamma 1; tau 1.645", "v' from v/|v|, detached", "  UI xi^        ",
      "UI centre       192-d, mean of ", "UI inputs       ", "fingerprint sha256 ",
      "step 15 = 3.00 epochs of 5 steps (21 images, batch 4)", "  classes       3: s1, s2, s3",
      "  loss history  15 values",
      "  config        data ", "reg_input features", "ui_per_batch 2"};
  for (size_t i = 0; i < sizeof(expect) / sizeof(expect[0]); i++)
    if (!strstr(out, expect[i])) {
      printf("\n    missing: %s", expect[i]);
      CU_FAIL("faceri model info");
    }
}

static void test_resume_is_exact(void)
{
  if (!ready())
    TEST_SKIP("model, %s or %s missing", g_orl, g_inria);
  CU_ASSERT_FATAL(prepare());
  char json[8192];
  CU_ASSERT_EQUAL_FATAL(train("--max-steps 2", "whole.h5", json, sizeof(json)), 0);
  CU_ASSERT_EQUAL_FATAL(train("--max-steps 1", "cut.h5", json, sizeof(json)), 0);
  CU_ASSERT_EQUAL_FATAL(train("--max-steps 2 --resume", "cut.h5", json, sizeof(json)), 0);
  CU_ASSERT_PTR_NOT_NULL(strstr(json, "\"start_step\":1,\"end_step\":2"));
  char pa[512], pb[512];
  snprintf(pa, sizeof(pa), "%s/whole.h5", g_dir);
  snprintf(pb, sizeof(pb), "%s/cut.h5", g_dir);
  fr_model a, b;
  fr_error err = {0};
  CU_ASSERT_EQUAL_FATAL(fr_model_load(pa, &a, &err), FR_OK);
  CU_ASSERT_EQUAL_FATAL(fr_model_load(pb, &b, &err), FR_OK);
  CU_ASSERT_STRING_EQUAL(a.weights_sha256, b.weights_sha256);
  CU_ASSERT_EQUAL(memcmp(a.training.loss, b.training.loss, 2 * sizeof(float)), 0);
  int heads = 0;
  for (int i = 0; i < a.n_tensors; i++) {
    const fr_model_tensor *ta = &a.tensors[i], *tb = fr_model_find_tensor(&b, ta->path);
    int64_t n = 1;
    for (int d = 0; d < ta->rank; d++)
      n *= ta->dims[d];
    CU_ASSERT(tb && !memcmp(ta->data, tb->data, (size_t)n * sizeof(float)));
    heads += !strncmp(ta->path, "heads/ri/", 9);
  }
  CU_ASSERT(heads >= 13); /* config, UI statistics and every tensor of the heads */
  fr_model_free(&a);
  fr_model_free(&b);
}

static void test_refusals(void)
{
  if (!ready())
    TEST_SKIP("model, %s or %s missing", g_orl, g_inria);
  CU_ASSERT_FATAL(prepare());
  char cmd[2048], out[8192];
  /* a model without a UI centre */
  snprintf(cmd, sizeof(cmd), "cd %s && %s/faceri train --ri --batch 4 --max-steps 1 -o none.h5 train 2>&1", g_dir,
           FACERI_BINARY_DIR);
  CU_ASSERT_EQUAL(test_run_command(cmd, out, sizeof(out)), 2);
  CU_ASSERT_PTR_NOT_NULL(strstr(out, "no UI centre"));
  snprintf(cmd, sizeof(cmd), "cd %s && %s/faceri train --ui ui -o none.h5 train 2>&1", g_dir, FACERI_BINARY_DIR);
  CU_ASSERT_EQUAL(test_run_command(cmd, out, sizeof(out)), 2);
  CU_ASSERT_PTR_NOT_NULL(strstr(out, "give --ri"));
  snprintf(cmd, sizeof(cmd), "cd %s && %s/faceri train --ri --degrade-sizes 30:10 -o none.h5 train 2>&1", g_dir,
           FACERI_BINARY_DIR);
  CU_ASSERT_EQUAL(test_run_command(cmd, out, sizeof(out)), 2);
  CU_ASSERT_PTR_NOT_NULL(strstr(out, "MAX is below MIN"));
}

static int suite_init(void)
{
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  snprintf(g_dir, sizeof(g_dir), "/tmp/faceri-test-train-ri-XXXXXX");
  if (!mkdtemp(g_dir))
    return 1;
  snprintf(g_orl, sizeof(g_orl), "%s/orl.tar", test_data_dir());
  snprintf(g_inria, sizeof(g_inria), "%s/inria-persons.tar", test_data_dir());
  return 0;
}

static int suite_clean(void)
{
  char cmd[600];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_dir);
  return system(cmd) == 0 ? 0 : 1;
}

int main(void)
{
  if (getenv("FACERI_SANITIZER_RUN")) {
    printf("SKIPPED: sanitizer run; the training suites run in the optimised build\n");
    return 0;
  }
  if (CU_initialize_registry() != CUE_SUCCESS)
    return 1;
  CU_pSuite s = CU_add_suite("faceri train --ri", suite_init, suite_clean);
  CU_add_test(s, "every loss term falls", test_terms_fall);
  CU_add_test(s, "learned RI ranks held-out images like Eq. 3", test_learned_ri_ranks_like_eq3);
  CU_add_test(s, "faceri model info shows the heads", test_model_info);
  CU_add_test(s, "embedding regression in the engine", test_embedding_regression_in_engine);
  CU_add_test(s, "resume is exact with the heads", test_resume_is_exact);
  CU_add_test(s, "refusals name the cause", test_refusals);
  return test_run_all();
}
