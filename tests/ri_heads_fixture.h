#ifndef FACERI_TEST_RI_HEADS_FIXTURE_H
#define FACERI_TEST_RI_HEADS_FIXTURE_H
/* Shared by test_ri_heads.c and test_ri_heads_torch.c: a small random case for the RI
 * heads (4x4x32 feature map, dim 8, batch 4 with one UI row), its float64 reference
 * run, and the configurations the tests cover. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "faceri/ri_heads.h"
#include "test_util.h"

#define B 4
#define HH 4
#define WW 4
#define CC 32
#define DIM 8
#define HWC (HH * WW * CC)
#define MAXT 16

static unsigned rng_state = 777u;

static inline float frand(float a)
{
  rng_state = rng_state * 1664525u + 1013904223u;
  return ((float)(rng_state >> 8) / 16777216.0f * 2.0f - 1.0f) * a;
}

typedef struct fixture {
  fr_ri_heads_config cfg;
  int nt;
  size_t tn[MAXT];
  float *pf[MAXT];                 /* parameters as uploaded */
  double *pd[MAXT], *gd[MAXT];     /* the same in double, reference gradients */
  float F[B * HWC], v[B * DIM], centre[DIM], xi[B * 4], dF0[B * HWC], dv0[B * DIM];
  int32_t flags[B];
  double Fd[B * HWC], vd[B * DIM], xid[B], cd[DIM];
  double xh[B], va[B * DIM], dF[B * HWC], dv[B * DIM], dxi[B];
  float mu, sigma;
  uint32_t step;
  fr_ri_ref_outputs out;
} fixture;

static inline void free_fixture(fixture *f)
{
  for (int i = 0; i < f->nt; i++)
    free(f->pf[i]), free(f->pd[i]), free(f->gd[i]);
}

static inline fr_ri_ref_inputs ref_inputs(const fixture *f, int training)
{
  fr_ri_ref_inputs in = {B, f->Fd, f->vd, f->xid, f->flags, f->cd, f->step, f->mu, f->sigma, training, 0};
  return in;
}

static inline double ref_total(fixture *f)
{
  fr_ri_ref_inputs in = ref_inputs(f, 1);
  double xh[B], va[B * DIM];
  fr_ri_ref_outputs o = {.xi_hat = xh, .v_attn = va};
  fr_error err = {0};
  fr_ri_ref_run(&f->cfg, f->pd, &in, &o, NULL, NULL, NULL, NULL, &err);
  return o.total;
}

/* Random parameters and inputs; targets placed so both branches of the smooth L1 and
 * of the ID hinge are taken. */
static inline void make_fixture(fixture *f, const fr_ri_heads_config *cfg)
{
  memset(f, 0, sizeof(*f));
  f->cfg = *cfg;
  f->nt = fr_ri_ref_tensor_count(cfg);
  for (int i = 0; i < f->nt; i++) {
    f->tn[i] = fr_ri_ref_tensor_size(cfg, i);
    f->pf[i] = malloc(f->tn[i] * sizeof(float));
    f->pd[i] = malloc(f->tn[i] * sizeof(double));
    f->gd[i] = calloc(f->tn[i], sizeof(double));
    const char *name = fr_ri_ref_tensor_name(cfg, i);
    float a = (float)(1.0 / sqrt((double)(f->tn[i] > 64 ? f->tn[i] / DIM : 8)));
    for (size_t k = 0; k < f->tn[i]; k++) {
      float x = frand(a);
      if (strstr(name, "running_var"))
        x = 0.8f;
      else if (strstr(name, "gamma"))
        x = 1.2f;
      else if (strstr(name, "running_mean"))
        x = 0.1f;
      f->pf[i][k] = x;
      f->pd[i][k] = x;
    }
  }
  for (int k = 0; k < B * HWC; k++) {
    f->F[k] = frand(1.0f);
    f->Fd[k] = f->F[k];
    f->dF0[k] = frand(0.5f);
  }
  for (int k = 0; k < B * DIM; k++) {
    f->v[k] = frand(2.0f);
    f->vd[k] = f->v[k];
    f->dv0[k] = frand(0.5f);
  }
  for (int d = 0; d < DIM; d++) {
    f->centre[d] = frand(1.0f);
    f->cd[d] = f->centre[d];
  }
  for (int r = 0; r < B; r++)
    f->flags[r] = r == B - 1; /* the last row is a UI image: no target */
  f->step = 3;
  f->sigma = 0.7f;
  f->mu = 0.0f;
  /* Forward once to place the targets and mu around the predictions. */
  for (int r = 0; r < B; r++)
    f->xid[r] = 0;
  fr_ri_ref_inputs in = ref_inputs(f, 1);
  double xh[B], va[B * DIM];
  fr_ri_ref_outputs o = {.xi_hat = xh, .v_attn = va};
  fr_error err = {0};
  fr_ri_ref_run(cfg, f->pd, &in, &o, NULL, NULL, NULL, NULL, &err);
  const double off[B] = {0.3, -1.5, 2.0, 0};
  for (int r = 0; r < B; r++) {
    f->xi[r * 4 + 3] = r == B - 1 ? NAN : (float)(xh[r] + off[r]);
    f->xi[r * 4] = f->xi[r * 4 + 1] = f->xi[r * 4 + 2] = 0.0f;
    f->xid[r] = f->xi[r * 4 + 3];
  }
  /* mu between the two smallest labelled predictions: one hinge active, the others not */
  double s0 = fmin(xh[0], fmin(xh[1], xh[2])), s1 = 1e9;
  for (int r = 0; r < 3; r++)
    if (xh[r] > s0 && xh[r] < s1)
      s1 = xh[r];
  f->mu = (float)((s0 + s1) / 2 - cfg->tau * f->sigma);
}

static inline void ref_backward(fixture *f)
{
  fr_ri_ref_inputs in = ref_inputs(f, 1);
  f->out = (fr_ri_ref_outputs){.xi_hat = f->xh, .v_attn = f->va};
  fr_error err = {0};
  CU_ASSERT_EQUAL(fr_ri_ref_run(&f->cfg, f->pd, &in, &f->out, f->gd, f->dF, f->dv, f->dxi, &err), FR_OK);
}

static inline double rel_err(const double *got, const double *want, size_t n)
{
  double e = 0, m = 1e-12;
  for (size_t i = 0; i < n; i++) {
    double d = fabs(got[i] - want[i]);
    if (!(d <= e))
      e = isnan(d) ? INFINITY : d;
    m = fmax(m, fabs(want[i]));
  }
  return e / m;
}


static inline void configs(fr_ri_heads_config *c, int *n)
{
  fr_ri_heads_config a = fr_ri_heads_defaults(HH, WW, CC, DIM, B);
  c[0] = a; /* the paper's defaults, the attention FC's forward on the GEMM on any device */
  c[0].att_fwd_gemm = 1;
  c[1] = a; /* every option flipped */
  c[1].detach_vproj = 0;
  c[1].project_normalized = 1;
  c[1].mse_sum_dim = 1;
  c[1].ui_terms = FR_RI_TERM_ID | FR_RI_TERM_MSE;
  c[1].dropout = 0.2f;
  c[1].att_fwd_gemm = -1; /* one workgroup per output (a GPU's default) */
  c[2] = a; /* CR-FIQA-style regression on the embedding, no attention */
  c[2].reg_input = FR_RI_REG_EMBEDDING;
  c[2].attention = 0;
  *n = 3;
}

#endif
