/* Real faces: deep-funneled LFW through the whole path (archive, JPEG decode,
 * the 55,47,140,140 crop, resize, Vulkan MobileFaceNet) and 1:1 verification over
 * all genuine and impostor pairs among the first 100 identities of lfw-min5.tar. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "faceri/engine.h"
#include "faceri/input_source.h"
#include "faceri/model.h"
#include "faceri/preprocess.h"
#include "faceri/verification.h"
#include "test_util.h"

#define IDENTITIES 100
#define PER_IDENTITY 5

static void test_lfw_verification(void)
{
  char path[2048];
  snprintf(path, sizeof(path), "%s/lfw-min5.tar", test_data_dir());
  struct stat st;
  if (stat(path, &st) != 0)
    TEST_SKIP("%s not found (set FACERI_DATA)", path);
  fr_error err = {0};
  fr_model model = {0};
  if (fr_model_load(fr_model_default_path(), &model, &err) != FR_OK)
    TEST_SKIP("no model: %s (run scripts/setup)", err.message);
  fr_vk_context *ctx = NULL;
  CU_ASSERT_EQUAL_FATAL(fr_vk_context_create(NULL, &ctx, &err), FR_OK);
  fr_engine *engine = NULL;
  fr_engine_options eo = {.max_batch = 32};
  CU_ASSERT_EQUAL_FATAL(fr_engine_create(ctx, &model, &eo, &engine, &err), FR_OK);

  fr_preprocess pp = {.input_w = model.input_w, .input_h = model.input_h, .has_crop = 1,
                      .crop_x = 55, .crop_y = 47, .crop_w = 140, .crop_h = 140};
  for (int c = 0; c < 3; c++) {
    pp.mean[c] = model.mean[c];
    pp.std[c] = model.std[c];
  }
  const int max_items = IDENTITIES * PER_IDENTITY;
  size_t per = (size_t)model.input_h * model.input_w * 3;
  float *input = malloc((size_t)max_items * per * sizeof(float));
  float *emb = malloc((size_t)max_items * model.embedding_size * sizeof(float));
  float *norms = malloc((size_t)max_items * sizeof(float));
  int *labels = malloc((size_t)max_items * sizeof(int));
  char current[256] = "";
  int identity = -1, taken_for_identity = 0, n = 0, failures = 0;

  const char *paths[1] = {path};
  fr_input_source *src = NULL;
  CU_ASSERT_EQUAL_FATAL(fr_input_source_open(paths, 1, &src, &err), FR_OK);
  fr_input_item item;
  while (fr_input_source_next(src, &item, &err) == 1) {
    if (!item.is_image || item.status != FR_OK)
      continue;
    if (strcmp(item.label, current) != 0) {
      if (identity + 1 == IDENTITIES)
        break;
      identity++;
      snprintf(current, sizeof(current), "%s", item.label);
      taken_for_identity = 0;
    }
    if (taken_for_identity == PER_IDENTITY)
      continue;
    if (fr_preprocess_image(&pp, item.bytes, item.size, item.key, input + (size_t)n * per, NULL, NULL, &err)) {
      failures++;
      continue;
    }
    labels[n++] = identity;
    taken_for_identity++;
  }
  fr_input_source_close(src);
  CU_ASSERT_EQUAL(failures, 0);
  CU_ASSERT_EQUAL(identity + 1, IDENTITIES);
  for (int start = 0; start < n; start += 32) {
    int b = n - start < 32 ? n - start : 32;
    int rc = fr_engine_run(engine, input + (size_t)start * per, b, emb + (size_t)start * model.embedding_size,
                           norms + start, NULL, &err);
    CU_ASSERT_EQUAL_FATAL(rc, FR_OK);
  }
  fr_verification v;
  CU_ASSERT_EQUAL_FATAL(fr_verification_all_pairs(emb, labels, n, model.embedding_size, &v, &err), FR_OK);
  printf("\n    LFW: %d images of %d identities, %lld genuine / %lld impostor pairs: accuracy %.4f at cos > %.3f, "
         "TPR %.4f at FAR 1e-3, %.4f at FAR 1e-4; mean cos genuine %.3f impostor %.3f",
         n, identity + 1, (long long)v.genuine, (long long)v.impostor, v.accuracy, v.threshold, v.tpr_at_far_1e3,
         v.tpr_at_far_1e4, v.genuine_mean, v.impostor_mean);
  CU_ASSERT(v.accuracy >= 0.97);
  CU_ASSERT_EQUAL(fr_vk_validation_messages(ctx), 0);
  free(input), free(emb), free(norms), free(labels);
  fr_engine_destroy(engine);
  fr_vk_context_destroy(ctx);
  fr_model_free(&model);
}

int main(void)
{
  if (getenv("FACERI_SANITIZER_RUN")) {
    printf("SKIPPED: sanitizer run; the LFW suite runs in the optimised build\n");
    return 0;
  }
  CU_initialize_registry();
  CU_pSuite s = CU_add_suite("lfw", NULL, NULL);
  CU_add_test(s, "LFW verification, 100 identities", test_lfw_verification);
  return test_run_all();
}
