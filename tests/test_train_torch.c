/* ArcFace and the optimizers against PyTorch autograd (scripts/arcface_reference.py,
 * float64): one forward/backward (loss, dL/dx, dL/dW), then 3 training steps on W with
 * SGD-momentum and with AdamW + clip_grad_norm_, on a small random case (B=4, D=16,
 * C=10, s=64, m=0.5). Relative error <= 1e-4 (max abs error / max abs reference).
 * Skips when /usr/bin/python3 or its torch is missing. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "faceri/optimizer.h"
#include "faceri/train_loss.h"
#include "test_util.h"

#define PYTHON "/usr/bin/python3"
enum { B = 4, D = 16, C = 10 };
static const float S = 64.0f, M = 0.5f;

static fr_vk_context *ctx;
static fr_loss *lossk;

static double rel_err(const float *got, const double *want, size_t n)
{
  double max_err = 0, max_ref = 1e-30;
  for (size_t i = 0; i < n; i++) {
    double e = fabs((double)got[i] - want[i]);
    max_err = isnan(e) ? INFINITY : fmax(max_err, e);
    max_ref = fmax(max_ref, fabs(want[i]));
  }
  return max_err / max_ref;
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

/* Device buffers for one run: x, W, labels, workspace, loss, dx, dW. */
typedef struct dev {
  fr_vk_buffer x, w, y, ws, loss, dx, dw;
} dev;

static void dev_make(dev *d, const float *x, const float *w, const int32_t *y)
{
  fr_error err = {0};
  fr_loss_params p = fr_loss_arcface_defaults(B, D, C);
  struct {
    fr_vk_buffer *b;
    size_t bytes;
    const void *data;
  } all[7] = {{&d->x, sizeof(float) * B * D, x},   {&d->w, sizeof(float) * C * D, w},
              {&d->y, sizeof(int32_t) * B, y},     {&d->ws, sizeof(float) * fr_loss_workspace_floats(lossk, &p), NULL},
              {&d->loss, sizeof(float), NULL},     {&d->dx, sizeof(float) * B * D, NULL},
              {&d->dw, sizeof(float) * C * D, NULL}};
  for (int i = 0; i < 7; i++) {
    CU_ASSERT_EQUAL_FATAL(fr_vk_buffer_create(ctx, all[i].bytes, all[i].b, &err), FR_OK);
    if (all[i].data)
      CU_ASSERT_EQUAL(fr_vk_buffer_upload(ctx, all[i].b, 0, all[i].data, all[i].bytes, &err), FR_OK);
  }
}

static void dev_free(dev *d)
{
  fr_vk_buffer *all[7] = {&d->x, &d->w, &d->y, &d->ws, &d->loss, &d->dx, &d->dw};
  for (int i = 0; i < 7; i++)
    fr_vk_buffer_destroy(ctx, all[i]);
}

static fr_vk_arg A(fr_vk_buffer *b) { return (fr_vk_arg){b, 0, 0}; }

/* loss + dx + dW once; or, with an optimizer, 3 training steps on W. */
static int run_device(dev *d, fr_optimizer *opt, float *losses)
{
  fr_error err = {0};
  fr_loss_params p = fr_loss_arcface_defaults(B, D, C);
  p.s = S, p.m = M;
  fr_vk_sequence *seq = NULL;
  int rc = fr_vk_sequence_create(ctx, 0, &seq, &err);
  if (!rc)
    rc = fr_vk_sequence_begin(seq, &err);
  if (!rc)
    rc = fr_loss_record(lossk, seq, &p, A(&d->x), A(&d->w), A(&d->y), A(&d->ws), A(&d->loss), A(&d->dx),
                        A(&d->dw), &err);
  if (!rc && opt) {
    fr_vk_sequence_barrier(seq);
    rc = fr_optimizer_record_step(opt, seq, &err);
  }
  if (!rc)
    rc = fr_vk_sequence_end(seq, &err);
  for (int step = 0; step < (opt ? 3 : 1) && !rc; step++) {
    if (opt)
      rc = fr_optimizer_begin_step(opt, &err);
    if (!rc)
      rc = fr_vk_sequence_run(seq, &err);
    if (!rc)
      rc = fr_vk_buffer_download(ctx, &d->loss, 0, &losses[step], sizeof(float), &err);
  }
  if (rc)
    fprintf(stderr, "device: %s\n", err.message);
  fr_vk_sequence_destroy(seq);
  return rc;
}

static void test_against_torch(void)
{
  if (access(PYTHON, X_OK) != 0)
    TEST_SKIP("%s not found: install python3 and python3-torch", PYTHON);
  if (system(PYTHON " -c 'import torch, numpy' >/dev/null 2>&1") != 0)
    TEST_SKIP("%s has no torch: install python3-torch", PYTHON);
  const union {
    uint16_t u;
    unsigned char c[2];
  } probe = {1};
  if (!probe.c[0])
    TEST_SKIP("big-endian host: the raw files are little-endian");

  /* a random case: unit embeddings, weights in [-1.2, 1.2] */
  float x[B * D], w[C * D];
  int32_t y[B] = {3, 0, 9, 3};
  unsigned rng = 2024u;
  for (int i = 0; i < C * D; i++) {
    rng = rng * 1664525u + 1013904223u;
    w[i] = ((float)(rng >> 8) / 16777216.0f) * 2.4f - 1.2f;
  }
  for (int b = 0; b < B; b++) {
    double ss = 0;
    for (int d = 0; d < D; d++) {
      rng = rng * 1664525u + 1013904223u;
      x[b * D + d] = ((float)(rng >> 8) / 16777216.0f) * 2.4f - 1.2f;
      ss += (double)x[b * D + d] * x[b * D + d];
    }
    for (int d = 0; d < D; d++)
      x[b * D + d] = (float)(x[b * D + d] / sqrt(ss));
  }
  char dir[] = "/tmp/faceri-torch-XXXXXX";
  CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
  CU_ASSERT_EQUAL_FATAL(write_file(dir, "x.f32", x, sizeof(x)), 0);
  CU_ASSERT_EQUAL_FATAL(write_file(dir, "w.f32", w, sizeof(w)), 0);
  CU_ASSERT_EQUAL_FATAL(write_file(dir, "y.i32", y, sizeof(y)), 0);
  char cmd[1024];
  snprintf(cmd, sizeof(cmd), "%s %s/scripts/arcface_reference.py %s %d %d %d %g %g", PYTHON, FACERI_SOURCE_DIR, dir,
           B, D, C, (double)S, (double)M);
  int py = system(cmd);
  CU_ASSERT_EQUAL(py, 0);

  size_t n_ref = 1 + B * D + C * D + 2 * (3 + C * D);
  double *ref = malloc(n_ref * sizeof(double));
  char path[512];
  snprintf(path, sizeof(path), "%s/out.f64", dir);
  FILE *f = fopen(path, "rb");
  size_t got_n = f ? fread(ref, sizeof(double), n_ref, f) : 0;
  if (f)
    fclose(f);
  CU_ASSERT_EQUAL(got_n, n_ref);
  const char *names[] = {"x.f32", "w.f32", "y.i32", "out.f64"};
  for (int i = 0; i < 4; i++) {
    snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
    unlink(path);
  }
  rmdir(dir);
  if (py != 0 || got_n != n_ref) {
    free(ref);
    return;
  }

  /* one forward/backward */
  dev d;
  dev_make(&d, x, w, y);
  float loss, dx[B * D], dw[C * D];
  CU_ASSERT_EQUAL(run_device(&d, NULL, &loss), FR_OK);
  fr_error err = {0};
  CU_ASSERT_EQUAL(fr_vk_buffer_download(ctx, &d.dx, 0, dx, sizeof(dx), &err), FR_OK);
  CU_ASSERT_EQUAL(fr_vk_buffer_download(ctx, &d.dw, 0, dw, sizeof(dw), &err), FR_OK);
  double e_loss = rel_err(&loss, ref, 1), e_dx = rel_err(dx, ref + 1, B * D), e_dw = rel_err(dw, ref + 1 + B * D, C * D);
  printf("\n    loss %.6f (torch %.6f): rel err loss %.1e, dx %.1e, dW %.1e", loss, ref[0], e_loss, e_dx, e_dw);
  CU_ASSERT(e_loss <= 1e-4 && e_dx <= 1e-4 && e_dw <= 1e-4);
  dev_free(&d);

  /* 3 training steps with each optimizer, from the same W */
  const double *at = ref + 1 + B * D + C * D;
  for (int k = 0; k < 2; k++, at += 3 + C * D) {
    fr_optimizer_config cfg = k == 0 ? fr_optimizer_sgd_defaults(0.1f, 0.9f) : fr_optimizer_adamw_defaults(0.01f);
    fr_param_group grp = {1.0f, k == 0 ? 5e-4f : 0.01f, 0};
    if (k == 1)
      cfg.max_grad_norm = 1.0f;
    dev_make(&d, x, w, y);
    fr_optimizer *opt = NULL;
    CU_ASSERT_EQUAL_FATAL(fr_optimizer_create(ctx, &cfg, &opt, &err), FR_OK);
    CU_ASSERT_EQUAL(fr_optimizer_add_group(opt, &grp, &err), 0);
    CU_ASSERT_EQUAL(fr_optimizer_add_param(opt, 0, A(&d.w), A(&d.dw), C * D, &err), FR_OK);
    float losses[3], w_after[C * D];
    CU_ASSERT_EQUAL(run_device(&d, opt, losses), FR_OK);
    CU_ASSERT_EQUAL(fr_vk_buffer_download(ctx, &d.w, 0, w_after, sizeof(w_after), &err), FR_OK);
    double e_l = rel_err(losses, at, 3), e_w = rel_err(w_after, at + 3, C * D);
    printf("\n    %s: losses %.4f %.4f %.4f (torch %.4f %.4f %.4f): rel err %.1e, W after 3 steps %.1e",
           k == 0 ? "SGD momentum 0.9" : "AdamW + clip 1", losses[0], losses[1], losses[2], at[0], at[1], at[2], e_l,
           e_w);
    CU_ASSERT(e_l <= 1e-4 && e_w <= 1e-4);
    fr_optimizer_destroy(opt);
    dev_free(&d);
  }
  free(ref);
}

static void test_no_validation_messages(void) { CU_ASSERT_EQUAL(fr_vk_validation_messages(ctx), 0); }

int main(void)
{
  fr_error err = {0};
  if (fr_vk_context_create(NULL, &ctx, &err) || fr_loss_create(ctx, &lossk, &err)) {
    fprintf(stderr, "setup: %s\n", err.message);
    return 1;
  }
  CU_initialize_registry();
  CU_pSuite s = CU_add_suite("train vs torch", NULL, NULL);
  CU_add_test(s, "ArcFace + SGD/AdamW vs PyTorch autograd", test_against_torch);
  CU_add_test(s, "no validation messages", test_no_validation_messages);
  int rc = test_run_all();
  fr_loss_destroy(lossk);
  fr_vk_context_destroy(ctx);
  return rc;
}
