/* The RI heads and loss terms (faceri/ri_heads.h), in three layers of evidence:
 *  1. the float64 reference's gradients (every parameter, the feature map, the
 *     embedding) against central finite differences of its own total loss;
 *  2. the device against the reference: outputs, loss terms, every gradient, the
 *     running statistics, in one chunk and in chunks, and the inference path;
 *  3. bit-identical reruns, and the optimizer stepping the registered parameters.
 * test_ri_heads_torch.c holds the reference to PyTorch autograd.
 * Small shapes: a 4x4x32 feature map, dim 8, batch 4 with one UI row. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "faceri/optimizer.h"
#include "faceri/ri_heads.h"
#include "test_util.h"

#include "ri_heads_fixture.h"

static fr_vk_context *ctx;

/* Central differences of the total loss over (a spread subset of) x's elements. */
static double fd_check(fixture *f, double *x, const double *grad, size_t n, const char *what)
{
  const double h = 1e-6;
  size_t stride = n > 400 ? n / 400 + 1 : 1;
  double e = 0, m = 1e-12;
  for (size_t k = 0; k < n; k += stride) {
    double keep = x[k];
    x[k] = keep + h;
    double lp = ref_total(f);
    x[k] = keep - h;
    double lm = ref_total(f);
    x[k] = keep;
    double fd = (lp - lm) / (2 * h);
    e = fmax(e, fabs(fd - grad[k]));
    m = fmax(m, fabs(fd));
  }
  double r = e / m;
  if (!(r < 1e-5))
    printf("\n  %s (reg input %d, attention %d): finite-difference relative error %.3g\n", what, (int)f->cfg.reg_input, f->cfg.attention, r);
  return r;
}


static void test_fd(void)
{
  fr_ri_heads_config c[3];
  int n;
  configs(c, &n);
  for (int k = 0; k < n; k++) {
    fixture *f = malloc(sizeof(*f));
    make_fixture(f, &c[k]);
    ref_backward(f);
    CU_ASSERT(f->out.loss.n_l1 == 3 && f->out.loss.n_ui == 1);
    CU_ASSERT(f->out.l1 > 0 && f->out.id > 0 && (!c[k].attention || f->out.mse > 0));
    for (int i = 0; i < f->nt; i++)
      if (fr_ri_ref_tensor_trainable(&c[k], i))
        CU_ASSERT(fd_check(f, f->pd[i], f->gd[i], f->tn[i], fr_ri_ref_tensor_name(&c[k], i)) < 1e-5);
    CU_ASSERT(fd_check(f, f->Fd, f->dF, B * HWC, "F") < 1e-5);
    if (c[k].detach_vproj && c[k].reg_input == FR_RI_REG_FEATURES) { /* v' is a constant: no gradient to v */
      for (int j = 0; j < B * DIM; j++)
        CU_ASSERT(f->dv[j] == 0.0);
    } else {
      CU_ASSERT(fd_check(f, f->vd, f->dv, B * DIM, "v") < 1e-5);
    }
    free_fixture(f);
    free(f);
  }
}

/* ---- device ---- */

typedef struct dev_bufs {
  fr_vk_buffer F, v, xi, flags, centre, dF, dv, dxi;
} dev_bufs;

static int upload_inputs(const fixture *f, dev_bufs *d, fr_error *err)
{
  struct {
    fr_vk_buffer *b;
    const void *src;
    size_t bytes;
  } u[] = {{&d->F, f->F, sizeof(f->F)},           {&d->v, f->v, sizeof(f->v)},
           {&d->xi, f->xi, sizeof(f->xi)},        {&d->flags, f->flags, sizeof(f->flags)},
           {&d->centre, f->centre, sizeof(f->centre)}, {&d->dF, f->dF0, sizeof(f->dF0)},
           {&d->dv, f->dv0, sizeof(f->dv0)},      {&d->dxi, f->dv0, B * sizeof(float)}};
  for (size_t i = 0; i < sizeof(u) / sizeof(u[0]); i++) {
    if (!u[i].b->buffer && fr_vk_buffer_create(ctx, u[i].bytes, u[i].b, err))
      return 1;
    if (fr_vk_buffer_upload(ctx, u[i].b, 0, u[i].src, u[i].bytes, err))
      return 1;
  }
  return 0;
}

static void free_bufs(dev_bufs *d)
{
  fr_vk_buffer *b[] = {&d->F, &d->v, &d->xi, &d->flags, &d->centre, &d->dF, &d->dv, &d->dxi};
  for (size_t i = 0; i < sizeof(b) / sizeof(b[0]); i++)
    if (b[i]->buffer)
      fr_vk_buffer_destroy(ctx, b[i]);
}

static fr_ri_targets targets(dev_bufs *d)
{
  fr_ri_targets t = {B, {&d->v, 0, 0}, {&d->xi, 0, 0}, 4, 3, {&d->flags, 0, 0}, {&d->centre, 0, 0}, {&d->dv, 0, 0},
                     {&d->dxi, 0, 0}};
  return t;
}

/* Records the training phases, in chunks of `chunk` images (B: one call). */
static int record(fr_ri_heads *h, fr_vk_sequence *seq, dev_bufs *d, int chunk, fr_error *err)
{
  fr_ri_targets t = targets(d);
  int rc = fr_vk_sequence_begin(seq, err);
  fr_vk_arg F = {&d->F, 0, 0}, dF = {&d->dF, 0, 0};
  if (!rc && chunk >= B)
    rc = fr_ri_heads_record_train(h, seq, F, &t, dF, err);
  else if (!rc) {
    uint64_t cb = (uint64_t)chunk * HWC * sizeof(float);
#define CHUNKS(call)                                                                         \
  for (int r0 = 0; r0 < B && !rc; r0 += chunk) {                                             \
    int nb = B - r0 < chunk ? B - r0 : chunk;                                                \
    fr_vk_arg Fc = {&d->F, (uint64_t)(r0 / chunk) * cb, (uint64_t)nb * HWC * sizeof(float)}; \
    fr_vk_arg dFc = {&d->dF, Fc.offset, Fc.range};                                           \
    (void)dFc;                                                                               \
    rc = call;                                                                               \
  }
    CHUNKS(fr_ri_heads_record_fwd_chunk(h, seq, r0, nb, Fc, err))
    if (!rc)
      rc = fr_ri_heads_record_fwd_batch(h, seq, B, t.v, err);
    CHUNKS(fr_ri_heads_record_fwd2_chunk(h, seq, r0, nb, Fc, err))
    if (!rc)
      rc = fr_ri_heads_record_loss(h, seq, &t, err);
    CHUNKS(fr_ri_heads_record_bwd_chunk(h, seq, r0, nb, Fc, err))
    if (!rc)
      rc = fr_ri_heads_record_bwd_batch(h, seq, B, err);
    CHUNKS(fr_ri_heads_record_bwd2_chunk(h, seq, r0, nb, Fc, dFc, err))
  }
  if (!rc)
    rc = fr_vk_sequence_end(seq, err);
  return rc;
}

static double cmp_f(const float *got, const double *want, size_t n)
{
  double *g = malloc(n * sizeof(double));
  for (size_t i = 0; i < n; i++)
    g[i] = got[i];
  double e = rel_err(g, want, n);
  free(g);
  return e;
}

static void check_device_against_reference(fixture *f, fr_ri_heads *h, dev_bufs *d, const char *label)
{
  fr_error err = {0};
  const fr_ri_heads_config *c = &f->cfg;
  const double tol = 2e-4;
  float xh[B], va[B * DIM];
  CU_ASSERT_EQUAL_FATAL(fr_ri_heads_read_outputs(h, B, xh, c->attention ? va : NULL, &err), FR_OK);
  double e = cmp_f(xh, f->xh, B);
  CU_ASSERT(e < tol);
  if (!(e < tol))
    printf("\n  %s: xi^ error %.3g\n", label, e);
  if (c->attention) {
    e = cmp_f(va, f->va, B * DIM);
    CU_ASSERT(e < tol);
    if (!(e < tol))
      printf("\n  %s: v_attn error %.3g\n", label, e);
  }
  fr_ri_loss_values lv;
  CU_ASSERT_EQUAL_FATAL(fr_ri_heads_read_loss(h, &lv, &err), FR_OK);
  CU_ASSERT(fabs(lv.total - f->out.total) <= tol * fabs(f->out.total));
  CU_ASSERT(fabs(lv.l1 - f->out.l1) <= tol * fabs(f->out.l1) + 1e-7);
  CU_ASSERT(fabs(lv.id - f->out.id) <= tol * fabs(f->out.id) + 1e-7);
  CU_ASSERT(fabs(lv.mse - f->out.mse) <= tol * fabs(f->out.mse) + 1e-7);
  CU_ASSERT(lv.n_l1 == f->out.loss.n_l1 && lv.n_id == f->out.loss.n_id && lv.n_mse == f->out.loss.n_mse);
  CU_ASSERT(lv.n_ui == 1 && fabs(lv.ui_mean - f->out.loss.ui_mean) < 1e-4);
  for (int i = 0; i < f->nt; i++) {
    float *g = malloc(f->tn[i] * sizeof(float));
    int trainable = fr_ri_heads_tensor_trainable(h, i);
    CU_ASSERT_EQUAL(fr_ri_heads_read_tensor(h, i, trainable, g, &err), FR_OK);
    e = trainable ? cmp_f(g, f->gd[i], f->tn[i]) : cmp_f(g, f->pd[i], f->tn[i]); /* running stats */
    CU_ASSERT(e < tol);
    if (!(e < tol))
      printf("\n  %s: %s %s error %.3g\n", label, fr_ri_heads_tensor_name(h, i), trainable ? "gradient" : "value", e);
    free(g);
  }
  /* dF and dv were added to what the buffers held. */
  float *dF = malloc(sizeof(f->F)), dv[B * DIM], dxi[B];
  CU_ASSERT_EQUAL(fr_vk_buffer_download(ctx, &d->dF, 0, dF, sizeof(f->F), &err), FR_OK);
  CU_ASSERT_EQUAL(fr_vk_buffer_download(ctx, &d->dv, 0, dv, sizeof(dv), &err), FR_OK);
  CU_ASSERT_EQUAL(fr_vk_buffer_download(ctx, &d->dxi, 0, dxi, sizeof(dxi), &err), FR_OK);
  for (int k = 0; k < B * HWC; k++)
    dF[k] -= f->dF0[k];
  for (int k = 0; k < B * DIM; k++)
    dv[k] -= f->dv0[k];
  e = cmp_f(dF, f->dF, B * HWC);
  CU_ASSERT(e < tol);
  if (!(e < tol))
    printf("\n  %s: dF error %.3g\n", label, e);
  double dvmax = 0;
  for (int k = 0; k < B * DIM; k++)
    dvmax = fmax(dvmax, fabs(f->dv[k]));
  e = dvmax > 0 ? cmp_f(dv, f->dv, B * DIM) : 0;
  for (int k = 0; k < B * DIM && dvmax == 0; k++)
    CU_ASSERT(dv[k] == 0.0f);
  CU_ASSERT(e < tol);
  CU_ASSERT(cmp_f(dxi, f->dxi, B) < tol);
  free(dF);
}

static fr_ri_heads *make_heads(const fixture *f, int max_chunk, fr_error *err)
{
  fr_ri_heads_config c = f->cfg;
  c.max_chunk = max_chunk;
  fr_ri_heads *h = NULL;
  if (fr_ri_heads_create(ctx, &c, &h, err))
    return NULL;
  for (int i = 0; i < f->nt; i++)
    if (fr_ri_heads_write_tensor(h, i, f->pf[i], f->tn[i], err)) {
      fr_ri_heads_destroy(h);
      return NULL;
    }
  if (fr_ri_heads_begin_step(h, f->step, f->mu, f->sigma, err)) {
    fr_ri_heads_destroy(h);
    return NULL;
  }
  return h;
}

static void run_config(const fr_ri_heads_config *c, int chunk, const char *label)
{
  fr_error err = {0};
  fixture *f = malloc(sizeof(*f));
  make_fixture(f, c);
  ref_backward(f);
  /* The reference's running statistics after one training forward. */
  fr_ri_ref_inputs in = ref_inputs(f, 1);
  in.update_running = 1;
  double xh[B], va[B * DIM];
  fr_ri_ref_outputs o = {.xi_hat = xh, .v_attn = va};
  double **after = malloc((size_t)f->nt * sizeof(double *));
  for (int i = 0; i < f->nt; i++) {
    after[i] = malloc(f->tn[i] * sizeof(double));
    memcpy(after[i], f->pd[i], f->tn[i] * sizeof(double));
  }
  fr_ri_ref_run(c, after, &in, &o, NULL, NULL, NULL, NULL, &err);
  dev_bufs d = {0};
  fr_vk_sequence *seq = NULL;
  fr_ri_heads *h = make_heads(f, chunk, &err);
  int rc = h ? FR_OK : FR_ERR_INVALID;
  if (!rc)
    rc = upload_inputs(f, &d, &err);
  if (!rc)
    rc = fr_vk_sequence_create(ctx, 0, &seq, &err);
  if (!rc)
    rc = record(h, seq, &d, chunk, &err);
  if (!rc)
    rc = fr_vk_sequence_run(seq, &err);
  if (rc)
    printf("\n  %s: %s\n", label, err.message);
  CU_ASSERT_EQUAL_FATAL(rc, FR_OK);
  for (int i = 0; i < f->nt; i++) /* state tensors compare with the updated statistics */
    if (!fr_ri_ref_tensor_trainable(c, i))
      memcpy(f->pd[i], after[i], f->tn[i] * sizeof(double));
  check_device_against_reference(f, h, &d, label);
  for (int i = 0; i < f->nt; i++)
    free(after[i]);
  free(after);
  fr_vk_sequence_destroy(seq);
  fr_ri_heads_destroy(h);
  free_bufs(&d);
  free_fixture(f);
  free(f);
}

static void test_device(void)
{
  fr_ri_heads_config c[3];
  int n;
  configs(c, &n);
  const char *labels[3] = {"defaults", "options", "embedding regression"};
  for (int k = 0; k < n; k++)
    run_config(&c[k], B, labels[k]);
}

static void test_device_chunks(void)
{
  fr_ri_heads_config c[3];
  int n;
  configs(c, &n);
  run_config(&c[0], 2, "defaults, chunks of 2");
  run_config(&c[1], 3, "options, chunks of 3 + 1");
}

/* Two runs of one recorded sequence give the same bits (the sums have a fixed order). */
static void test_determinism(void)
{
  fr_ri_heads_config c[3];
  int n;
  configs(c, &n);
  fr_error err = {0};
  fixture *f = malloc(sizeof(*f));
  make_fixture(f, &c[1]);
  dev_bufs d = {0};
  fr_vk_sequence *seq = NULL;
  fr_ri_heads *h = make_heads(f, 3, &err);
  CU_ASSERT_PTR_NOT_NULL_FATAL(h);
  CU_ASSERT_EQUAL_FATAL(fr_vk_sequence_create(ctx, 0, &seq, &err), FR_OK);
  CU_ASSERT_EQUAL_FATAL(upload_inputs(f, &d, &err), 0);
  CU_ASSERT_EQUAL_FATAL(record(h, seq, &d, 3, &err), FR_OK);
  size_t total = 0;
  for (int i = 0; i < f->nt; i++)
    total += f->tn[i];
  size_t nres = total + B * HWC + B * DIM + B + B * DIM + 4;
  float *res[2];
  for (int run = 0; run < 2; run++) {
    res[run] = calloc(nres, sizeof(float));
    CU_ASSERT_EQUAL_FATAL(upload_inputs(f, &d, &err), 0); /* dF, dv start over */
    CU_ASSERT_EQUAL_FATAL(fr_vk_sequence_run(seq, &err), FR_OK);
    float *p = res[run];
    for (int i = 0; i < f->nt; i++, p += f->tn[i - 1])
      if (fr_ri_heads_tensor_trainable(h, i))
        CU_ASSERT_EQUAL(fr_ri_heads_read_tensor(h, i, 1, p, &err), FR_OK);
    CU_ASSERT_EQUAL(fr_vk_buffer_download(ctx, &d.dF, 0, p, B * HWC * sizeof(float), &err), FR_OK);
    p += B * HWC;
    CU_ASSERT_EQUAL(fr_vk_buffer_download(ctx, &d.dv, 0, p, B * DIM * sizeof(float), &err), FR_OK);
    p += B * DIM;
    CU_ASSERT_EQUAL(fr_ri_heads_read_outputs(h, B, p, p + B, &err), FR_OK);
    p += B + B * DIM;
    fr_ri_loss_values lv;
    CU_ASSERT_EQUAL(fr_ri_heads_read_loss(h, &lv, &err), FR_OK);
    p[0] = lv.total, p[1] = lv.l1, p[2] = lv.id, p[3] = lv.mse;
  }
  CU_ASSERT(memcmp(res[0], res[1], nres * sizeof(float)) == 0);
  /* Another step draws other dropout masks. */
  float g0 = 0, g1 = 0;
  CU_ASSERT_EQUAL(fr_ri_heads_begin_step(h, f->step + 1, f->mu, f->sigma, &err), FR_OK);
  CU_ASSERT_EQUAL(upload_inputs(f, &d, &err), 0);
  CU_ASSERT_EQUAL(fr_vk_sequence_run(seq, &err), FR_OK);
  CU_ASSERT_EQUAL(fr_ri_heads_read_outputs(h, 1, &g1, NULL, &err), FR_OK);
  g0 = res[0][total + B * HWC + B * DIM];
  CU_ASSERT(g0 != g1);
  free(res[0]), free(res[1]);
  fr_vk_sequence_destroy(seq);
  fr_ri_heads_destroy(h);
  free_bufs(&d);
  free_fixture(f);
  free(f);
}

/* Forward only, in chunks: no dropout, batch norm with the running statistics. */
static void test_inference(void)
{
  fr_ri_heads_config c[3];
  int n;
  configs(c, &n);
  for (int k = 0; k < n; k += 2) {
    fr_error err = {0};
    fixture *f = malloc(sizeof(*f));
    make_fixture(f, &c[k]);
    fr_ri_ref_inputs in = ref_inputs(f, 0);
    f->out = (fr_ri_ref_outputs){.xi_hat = f->xh, .v_attn = f->va};
    CU_ASSERT_EQUAL(fr_ri_ref_run(&c[k], f->pd, &in, &f->out, NULL, NULL, NULL, NULL, &err), FR_OK);
    dev_bufs d = {0};
    fr_vk_sequence *seq = NULL;
    fr_ri_heads *h = make_heads(f, 2, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(h);
    CU_ASSERT_EQUAL_FATAL(upload_inputs(f, &d, &err), 0);
    CU_ASSERT_EQUAL_FATAL(fr_vk_sequence_create(ctx, 0, &seq, &err), FR_OK);
    int rc = fr_vk_sequence_begin(seq, &err);
    for (int r0 = 0; r0 < B && !rc; r0 += 2) {
      fr_vk_arg F = {&d.F, (uint64_t)r0 * HWC * sizeof(float), 2 * HWC * sizeof(float)};
      fr_vk_arg v = {&d.v, (uint64_t)r0 * DIM * sizeof(float), 2 * DIM * sizeof(float)};
      rc = fr_ri_heads_record_infer(h, seq, r0, 2, F, v, &err);
    }
    if (!rc)
      rc = fr_vk_sequence_end(seq, &err);
    if (!rc)
      rc = fr_vk_sequence_run(seq, &err);
    CU_ASSERT_EQUAL_FATAL(rc, FR_OK);
    float xh[B], va[B * DIM];
    CU_ASSERT_EQUAL(fr_ri_heads_read_outputs(h, B, xh, c[k].attention ? va : NULL, &err), FR_OK);
    CU_ASSERT(cmp_f(xh, f->xh, B) < 2e-4);
    if (c[k].attention)
      CU_ASSERT(cmp_f(va, f->va, B * DIM) < 2e-4);
    fr_vk_sequence_destroy(seq);
    fr_ri_heads_destroy(h);
    free_bufs(&d);
    free_fixture(f);
    free(f);
  }
}

/* The registered parameters are stepped by the trainer's optimizer: p -= lr g (SGD). */
static void test_optimizer(void)
{
  fr_ri_heads_config c[3];
  int n;
  configs(c, &n);
  fr_error err = {0};
  fixture *f = malloc(sizeof(*f));
  make_fixture(f, &c[0]);
  dev_bufs d = {0};
  fr_vk_sequence *seq = NULL;
  fr_optimizer *opt = NULL;
  fr_ri_heads *h = make_heads(f, B, &err);
  CU_ASSERT_PTR_NOT_NULL_FATAL(h);
  fr_optimizer_config oc = fr_optimizer_sgd_defaults(0.1f, 0.0f);
  fr_param_group g = {1.0f, 0.0f, 0};
  CU_ASSERT_EQUAL_FATAL(fr_optimizer_create(ctx, &oc, &opt, &err), FR_OK);
  int group = fr_optimizer_add_group(opt, &g, &err);
  CU_ASSERT_FATAL(group >= 0);
  CU_ASSERT_EQUAL_FATAL(fr_ri_heads_add_to_optimizer(h, opt, group, &err), FR_OK);
  CU_ASSERT_EQUAL_FATAL(upload_inputs(f, &d, &err), 0);
  CU_ASSERT_EQUAL_FATAL(fr_vk_sequence_create(ctx, 0, &seq, &err), FR_OK);
  fr_ri_targets t = targets(&d);
  int rc = fr_vk_sequence_begin(seq, &err);
  if (!rc)
    rc = fr_ri_heads_record_train(h, seq, (fr_vk_arg){&d.F, 0, 0}, &t, (fr_vk_arg){&d.dF, 0, 0}, &err);
  fr_vk_sequence_barrier(seq);
  if (!rc)
    rc = fr_optimizer_record_step(opt, seq, &err);
  if (!rc)
    rc = fr_vk_sequence_end(seq, &err);
  if (!rc)
    rc = fr_optimizer_begin_step(opt, &err);
  if (!rc)
    rc = fr_vk_sequence_run(seq, &err);
  CU_ASSERT_EQUAL_FATAL(rc, FR_OK);
  for (int i = 0; i < f->nt; i++) {
    if (!fr_ri_heads_tensor_trainable(h, i))
      continue;
    float *p = malloc(f->tn[i] * sizeof(float)), *gr = malloc(f->tn[i] * sizeof(float));
    CU_ASSERT_EQUAL(fr_ri_heads_read_tensor(h, i, 0, p, &err), FR_OK);
    CU_ASSERT_EQUAL(fr_ri_heads_read_tensor(h, i, 1, gr, &err), FR_OK);
    double worst = 0;
    for (size_t k = 0; k < f->tn[i]; k++)
      worst = fmax(worst, fabs(p[k] - (f->pf[i][k] - 0.1f * gr[k])));
    CU_ASSERT(worst < 1e-6);
    free(p), free(gr);
  }
  /* Inference after the device-side update uses the new weights (the GEMM forward's
   * packed copy is regathered): the reference on the parameters read back. */
  for (int i = 0; i < f->nt; i++) {
    float *p = malloc(f->tn[i] * sizeof(float));
    CU_ASSERT_EQUAL(fr_ri_heads_read_tensor(h, i, 0, p, &err), FR_OK);
    for (size_t k = 0; k < f->tn[i]; k++)
      f->pd[i][k] = p[k];
    free(p);
  }
  fr_ri_ref_inputs in = ref_inputs(f, 0);
  f->out = (fr_ri_ref_outputs){.xi_hat = f->xh, .v_attn = f->va};
  CU_ASSERT_EQUAL(fr_ri_ref_run(&c[0], f->pd, &in, &f->out, NULL, NULL, NULL, NULL, &err), FR_OK);
  rc = fr_vk_sequence_begin(seq, &err);
  if (!rc)
    rc = fr_ri_heads_record_infer(h, seq, 0, B, (fr_vk_arg){&d.F, 0, 0}, (fr_vk_arg){&d.v, 0, 0}, &err);
  if (!rc)
    rc = fr_vk_sequence_end(seq, &err);
  if (!rc)
    rc = fr_vk_sequence_run(seq, &err);
  CU_ASSERT_EQUAL_FATAL(rc, FR_OK);
  float xh[B], va[B * DIM];
  CU_ASSERT_EQUAL(fr_ri_heads_read_outputs(h, B, xh, va, &err), FR_OK);
  CU_ASSERT(cmp_f(xh, f->xh, B) < 2e-4);
  CU_ASSERT(cmp_f(va, f->va, B * DIM) < 2e-4);
  fr_vk_sequence_destroy(seq);
  fr_optimizer_destroy(opt);
  fr_ri_heads_destroy(h);
  free_bufs(&d);
  free_fixture(f);
  free(f);
}

static void test_bad_input(void)
{
  fr_error err = {0};
  fr_ri_heads *h = NULL;
  fr_ri_heads_config c = fr_ri_heads_defaults(HH, WW, CC, DIM, B);
  fr_ri_heads_config bad = c;
  bad.dropout = 1.0f;
  CU_ASSERT_EQUAL(fr_ri_heads_create(ctx, &bad, &h, &err), FR_ERR_INVALID);
  bad = c;
  bad.spatial_kernel = 4;
  CU_ASSERT_EQUAL(fr_ri_heads_create(ctx, &bad, &h, &err), FR_ERR_INVALID);
  bad = c;
  bad.max_batch = 0;
  CU_ASSERT_EQUAL(fr_ri_heads_create(ctx, &bad, &h, &err), FR_ERR_INVALID);
  CU_ASSERT_PTR_NULL(h);
  c.max_chunk = 2;
  CU_ASSERT_EQUAL_FATAL(fr_ri_heads_create(ctx, &c, &h, &err), FR_OK);
  CU_ASSERT_EQUAL(fr_ri_heads_begin_step(h, 0, 0.0f, 0.0f, &err), FR_ERR_INVALID);
  float x[3] = {0};
  CU_ASSERT_EQUAL(fr_ri_heads_write_tensor(h, 1, x, 3, &err), FR_ERR_INVALID);
  x[0] = NAN;
  CU_ASSERT_EQUAL(fr_ri_heads_write_tensor(h, 1, x, 1, &err), FR_ERR_INVALID);
  CU_ASSERT_EQUAL(fr_ri_heads_read_tensor(h, 99, 0, x, &err), FR_ERR_INVALID);
  CU_ASSERT_PTR_NULL(fr_ri_heads_tensor_name(h, 99));
  fr_vk_buffer small = {0};
  fr_vk_sequence *seq = NULL;
  CU_ASSERT_EQUAL_FATAL(fr_vk_buffer_create(ctx, 64, &small, &err), FR_OK);
  CU_ASSERT_EQUAL_FATAL(fr_vk_sequence_create(ctx, 0, &seq, &err), FR_OK);
  CU_ASSERT_EQUAL(fr_vk_sequence_begin(seq, &err), FR_OK);
  fr_vk_arg s = {&small, 0, 0};
  CU_ASSERT_EQUAL(fr_ri_heads_record_fwd_chunk(h, seq, 0, 2, s, &err), FR_ERR_INVALID); /* too small */
  CU_ASSERT_EQUAL(fr_ri_heads_record_fwd_chunk(h, seq, 0, 3, s, &err), FR_ERR_INVALID); /* over the chunk */
  CU_ASSERT_EQUAL(fr_ri_heads_record_fwd_chunk(h, seq, 3, 2, s, &err), FR_ERR_INVALID); /* past the batch */
  fr_ri_targets t = {B, s, s, 4, 3, {0}, s, {0}, {0}};
  CU_ASSERT_EQUAL(fr_ri_heads_record_loss(h, seq, &t, &err), FR_ERR_INVALID);
  t.xi_offset = 4;
  CU_ASSERT_EQUAL(fr_ri_heads_record_loss(h, seq, &t, &err), FR_ERR_INVALID);
  fr_vk_sequence_destroy(seq);
  fr_vk_buffer_destroy(ctx, &small);
  fr_ri_heads_destroy(h);
}

static void test_no_validation_messages(void) { CU_ASSERT_EQUAL(fr_vk_validation_messages(ctx), 0); }

int main(void)
{
  fr_error err = {0};
  if (fr_vk_context_create(NULL, &ctx, &err)) {
    fprintf(stderr, "setup: %s\n", err.message);
    return 1;
  }
  CU_initialize_registry();
  CU_pSuite s = CU_add_suite("RI heads", NULL, NULL);
  CU_add_test(s, "reference gradients vs finite differences", test_fd);
  CU_add_test(s, "device vs reference, one chunk", test_device);
  CU_add_test(s, "device vs reference, in chunks", test_device_chunks);
  CU_add_test(s, "bit-identical reruns, new masks per step", test_determinism);
  CU_add_test(s, "inference path vs reference", test_inference);
  CU_add_test(s, "optimizer steps the registered parameters", test_optimizer);
  CU_add_test(s, "bad input", test_bad_input);
  CU_add_test(s, "no validation messages", test_no_validation_messages);
  int rc = test_run_all();
  fr_vk_context_destroy(ctx);
  return rc;
}
