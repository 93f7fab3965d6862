/* The whole network on the Vulkan device against ../shared/golden: raw embeddings
 * within 1e-4, normalised within 1e-5, both sets, batch sizes that chunk. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "faceri/engine.h"
#include "faceri/model.h"
#include "test_util.h"

static fr_vk_context *ctx;
static fr_model model;
static int have_model;

static void *read_file(const char *name, size_t expect)
{
  char path[2048];
  snprintf(path, sizeof(path), "%s/%s", test_golden_dir(), name);
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  void *buf = malloc(expect);
  size_t got = fread(buf, 1, expect, f);
  fclose(f);
  if (got != expect) {
    free(buf);
    return NULL;
  }
  return buf;
}

static double max_abs_diff(const float *a, const float *b, size_t n)
{
  double m = 0;
  for (size_t i = 0; i < n; i++) {
    double d = fabs((double)a[i] - b[i]);
    if (!(d <= m))
      m = isnan(d) ? INFINITY : d;
  }
  return m;
}

/* Runs `images` (4 x 112x112x3, normalised) at the given max batch and checks against the golden files. */
static void check_set(const char *what, const float *input, const float *want_raw, const float *want_norm, int max_batch)
{
  fr_error err = {0};
  fr_engine *engine = NULL;
  fr_engine_options o = {.max_batch = max_batch};
  CU_ASSERT_EQUAL_FATAL(fr_engine_create(ctx, &model, &o, &engine, &err), FR_OK);
  float raw[4 * 192], emb[4 * 192], norms[4];
  /* Run in pieces of max_batch images so every batch size path is used. */
  for (int start = 0; start < 4; start += max_batch) {
    int n = 4 - start < max_batch ? 4 - start : max_batch;
    int rc = fr_engine_run(engine, input + (size_t)start * 112 * 112 * 3, n, emb + start * 192, norms + start,
                           raw + start * 192, &err);
    CU_ASSERT_EQUAL(rc, FR_OK);
    if (rc)
      printf("\n    %s", err.message);
  }
  double e_raw = max_abs_diff(raw, want_raw, 4 * 192), e_norm = max_abs_diff(emb, want_norm, 4 * 192);
  double e_normval = 0;
  for (int i = 0; i < 4; i++) {
    double s = 0;
    for (int j = 0; j < 192; j++)
      s += (double)want_raw[i * 192 + j] * want_raw[i * 192 + j];
    e_normval = fmax(e_normval, fabs(sqrt(s) - norms[i]) / sqrt(s));
  }
  printf("\n    %s, batch %d: max abs err raw %.2e, normalised %.2e; norm rel err %.2e", what, max_batch, e_raw, e_norm,
         e_normval);
  CU_ASSERT(e_raw <= 1e-4);
  CU_ASSERT(e_norm <= 1e-5);
  CU_ASSERT(e_normval <= 1e-5);
  fr_engine_destroy(engine);
}

static void test_formula_set(void)
{
  if (!have_model)
    TEST_SKIP("no model file (run scripts/setup)");
  float *in = read_file("mfn_input_f32_nhwc_4x112x112x3.f32", 4 * 112 * 112 * 3 * 4);
  float *raw = read_file("mfn_emb_raw_f32_4x192.f32", 4 * 192 * 4);
  float *norm = read_file("mfn_emb_l2norm_f32_4x192.f32", 4 * 192 * 4);
  if (!in || !raw || !norm) {
    free(in), free(raw), free(norm);
    TEST_SKIP("golden files not found in %s", test_golden_dir());
  }
  check_set("set A (formula)", in, raw, norm, 4);
  check_set("set A (formula)", in, raw, norm, 3);
  free(in), free(raw), free(norm);
}

static void test_lfw_set(void)
{
  if (!have_model)
    TEST_SKIP("no model file (run scripts/setup)");
  uint8_t *u8 = read_file("mfn_lfw_input_rgb_u8_nhwc_4x112x112x3.u8", 4 * 112 * 112 * 3);
  float *raw = read_file("mfn_lfw_emb_raw_f32_4x192.f32", 4 * 192 * 4);
  float *norm = read_file("mfn_lfw_emb_l2norm_f32_4x192.f32", 4 * 192 * 4);
  if (!u8 || !raw || !norm) {
    free(u8), free(raw), free(norm);
    TEST_SKIP("golden files not found in %s", test_golden_dir());
  }
  float *in = malloc(4 * 112 * 112 * 3 * sizeof(float));
  for (int i = 0; i < 4 * 112 * 112 * 3; i++)
    in[i] = (float)(((double)u8[i] - model.mean[i % 3]) / model.std[i % 3]);
  check_set("set B (LFW faces)", in, raw, norm, 4);
  check_set("set B (LFW faces)", in, raw, norm, 1);
  free(in), free(u8), free(raw), free(norm);
}

/* A batch larger than one device submission holds (maxStorageBufferRange): the engine
 * splits it into chunks; every copy of the golden images must still match. */
static void test_chunked_batch(void)
{
  if (!have_model)
    TEST_SKIP("no model file (run scripts/setup)");
  float *in = read_file("mfn_input_f32_nhwc_4x112x112x3.f32", 4 * 112 * 112 * 3 * 4);
  float *raw = read_file("mfn_emb_raw_f32_4x192.f32", 4 * 192 * 4);
  if (!in || !raw) {
    free(in), free(raw);
    TEST_SKIP("golden files not found in %s", test_golden_dir());
  }
  const int copies = 25, n = 4 * copies;
  size_t per = 112 * 112 * 3;
  float *big = malloc((size_t)n * per * sizeof(float));
  float *emb = malloc((size_t)n * 192 * sizeof(float)), *got_raw = malloc((size_t)n * 192 * sizeof(float));
  float *norms = malloc((size_t)n * sizeof(float));
  for (int c = 0; c < copies; c++)
    memcpy(big + (size_t)c * 4 * per, in, 4 * per * sizeof(float));
  fr_error err = {0};
  fr_engine *engine = NULL;
  fr_engine_options o = {.max_batch = n};
  CU_ASSERT_EQUAL_FATAL(fr_engine_create(ctx, &model, &o, &engine, &err), FR_OK);
  printf("\n    batch %d runs as chunks of %d images", n, fr_engine_chunk_size(engine));
  CU_ASSERT_EQUAL(fr_engine_run(engine, big, n, emb, norms, got_raw, &err), FR_OK);
  double worst = 0;
  for (int c = 0; c < copies; c++)
    worst = fmax(worst, max_abs_diff(got_raw + (size_t)c * 4 * 192, raw, 4 * 192));
  printf(", max abs err raw %.2e", worst);
  CU_ASSERT(worst <= 1e-4);
  fr_engine_destroy(engine);
  free(in), free(raw), free(big), free(emb), free(got_raw), free(norms);
}

static void test_no_validation_messages(void) { CU_ASSERT_EQUAL(fr_vk_validation_messages(ctx), 0); }

int main(void)
{
  fr_error err = {0};
  if (fr_vk_context_create(NULL, &ctx, &err)) {
    fprintf(stderr, "setup: %s\n", err.message);
    return 1;
  }
  const char *path = fr_model_default_path();
  have_model = fr_model_load(path, &model, &err) == FR_OK;
  if (!have_model)
    printf("model not loaded: %s\n", err.message);
  CU_initialize_registry();
  CU_pSuite s = CU_add_suite("golden", NULL, NULL);
  CU_add_test(s, "golden set A through the Vulkan engine", test_formula_set);
  CU_add_test(s, "golden set B (LFW) through the Vulkan engine", test_lfw_set);
  CU_add_test(s, "a batch split into several device submissions", test_chunked_batch);
  CU_add_test(s, "no validation messages", test_no_validation_messages);
  int rc = test_run_all();
  if (have_model)
    fr_model_free(&model);
  fr_vk_context_destroy(ctx);
  return rc;
}
