/* The trainer with the RI heads attached (trainer.h, ri_heads.h): the whole loss
 * L = ArcFace + 5 L1 + 2 ID + 1 MSE on the real MobileFaceNet, batch 4 with one UI row,
 * against PyTorch autograd in float64 (scripts/train_ri_reference.py, which rebuilds
 * the network from the TFLite file and the heads from nn layers):
 *  (a) every backbone tensor's, the prototypes' and every head tensor's gradient:
 *      cosine >= 0.9999 (the worst printed), the loss terms within 1e-3 relative;
 *      the same with the batch in chunks of 2;
 *  (b) the heads' gradient really reaches the backbone: the gradient of layer 48's
 *      weights differs from an ArcFace-only trainer's by more than rounding;
 *  (c) bit-identical reruns of 3 SGD steps (losses and every parameter), and the
 *      loss terms readable per step (falling is test_train_ri's business); a UI row has no xi (NaN) and is counted in n_ui;
 *  (d) refusals: heads without a UI centre.
 * Dropout is 0 here (the masks are test_ri_heads' business). Skips without the model,
 * the TFLite file, or /usr/bin/python3 with torch. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "faceri/trainer.h"
#include "test_util.h"

#define PYTHON "/usr/bin/python3"
#define TFLITE_FALLBACK "/tmp/pkg/package/android/src/main/assets/MobileFaceNet.tflite"
enum { B = 4, C = 6 };
static const float S = 16.0f, M = 0.3f;

static fr_vk_context *ctx;
static fr_model model;
static int have_model, have_ref;
static float *images, *head, centre[192];
static int32_t labels[B] = {3, 1, -1, 3}, flags[B] = {0, 0, 1, 0};
static double *ref_grads, ref_loss[5];
static fr_ri_heads_config cfg;

static fr_trainer *make(int max_chunk, int with_heads)
{
  /* lr 1e-5: with BN folded into the real weights larger steps are chaotic (test_trainer.c) */
  fr_trainer_options o = fr_trainer_defaults(B, C, 1e-5f, 0.9f);
  o.loss = FR_LOSS_ARCFACE;
  o.s = S, o.m = M;
  o.head = head;
  o.max_chunk = max_chunk;
  if (with_heads) {
    o.ri = &cfg;
    o.ui_centre = centre;
  }
  fr_trainer *t = NULL;
  fr_error err = {0};
  if (fr_trainer_create(ctx, &model, &o, &t, &err)) {
    fprintf(stderr, "trainer: %s\n", err.message);
    return NULL;
  }
  return t;
}

static int grads(fr_trainer *t, fr_trainer_losses *l)
{
  fr_error err = {0};
  fr_trainer_batch b = {images, labels, flags, B, 0.0f, 1.0f};
  int rc = fr_trainer_run_batch(t, &b, 0, l, &err);
  if (rc)
    fprintf(stderr, "grads: %s\n", err.message);
  return rc;
}

/* All of the trainer's gradients followed by the heads' trainable ones. */
static size_t all_floats(fr_trainer *t)
{
  size_t n = fr_trainer_total_floats(t);
  fr_ri_heads *h = fr_trainer_ri_heads(t);
  for (int i = 0; h && i < fr_ri_heads_tensor_count(h); i++)
    if (fr_ri_heads_tensor_trainable(h, i))
      n += fr_ri_heads_tensor_size(h, i);
  return n;
}

static int read_all(fr_trainer *t, int gradients, float *out)
{
  fr_error err = {0};
  int rc = fr_trainer_read(t, gradients, out, &err);
  size_t at = fr_trainer_total_floats(t);
  fr_ri_heads *h = fr_trainer_ri_heads(t);
  for (int i = 0; !rc && h && i < fr_ri_heads_tensor_count(h); i++)
    if (fr_ri_heads_tensor_trainable(h, i)) {
      rc = fr_ri_heads_read_tensor(h, i, gradients, out + at, &err);
      at += fr_ri_heads_tensor_size(h, i);
    }
  return rc;
}

static int write_file(const char *dir, const char *name, const void *data, size_t bytes)
{
  char path[512];
  snprintf(path, sizeof(path), "%s/%s", dir, name);
  FILE *f = fopen(path, "wb");
  if (!f)
    return -1;
  size_t w = fwrite(data, 1, bytes, f);
  return fclose(f) == 0 && w == bytes ? 0 : -1;
}

static size_t read_file(const char *dir, const char *name, void *data, size_t bytes)
{
  char path[512];
  snprintf(path, sizeof(path), "%s/%s", dir, name);
  FILE *f = fopen(path, "rb");
  if (!f)
    return 0;
  size_t r = fread(data, 1, bytes, f);
  fclose(f);
  return r;
}

static void test_prepare(void)
{
  if (!have_model)
    TEST_SKIP("no model file at %s", fr_model_default_path());
  CU_ASSERT_FATAL(model.embedding_size == 192);
  size_t img = (size_t)model.input_h * model.input_w * model.input_c, nh = (size_t)C * 192;
  images = malloc(B * img * sizeof(float));
  head = malloc(nh * sizeof(float));
  CU_ASSERT_FATAL(images && head);
  unsigned rng = 777u;
  for (size_t i = 0; i < B * img; i++) {
    rng = rng * 1664525u + 1013904223u;
    images[i] = (float)(rng >> 8) / 8388608.0f - 1.0f;
  }
  for (size_t i = 0; i < nh; i++) {
    rng = rng * 1664525u + 1013904223u;
    head[i] = ((float)(rng >> 8) / 8388608.0f - 1.0f) * 0.1f;
  }
  for (int k = 0; k < 192; k++) {
    rng = rng * 1664525u + 1013904223u;
    centre[k] = (float)(rng >> 8) / 8388608.0f - 1.0f;
  }
  cfg = fr_ri_heads_defaults(7, 7, 512, 192, B);
  cfg.dropout = 0.0f;
  cfg.seed = 5;
  if (access(PYTHON, X_OK) != 0 || system(PYTHON " -c 'import torch, numpy' >/dev/null 2>&1") != 0) {
    printf("\n  (no %s with torch: PyTorch comparisons skipped)", PYTHON);
    return;
  }
  if (!getenv("FACERI_TFLITE") && access(TFLITE_FALLBACK, R_OK) == 0)
    setenv("FACERI_TFLITE", TFLITE_FALLBACK, 0);
  fr_trainer *t = make(0, 1);
  CU_ASSERT_PTR_NOT_NULL_FATAL(t);
  fr_ri_heads *h = fr_trainer_ri_heads(t);
  size_t np = fr_trainer_total_floats(t), nh_all = 0;
  for (int i = 0; i < fr_ri_heads_tensor_count(h); i++)
    nh_all += fr_ri_heads_tensor_size(h, i);
  size_t total = all_floats(t);
  float *params = malloc(np * sizeof(float)), *hp = malloc(nh_all * sizeof(float));
  ref_grads = malloc(total * sizeof(double));
  CU_ASSERT_FATAL(params && hp && ref_grads);
  fr_error err = {0};
  CU_ASSERT_EQUAL_FATAL(fr_trainer_read(t, 0, params, &err), FR_OK);
  size_t at = 0;
  for (int i = 0; i < fr_ri_heads_tensor_count(h); i++) {
    CU_ASSERT_EQUAL_FATAL(fr_ri_heads_read_tensor(h, i, 0, hp + at, &err), FR_OK);
    at += fr_ri_heads_tensor_size(h, i);
  }
  /* A copy: the heads (and their config) go with the trainer below. */
  const fr_ri_heads_config kc = *fr_ri_heads_config_of(h), *k = &kc;
  int feature = fr_trainer_ri_feature_layer(t);
  CU_ASSERT_EQUAL(feature, 48);
  fr_trainer_destroy(t);

  char dir[] = "/tmp/faceri-trainer-ri-XXXXXX";
  CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
  char meta[1024];
  snprintf(meta, sizeof(meta),
           "batch %d\nclasses %d\ns %.9g\nm %.9g\nfeature %d\nhidden %d\nkernel %d\nbn_eps %.9g\ntau %.9g\n"
           "l1_beta %.9g\nalpha %.9g\nbeta %.9g\ngamma %.9g\n",
           B, C, (double)S, (double)M, feature, k->c / k->reduction, k->spatial_kernel, (double)k->bn_eps,
           (double)k->tau, (double)k->l1_beta, (double)k->alpha, (double)k->beta, (double)k->gamma);
  int ok = write_file(dir, "x.f32", images, B * img * sizeof(float)) == 0 &&
           write_file(dir, "params.f32", params, np * sizeof(float)) == 0 &&
           write_file(dir, "heads.f32", hp, nh_all * sizeof(float)) == 0 &&
           write_file(dir, "y.i32", labels, sizeof(labels)) == 0 &&
           write_file(dir, "flags.i32", flags, sizeof(flags)) == 0 &&
           write_file(dir, "centre.f32", centre, sizeof(centre)) == 0 &&
           write_file(dir, "meta.txt", meta, strlen(meta)) == 0;
  CU_ASSERT(ok);
  free(params);
  free(hp);
  char cmd[1024];
  snprintf(cmd, sizeof(cmd), "%s %s/scripts/train_ri_reference.py %s", PYTHON, FACERI_SOURCE_DIR, dir);
  int py = ok ? system(cmd) : -1;
  CU_ASSERT_EQUAL(py, 0);
  have_ref = py == 0 && read_file(dir, "grads.f64", ref_grads, total * sizeof(double)) == total * sizeof(double) &&
             read_file(dir, "loss.f64", ref_loss, sizeof(ref_loss)) == sizeof(ref_loss);
  CU_ASSERT(have_ref);
  char rm[600];
  snprintf(rm, sizeof(rm), "rm -rf '%s'", dir);
  CU_ASSERT_EQUAL(system(rm), 0);
}

static const char *name_of(fr_trainer *t, int i)
{
  int nt = fr_trainer_tensor_count(t);
  return i < nt ? fr_trainer_tensor_name(t, i) : fr_ri_heads_tensor_name(fr_trainer_ri_heads(t), i - nt);
}

static void check(int max_chunk)
{
  fr_trainer *t = make(max_chunk, 1);
  CU_ASSERT_PTR_NOT_NULL_FATAL(t);
  fr_trainer_losses l;
  CU_ASSERT_EQUAL_FATAL(grads(t, &l), FR_OK);
  size_t total = all_floats(t);
  float *g = malloc(total * sizeof(float));
  CU_ASSERT_PTR_NOT_NULL_FATAL(g);
  CU_ASSERT_EQUAL_FATAL(read_all(t, 1, g), FR_OK);
  int nt = fr_trainer_tensor_count(t), bad = 0, worst_i = -1;
  fr_ri_heads *h = fr_trainer_ri_heads(t);
  double worst = 2;
  size_t at = 0;
  for (int i = 0; i < nt + fr_ri_heads_tensor_count(h); i++) {
    if (i >= nt && !fr_ri_heads_tensor_trainable(h, i - nt))
      continue;
    size_t n = i < nt ? fr_trainer_tensor_size(t, i) : fr_ri_heads_tensor_size(h, i - nt);
    double dot = 0, na = 0, nb = 0;
    for (size_t k = 0; k < n; k++) {
      dot += (double)g[at + k] * ref_grads[at + k];
      na += (double)g[at + k] * g[at + k];
      nb += ref_grads[at + k] * ref_grads[at + k];
    }
    /* A tensor with no gradient on both sides (nothing reaches it) agrees. */
    double cosine = na == 0 && nb == 0 ? 1.0 : dot / (sqrt(na * nb) + 1e-300);
    if (isnan(cosine) || cosine < worst)
      worst = isnan(cosine) ? -2 : cosine, worst_i = i;
    if (!(cosine >= 0.9999)) {
      bad++;
      printf("\n    %s: cosine %.6f (|g| %.3e, torch %.3e)", name_of(t, i), cosine, sqrt(na), sqrt(nb));
    }
    at += n;
  }
  double dev[5] = {l.total, l.arcface, l.ri.l1, l.ri.id, l.ri.mse}, e = 0;
  for (int k = 0; k < 5; k++)
    e = fmax(e, fabs(dev[k] - ref_loss[k]) / fmax(fabs(ref_loss[k]), 1e-6));
  printf("\n    chunk %d: total %.5f arcface %.5f L1 %.5f ID %.5f MSE %.6f (torch %.5f %.5f %.5f %.5f %.6f, rel %.1e); "
         "worst cosine %.7f (%s)",
         fr_trainer_chunk_size(t), dev[0], dev[1], dev[2], dev[3], dev[4], ref_loss[0], ref_loss[1], ref_loss[2],
         ref_loss[3], ref_loss[4], e, worst, name_of(t, worst_i));
  CU_ASSERT_EQUAL(bad, 0);
  CU_ASSERT(e <= 1e-3);
  CU_ASSERT(l.ri.n_ui == 1 && l.ri.n_l1 == 3 && l.ri.n_id == 3 && l.ri.n_mse == 3);
  float xi[B];
  fr_error err = {0};
  CU_ASSERT_EQUAL(fr_trainer_read_xi(t, B, xi, &err), FR_OK);
  CU_ASSERT(isfinite(xi[0]) && isfinite(xi[1]) && isnan(xi[2]) && isfinite(xi[3]));
  free(g);
  fr_trainer_destroy(t);
}

static void test_vs_torch(void)
{
  if (!have_model || !have_ref)
    TEST_SKIP("no model or no PyTorch reference");
  check(0);
}

static void test_vs_torch_chunked(void)
{
  if (!have_model || !have_ref)
    TEST_SKIP("no model or no PyTorch reference");
  check(2);
}

/* The heads' dL/dF changes the backbone's gradient (it is not silently dropped). */
static void test_heads_reach_backbone(void)
{
  if (!have_model)
    TEST_SKIP("no model file at %s", fr_model_default_path());
  fr_trainer *a = make(0, 1), *b = make(0, 0);
  CU_ASSERT_FATAL(a && b);
  fr_trainer_losses la, lb;
  CU_ASSERT_EQUAL_FATAL(grads(a, &la), FR_OK);
  CU_ASSERT_EQUAL_FATAL(grads(b, &lb), FR_OK);
  CU_ASSERT_EQUAL(la.arcface, lb.arcface);
  size_t n = fr_trainer_total_floats(b);
  float *ga = malloc(n * sizeof(float)), *gb = malloc(n * sizeof(float));
  fr_error err = {0};
  CU_ASSERT_FATAL(ga && gb);
  CU_ASSERT_EQUAL_FATAL(fr_trainer_read(a, 1, ga, &err), FR_OK);
  CU_ASSERT_EQUAL_FATAL(fr_trainer_read(b, 1, gb, &err), FR_OK);
  size_t at = 0;
  double diff48 = 0, norm48 = 0, diff_head = 0;
  for (int i = 0; i < fr_trainer_tensor_count(b); i++) {
    size_t k = fr_trainer_tensor_size(b, i);
    for (size_t j = 0; j < k; j++) {
      double d = (double)ga[at + j] - gb[at + j];
      if (!strncmp(fr_trainer_tensor_name(b, i), "layer 48 weights", 16))
        diff48 += d * d, norm48 += (double)gb[at + j] * gb[at + j];
      if (!strcmp(fr_trainer_tensor_name(b, i), "head"))
        diff_head += d * d;
    }
    at += k;
  }
  printf("\n    layer 48 weights: |g_all - g_arcface| / |g_arcface| = %.3f; prototypes' gradient change %.1e",
         sqrt(diff48 / norm48), sqrt(diff_head));
  CU_ASSERT(sqrt(diff48 / norm48) > 1e-3);
  CU_ASSERT(diff_head == 0); /* xi is detached: the prototypes see ArcFace only */
  free(ga);
  free(gb);
  fr_trainer_destroy(a);
  fr_trainer_destroy(b);
}

static int run_steps(fr_trainer_losses *l, float **params, size_t *n)
{
  fr_trainer *t = make(0, 1);
  if (!t)
    return -1;
  fr_error err = {0};
  int rc = FR_OK;
  fr_trainer_batch b = {images, labels, flags, B, 0.0f, 1.0f};
  for (int s = 0; s < 3 && !rc; s++)
    rc = fr_trainer_run_batch(t, &b, 1, &l[s], &err);
  *n = all_floats(t);
  *params = malloc(*n * sizeof(float));
  if (!rc)
    rc = *params ? read_all(t, 0, *params) : -1;
  fr_trainer_destroy(t);
  return rc;
}

static void test_deterministic(void)
{
  if (!have_model)
    TEST_SKIP("no model file at %s", fr_model_default_path());
  fr_trainer_losses a[3], b[3];
  float *pa = NULL, *pb = NULL;
  size_t na = 0, nb = 0;
  CU_ASSERT_EQUAL_FATAL(run_steps(a, &pa, &na), FR_OK);
  CU_ASSERT_EQUAL_FATAL(run_steps(b, &pb, &nb), FR_OK);
  CU_ASSERT_EQUAL(memcmp(a, b, sizeof(a)), 0);
  CU_ASSERT(na == nb && memcmp(pa, pb, na * sizeof(float)) == 0);
  printf("\n    3 steps: total %.4f -> %.4f (L1 %.4f -> %.4f, MSE %.5f -> %.5f)", a[0].total, a[2].total, a[0].ri.l1,
         a[2].ri.l1, a[0].ri.mse, a[2].ri.mse);
  for (int s = 0; s < 3; s++)
    CU_ASSERT(isfinite(a[s].total) && a[s].total == a[s].arcface + a[s].ri.total);
  free(pa);
  free(pb);
}

static void test_refusals(void)
{
  if (!have_model)
    TEST_SKIP("no model file at %s", fr_model_default_path());
  fr_trainer_options o = fr_trainer_defaults(B, C, 1e-3f, 0.9f);
  o.loss = FR_LOSS_ARCFACE;
  o.s = S, o.m = M;
  o.ri = &cfg;
  fr_trainer *t = NULL;
  fr_error err = {0};
  CU_ASSERT_EQUAL(fr_trainer_create(ctx, &model, &o, &t, &err), FR_ERR_INVALID);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "UI centre"));
  CU_ASSERT_PTR_NULL(t);
  o.ui_centre = centre;
  o.ri_feature_layer = 60;
  CU_ASSERT_EQUAL(fr_trainer_create(ctx, &model, &o, &t, &err), FR_ERR_INVALID);
  CU_ASSERT_PTR_NULL(t);
}

static void test_no_validation_messages(void) { CU_ASSERT_EQUAL(fr_vk_validation_messages(ctx), 0); }

int main(void)
{
  if (getenv("FACERI_SANITIZER_RUN")) {
    printf("SKIPPED: sanitizer run; the trainer suites run in the optimised build\n");
    return 0;
  }
  fr_error err = {0};
  if (fr_vk_context_create(NULL, &ctx, &err)) {
    fprintf(stderr, "setup: %s\n", err.message);
    return 1;
  }
  have_model = access(fr_model_default_path(), R_OK) == 0 && fr_model_load(fr_model_default_path(), &model, &err) == 0;
  CU_initialize_registry();
  CU_pSuite s = CU_add_suite("trainer with RI heads", NULL, NULL);
  CU_add_test(s, "inputs and the PyTorch reference", test_prepare);
  CU_add_test(s, "whole loss gradients vs PyTorch autograd", test_vs_torch);
  CU_add_test(s, "the same in chunks of 2", test_vs_torch_chunked);
  CU_add_test(s, "dL/dF reaches the backbone, xi is detached", test_heads_reach_backbone);
  CU_add_test(s, "bit-identical reruns of 3 steps", test_deterministic);
  CU_add_test(s, "refusals", test_refusals);
  CU_add_test(s, "no validation messages", test_no_validation_messages);
  int rc = test_run_all();
  if (have_model)
    fr_model_free(&model);
  free(images);
  free(head);
  free(ref_grads);
  fr_vk_context_destroy(ctx);
  return rc;
}
