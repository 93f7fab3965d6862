/* Optimizers: hand-computed PyTorch numbers (torch.optim.SGD / AdamW and
 * clip_grad_norm_, values checked against torch 1.13), schedules by hand, the device
 * against the float reference over several steps with groups, freezing, clipping and
 * schedules (relative error <= 1e-6), bit-identical reruns, and a checkpoint resume
 * (export after 2 steps, import into a new optimizer, 1 more step) that gives the same
 * bytes as 3 uninterrupted steps. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "faceri/optimizer.h"
#include "test_util.h"

static fr_vk_context *ctx;
static unsigned rng_state = 99u;

static float frandf(void)
{
  rng_state = rng_state * 1664525u + 1013904223u;
  return ((float)(rng_state >> 8) / 16777216.0f) * 2.4f - 1.2f;
}

static void up(fr_vk_buffer *b, const float *f, size_t n)
{
  fr_error err = {0};
  CU_ASSERT_EQUAL(fr_vk_buffer_upload(ctx, b, 0, f, n * sizeof(float), &err), FR_OK);
}

static void down(const fr_vk_buffer *b, float *f, size_t n)
{
  fr_error err = {0};
  CU_ASSERT_EQUAL(fr_vk_buffer_download(ctx, b, 0, f, n * sizeof(float), &err), FR_OK);
}

static fr_vk_buffer buf_of(const float *f, size_t n)
{
  fr_error err = {0};
  fr_vk_buffer b = {0};
  CU_ASSERT_EQUAL_FATAL(fr_vk_buffer_create(ctx, n * sizeof(float), &b, &err), FR_OK);
  up(&b, f, n);
  return b;
}

static fr_vk_arg A(fr_vk_buffer *b) { return (fr_vk_arg){b, 0, 0}; }

#define OK(call)                                                                                                 \
  do {                                                                                                           \
    fr_error err_ = {0};                                                                                         \
    int rc_ = (call);                                                                                            \
    CU_ASSERT_EQUAL(rc_, FR_OK);                                                                                 \
    if (rc_)                                                                                                     \
      fprintf(stderr, "%s: %s\n", #call, err_.message);                                                         \
  } while (0)
#define E (&err_)

/* A recorded step sequence for an optimizer. */
static fr_vk_sequence *record(fr_optimizer *o)
{
  fr_error err = {0};
  fr_vk_sequence *seq = NULL;
  CU_ASSERT_EQUAL_FATAL(fr_vk_sequence_create(ctx, 0, &seq, &err), FR_OK);
  CU_ASSERT_EQUAL(fr_vk_sequence_begin(seq, &err), FR_OK);
  OK(fr_optimizer_record_step(o, seq, E));
  CU_ASSERT_EQUAL(fr_vk_sequence_end(seq, &err), FR_OK);
  return seq;
}

static void run_step(fr_optimizer *o, fr_vk_sequence *seq)
{
  fr_error err = {0};
  OK(fr_optimizer_begin_step(o, E));
  int rc = fr_vk_sequence_run(seq, &err);
  CU_ASSERT_EQUAL(rc, FR_OK);
  if (rc)
    fprintf(stderr, "run: %s\n", err.message);
}

static int near(double got, double want, double tol) { return fabs(got - want) <= tol * fmax(fabs(want), 1e-30); }

/* p = 1, g = 0.5 every step, lr 0.1, weight decay 0.01. By hand (torch 1.13 agrees):
 * SGD momentum 0.9:
 *   1: d = 0.5 + 0.01*1 = 0.51, buf = 0.51, p = 1 - 0.051 = 0.949
 *   2: d = 0.50949, buf = 0.9*0.51 + 0.50949 = 0.96849, p = 0.852151
 *   3: d = 0.50852151, buf = 1.38016251, p = 0.714134749
 * SGD momentum 0.9, Nesterov: d + 0.9 buf is applied:
 *   1: p = 1 - 0.1*(0.51 + 0.459) = 0.9031
 *   2: d = 0.509031, buf = 0.968031, p = 0.9031 - 0.1*1.3802589 = 0.76507411
 *   3: d = 0.50765074, buf = 1.37887864, p = 0.59020996
 * AdamW: with a constant gradient m^ = g and v^ = g^2, so each step is p (1 - lr wd)
 * - lr g / (|g| + eps):
 *   1: 0.999 - 0.1/(1 + 2e-8) = 0.899000002
 *   2: 0.899000002*0.999 - 0.1 = 0.798101004
 *   3: 0.798101004*0.999 - 0.1 = 0.697302903 */
static void test_pytorch_by_hand(void)
{
  struct {
    const char *name;
    fr_optimizer_config cfg;
    double want[3];
  } cases[3] = {
      {"SGD momentum 0.9", fr_optimizer_sgd_defaults(0.1f, 0.9f), {0.949, 0.852151, 0.714134749}},
      {"SGD Nesterov", fr_optimizer_sgd_defaults(0.1f, 0.9f), {0.9031, 0.76507411, 0.59020996}},
      {"AdamW", fr_optimizer_adamw_defaults(0.1f), {0.899000002, 0.798101004, 0.697302903}},
  };
  cases[1].cfg.nesterov = 1;
  for (int c = 0; c < 3; c++) {
    float one = 1.0f, half = 0.5f;
    fr_vk_buffer p = buf_of(&one, 1), g = buf_of(&half, 1);
    fr_optimizer *o = NULL;
    OK(fr_optimizer_create(ctx, &cases[c].cfg, &o, E));
    fr_param_group grp = {1.0f, 0.01f, 0};
    fr_error err = {0};
    CU_ASSERT_EQUAL(fr_optimizer_add_group(o, &grp, &err), 0);
    OK(fr_optimizer_add_param(o, 0, A(&p), A(&g), 1, E));
    fr_vk_sequence *seq = record(o);
    printf("\n    %-18s", cases[c].name);
    for (int s = 0; s < 3; s++) {
      run_step(o, seq);
      float got;
      down(&p, &got, 1);
      printf(" %.9f (want %.9f)", got, cases[c].want[s]);
      CU_ASSERT(near(got, cases[c].want[s], 1e-6));
    }
    fr_vk_sequence_destroy(seq);
    fr_optimizer_destroy(o);
    fr_vk_buffer_destroy(ctx, &p);
    fr_vk_buffer_destroy(ctx, &g);
  }
  /* clip_grad_norm_(max_norm 1) over a = [1, 2], b = [3] with grads [3, 0], [4]: norm 5,
   * coefficient 1 / (5 + 1e-6); plain SGD lr 0.1 gives a = [0.94, 2], b = [2.92]. */
  float a0[2] = {1, 2}, ga[2] = {3, 0}, b0 = 3, gb = 4;
  fr_vk_buffer pa = buf_of(a0, 2), pga = buf_of(ga, 2), pb = buf_of(&b0, 1), pgb = buf_of(&gb, 1);
  fr_optimizer_config cfg = fr_optimizer_sgd_defaults(0.1f, 0.0f);
  cfg.max_grad_norm = 1.0f;
  fr_optimizer *o = NULL;
  OK(fr_optimizer_create(ctx, &cfg, &o, E));
  fr_param_group grp = {1.0f, 0.0f, 0};
  fr_error err = {0};
  CU_ASSERT_EQUAL(fr_optimizer_add_group(o, &grp, &err), 0);
  OK(fr_optimizer_add_param(o, 0, A(&pa), A(&pga), 2, E));
  OK(fr_optimizer_add_param(o, 0, A(&pb), A(&pgb), 1, E));
  CU_ASSERT_EQUAL(fr_optimizer_state_size(o), 8 + 16 + 8 + 16); /* no momentum: no slots */
  fr_vk_sequence *seq = record(o);
  run_step(o, seq);
  float a[2], b, norm = 0;
  down(&pa, a, 2), down(&pb, &b, 1);
  OK(fr_optimizer_grad_norm(o, &norm, E));
  printf("\n    clip_grad_norm_ 1: norm %g, a = [%.7f, %.7f], b = %.7f", norm, a[0], a[1], b);
  CU_ASSERT(near(norm, 5.0, 1e-7) && near(a[0], 0.94, 1e-6) && a[1] == 2.0f && near(b, 2.92, 1e-6));
  fr_vk_sequence_destroy(seq);
  fr_optimizer_destroy(o);
  fr_vk_buffer *all[] = {&pa, &pga, &pb, &pgb};
  for (int i = 0; i < 4; i++)
    fr_vk_buffer_destroy(ctx, all[i]);
}

/* Warm-up 2 steps from 0.1 then cosine to step 10; step decay every 3 steps by 0.1. */
static void test_schedules(void)
{
  fr_lr_schedule cos_s = {.warmup_steps = 2, .warmup_start = 0.1, .decay = FR_LR_COSINE, .total_steps = 10};
  double want_cos[] = {0.1, 0.55, 1.0, 0.5 * (1 + cos(M_PI / 8)), 0.5 * (1 + cos(M_PI / 4)), 0.5 * (1 + cos(3 * M_PI / 8)),
                       0.5, 0.5 * (1 + cos(5 * M_PI / 8)), 0.5 * (1 + cos(3 * M_PI / 4)), 0.5 * (1 + cos(7 * M_PI / 8)),
                       0.0, 0.0};
  for (int t = 0; t < 12; t++)
    CU_ASSERT(fabs(fr_lr_schedule_factor(&cos_s, t) - want_cos[t]) < 1e-12);
  fr_lr_schedule step_s = {.decay = FR_LR_STEP, .step_size = 3, .gamma = 0.1};
  double want_step[] = {1, 1, 1, 0.1, 0.1, 0.1, 0.01};
  for (int t = 0; t < 7; t++)
    CU_ASSERT(fabs(fr_lr_schedule_factor(&step_s, t) - want_step[t]) < 1e-12);
  fr_lr_schedule warm_step = {.warmup_steps = 4, .warmup_start = 0.0, .decay = FR_LR_STEP, .step_size = 2,
                              .gamma = 0.5};
  double want_ws[] = {0, 0.25, 0.5, 0.75, 1, 1, 0.5, 0.5, 0.25};
  for (int t = 0; t < 9; t++)
    CU_ASSERT(fabs(fr_lr_schedule_factor(&warm_step, t) - want_ws[t]) < 1e-12);
  fr_lr_schedule none = {0};
  CU_ASSERT(fr_lr_schedule_factor(&none, 1000) == 1.0);
  /* the optimizer reports the scheduled lr times the group's multiplier */
  fr_optimizer_config cfg = fr_optimizer_sgd_defaults(0.2f, 0.9f);
  cfg.schedule = cos_s;
  fr_optimizer *o = NULL;
  OK(fr_optimizer_create(ctx, &cfg, &o, E));
  fr_param_group g = {0.5f, 0.0f, 0};
  fr_error err = {0};
  CU_ASSERT_EQUAL(fr_optimizer_add_group(o, &g, &err), 0);
  for (int s = 0; s < 3; s++)
    OK(fr_optimizer_begin_step(o, E));
  CU_ASSERT(fabs(fr_optimizer_group_lr(o, 0) - 0.2f * 0.5 * 1.0) < 1e-9);
  fr_optimizer_destroy(o);
}

/* ---- several random steps against the reference ---- */

#define NP 4
static const size_t sizes[NP] = {1000, 37, 4099, 64};
static const int groups_of[NP] = {0, 1, 2, 3};

typedef struct rig {
  fr_optimizer *o;
  fr_vk_buffer p[NP], g[NP];
  fr_vk_sequence *seq;
} rig;

static fr_param_group rig_groups[4] = {{1.0f, 1e-3f, 0}, {0.1f, 0.0f, 0}, {1.0f, 1e-3f, 1}, {0.0f, 0.0f, 0}};

static void rig_make(rig *r, const fr_optimizer_config *cfg, float *const *init)
{
  fr_error err = {0};
  OK(fr_optimizer_create(ctx, cfg, &r->o, E));
  for (int k = 0; k < 4; k++)
    CU_ASSERT_EQUAL(fr_optimizer_add_group(r->o, &rig_groups[k], &err), k);
  for (int k = 0; k < NP; k++) {
    r->p[k] = buf_of(init[k], sizes[k]);
    r->g[k] = buf_of(init[k], sizes[k]);
    /* the frozen group's gradient may be absent */
    fr_vk_arg grad = groups_of[k] == 2 ? (fr_vk_arg){0} : A(&r->g[k]);
    OK(fr_optimizer_add_param(r->o, groups_of[k], A(&r->p[k]), grad, sizes[k], E));
  }
  r->seq = record(r->o);
}

static void rig_free(rig *r)
{
  fr_vk_sequence_destroy(r->seq);
  fr_optimizer_destroy(r->o);
  for (int k = 0; k < NP; k++)
    fr_vk_buffer_destroy(ctx, &r->p[k]), fr_vk_buffer_destroy(ctx, &r->g[k]);
}

/* Step s's gradients: a fixed function of (s, k, i). */
static void grads_for(int s, int k, float *g)
{
  unsigned keep = rng_state;
  rng_state = 1000u * (unsigned)s + 17u * (unsigned)k + 5u;
  for (size_t i = 0; i < sizes[k]; i++)
    g[i] = frandf() * (k == 0 ? 3.0f : 1.0f);
  rng_state = keep;
}

static void rig_step(rig *r, int s)
{
  float *g = malloc(4099 * sizeof(float));
  for (int k = 0; k < NP; k++) {
    grads_for(s, k, g);
    up(&r->g[k], g, sizes[k]);
  }
  free(g);
  run_step(r->o, r->seq);
}

static float *rig_params(rig *r, size_t *n_out)
{
  size_t n = 0;
  for (int k = 0; k < NP; k++)
    n += sizes[k];
  float *all = malloc(n * sizeof(float)), *at = all;
  for (int k = 0; k < NP; k++, at += sizes[k - 1])
    down(&r->p[k], at, sizes[k]);
  *n_out = n;
  return all;
}

static float **init_params(void)
{
  float **init = malloc(NP * sizeof(float *));
  for (int k = 0; k < NP; k++) {
    init[k] = malloc(sizes[k] * sizeof(float));
    for (size_t i = 0; i < sizes[k]; i++)
      init[k][i] = frandf();
  }
  return init;
}

static void vs_reference(const char *name, fr_optimizer_config cfg, int steps)
{
  float **init = init_params();
  rig r = {0};
  rig_make(&r, &cfg, init);
  fr_ref_param rp[NP];
  for (int k = 0; k < NP; k++) {
    rp[k] = (fr_ref_param){groups_of[k], sizes[k], malloc(sizes[k] * 4), malloc(sizes[k] * 4),
                           calloc(sizes[k], 4), calloc(sizes[k], 4)};
    memcpy(rp[k].value, init[k], sizes[k] * 4);
  }
  double worst = 0, worst_norm = 0;
  for (int s = 1; s <= steps; s++) {
    rig_step(&r, s);
    for (int k = 0; k < NP; k++)
      grads_for(s, k, (float *)rp[k].grad);
    double ref_norm = fr_ref_optimizer_step(&cfg, rig_groups, rp, NP, s);
    if (cfg.max_grad_norm > 0) {
      float norm = 0;
      OK(fr_optimizer_grad_norm(r.o, &norm, E));
      worst_norm = fmax(worst_norm, fabs(norm - ref_norm) / ref_norm);
    }
    for (int k = 0; k < NP; k++) {
      float *got = malloc(sizes[k] * 4);
      down(&r.p[k], got, sizes[k]);
      double max_err = 0, max_ref = 1e-30;
      for (size_t i = 0; i < sizes[k]; i++) {
        max_err = fmax(max_err, fabs((double)got[i] - rp[k].value[i]));
        max_ref = fmax(max_ref, fabs(rp[k].value[i]));
      }
      worst = fmax(worst, max_err / max_ref);
      /* frozen (group 2) and lr_mult 0 (group 3) tensors never move */
      if (groups_of[k] >= 2)
        CU_ASSERT(memcmp(got, init[k], sizes[k] * 4) == 0);
      free(got);
    }
  }
  printf("\n    %-40s %d steps: params rel err %.2e, clip norm rel err %.2e", name, steps, worst, worst_norm);
  CU_ASSERT(worst <= 1e-6);
  CU_ASSERT(worst_norm <= 1e-6);
  /* the frozen tensors' state stays zero */
  size_t size = fr_optimizer_state_size(r.o);
  unsigned char *blob = malloc(size);
  OK(fr_optimizer_export(r.o, blob, size, E));
  int64_t steps_in_blob;
  memcpy(&steps_in_blob, blob + 24, 8);
  CU_ASSERT_EQUAL(steps_in_blob, steps);
  int slots = cfg.kind == FR_OPTIM_ADAMW ? 2 : cfg.momentum != 0 ? 1 : 0;
  size_t at = 32 + 8 * NP, frozen_nonzero = 0;
  for (int k = 0; k < NP; k++)
    for (int s = 0; s < slots; s++, at += sizes[k] * 4)
      for (size_t i = 0; groups_of[k] >= 2 && i < sizes[k] * 4; i++)
        frozen_nonzero += blob[at + i] != 0;
  CU_ASSERT_EQUAL(frozen_nonzero, 0);
  CU_ASSERT_EQUAL(at, size);
  free(blob);
  for (int k = 0; k < NP; k++)
    free(rp[k].value), free((void *)rp[k].grad), free(rp[k].s1), free(rp[k].s2), free(init[k]);
  free(init);
  rig_free(&r);
}

static void test_vs_reference(void)
{
  fr_optimizer_config sgd = fr_optimizer_sgd_defaults(0.05f, 0.9f);
  sgd.schedule = (fr_lr_schedule){.warmup_steps = 2, .warmup_start = 0.2, .decay = FR_LR_COSINE, .total_steps = 8};
  vs_reference("SGD momentum, warm-up + cosine", sgd, 6);
  sgd.nesterov = 1, sgd.max_grad_norm = 5.0f;
  vs_reference("SGD Nesterov, clip 5", sgd, 5);
  fr_optimizer_config damp = fr_optimizer_sgd_defaults(0.05f, 0.5f);
  damp.dampening = 0.3f;
  damp.schedule = (fr_lr_schedule){.decay = FR_LR_STEP, .step_size = 2, .gamma = 0.5};
  vs_reference("SGD dampening 0.3, step decay", damp, 5);
  vs_reference("SGD without momentum", fr_optimizer_sgd_defaults(0.1f, 0.0f), 3);
  fr_optimizer_config adamw = fr_optimizer_adamw_defaults(1e-2f);
  adamw.max_grad_norm = 2.0f;
  adamw.schedule = (fr_lr_schedule){.warmup_steps = 3, .warmup_start = 0.0};
  vs_reference("AdamW, clip 2, warm-up from 0", adamw, 6);
}

/* Two identical runs give the same bytes; a run resumed from exported state after 2
 * steps matches 3 uninterrupted steps byte for byte. */
static void test_determinism_and_resume(void)
{
  fr_optimizer_config cfg = fr_optimizer_adamw_defaults(1e-2f);
  cfg.max_grad_norm = 3.0f;
  float **init = init_params();
  rig a = {0}, b = {0}, c = {0};
  rig_make(&a, &cfg, init);
  rig_make(&b, &cfg, init);
  for (int s = 1; s <= 3; s++)
    rig_step(&a, s), rig_step(&b, s);
  size_t n;
  float *pa = rig_params(&a, &n), *pb = rig_params(&b, &n);
  int same = memcmp(pa, pb, n * 4) == 0;
  /* resume: b's first two steps are replayed in c, exported, imported into d */
  rig_make(&c, &cfg, init);
  rig_step(&c, 1), rig_step(&c, 2);
  size_t size = fr_optimizer_state_size(c.o);
  unsigned char *blob = malloc(size);
  OK(fr_optimizer_export(c.o, blob, size, E));
  float *pc = rig_params(&c, &n);
  rig d = {0};
  float *split[NP], *at = pc;
  for (int k = 0; k < NP; k++, at += sizes[k - 1])
    split[k] = at;
  rig_make(&d, &cfg, split);
  OK(fr_optimizer_import(d.o, blob, size, E));
  CU_ASSERT_EQUAL(fr_optimizer_steps(d.o), 2);
  rig_step(&d, 3);
  float *pd = rig_params(&d, &n);
  int resumed = memcmp(pa, pd, n * 4) == 0;
  printf("\n    AdamW + clip, 3 steps twice: %s; resumed from a 2-step checkpoint: %s", same ? "bit-identical" : "DIFFER",
         resumed ? "bit-identical" : "DIFFER");
  CU_ASSERT(same);
  CU_ASSERT(resumed);

  /* hostile blobs are refused with a reason */
  fr_error err = {0};
  CU_ASSERT_EQUAL(fr_optimizer_import(d.o, blob, size - 1, &err), FR_ERR_FORMAT);
  blob[0] ^= 1;
  CU_ASSERT_EQUAL(fr_optimizer_import(d.o, blob, size, &err), FR_ERR_FORMAT);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "header"));
  blob[0] ^= 1;
  blob[32] ^= 1; /* first param's element count */
  CU_ASSERT_EQUAL(fr_optimizer_import(d.o, blob, size, &err), FR_ERR_FORMAT);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "elements"));
  CU_ASSERT_EQUAL(fr_optimizer_export(d.o, blob, size - 1, &err), FR_ERR_INVALID);
  fr_optimizer *sgd = NULL;
  fr_optimizer_config sc = fr_optimizer_sgd_defaults(0.1f, 0.9f);
  OK(fr_optimizer_create(ctx, &sc, &sgd, E));
  blob[32] ^= 1;
  CU_ASSERT_EQUAL(fr_optimizer_import(sgd, blob, size, &err), FR_ERR_FORMAT);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "kind"));
  fr_optimizer_destroy(sgd);

  free(blob), free(pa), free(pb), free(pc), free(pd);
  for (int k = 0; k < NP; k++)
    free(init[k]);
  free(init);
  rig_free(&a), rig_free(&b), rig_free(&c), rig_free(&d);
}

static void test_bad_config(void)
{
  fr_error err = {0};
  fr_optimizer *o = NULL;
  fr_optimizer_config c = fr_optimizer_sgd_defaults(0.1f, 0.0f);
  c.nesterov = 1;
  CU_ASSERT_EQUAL(fr_optimizer_create(ctx, &c, &o, &err), FR_ERR_INVALID);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "Nesterov"));
  c = fr_optimizer_adamw_defaults(1e-3f);
  c.beta2 = 1.0f;
  CU_ASSERT_EQUAL(fr_optimizer_create(ctx, &c, &o, &err), FR_ERR_INVALID);
  c = fr_optimizer_adamw_defaults(NAN);
  CU_ASSERT_EQUAL(fr_optimizer_create(ctx, &c, &o, &err), FR_ERR_INVALID);
  c = fr_optimizer_adamw_defaults(1e-3f);
  c.schedule = (fr_lr_schedule){.decay = FR_LR_COSINE, .warmup_steps = 5, .total_steps = 5};
  CU_ASSERT_EQUAL(fr_optimizer_create(ctx, &c, &o, &err), FR_ERR_INVALID);
  CU_ASSERT_PTR_NULL(o);
  c = fr_optimizer_adamw_defaults(1e-3f);
  OK(fr_optimizer_create(ctx, &c, &o, E));
  fr_param_group g = {-1.0f, 0.0f, 0};
  CU_ASSERT(fr_optimizer_add_group(o, &g, &err) < 0);
  g.lr_mult = 1.0f;
  CU_ASSERT_EQUAL(fr_optimizer_add_group(o, &g, &err), 0);
  float v[4] = {0};
  fr_vk_buffer b = buf_of(v, 4);
  CU_ASSERT_EQUAL(fr_optimizer_add_param(o, 1, A(&b), A(&b), 4, &err), FR_ERR_INVALID);
  CU_ASSERT_EQUAL(fr_optimizer_add_param(o, 0, A(&b), A(&b), 5, &err), FR_ERR_INVALID);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "value"));
  CU_ASSERT_EQUAL(fr_optimizer_add_param(o, 0, A(&b), (fr_vk_arg){0}, 4, &err), FR_ERR_INVALID);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "gradient"));
  float norm;
  CU_ASSERT_EQUAL(fr_optimizer_grad_norm(o, &norm, &err), FR_ERR_INVALID);
  fr_optimizer_destroy(o);
  fr_vk_buffer_destroy(ctx, &b);
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
  CU_pSuite s = CU_add_suite("optimizer", NULL, NULL);
  CU_add_test(s, "PyTorch semantics by hand (SGD, Nesterov, AdamW, clipping)", test_pytorch_by_hand);
  CU_add_test(s, "learning-rate schedules", test_schedules);
  CU_add_test(s, "device vs reference: groups, freezing, clipping, schedules", test_vs_reference);
  CU_add_test(s, "determinism and checkpoint resume", test_determinism_and_resume);
  CU_add_test(s, "bad configurations", test_bad_config);
  CU_add_test(s, "no validation messages", test_no_validation_messages);
  int rc = test_run_all();
  fr_vk_context_destroy(ctx);
  return rc;
}
