/* The RI heads' part of a `faceri train --ri` run (see faceri/train_run.h): the UI
 * set and its rows in every batch, the degradation of the labelled rows, mu/sigma of
 * the ID loss, the per-epoch log of the terms and of xi^, and the heads' tensors in
 * the checkpoint. Everything random is a function of (seed, step, row), so a resumed
 * run composes the same batches. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "faceri/rng.h"
#include "faceri/log.h"
#include "faceri/ri.h"
#include "faceri/ri_infer.h"
#include "train_run_internal.h"

static uint64_t draw(const run_state *r, uint64_t what, int64_t step, int row)
{
  return fr_mix64(fr_mix64(((uint64_t)r->o->seed << 32) ^ what) ^ ((uint64_t)step * 65536u + (uint64_t)row));
}

int fr_run_ri_prepare(run_state *r, fr_error *err)
{
  const fr_train_run_options *o = r->o;
  if (!r->model.ui_centre)
    return fr_error_set(err, FR_ERR_INVALID,
                        "--ri: %s has no UI centre (needed for xi and v'): add one with faceri model set-ui MODEL "
                        "UI_INPUT... first",
                        o->resume ? o->output : (o->init ? o->init : fr_model_default_path()));
  r->heads = o->heads;
  if (o->n_ui_inputs > 0) {
    fr_train_data_options d = {0};
    d.pp = o->data.pp;
    d.pp.has_crop = 0;
    d.pp.input_w = r->model.input_w;
    d.pp.input_h = r->model.input_h;
    d.unlabelled = 1;
    d.head_box = o->ui_region >= 0 ? o->ui_region : !strncmp(r->model.ui.face_region, "head", 4);
    int rc = fr_train_data_load((const char *const *)o->ui_inputs, o->n_ui_inputs, &d, &r->ui, err);
    if (rc) {
      fr_error_prefix(err, "--ui");
      return rc;
    }
    r->U = o->ui_per_batch > 0 ? o->ui_per_batch : (o->batch / 4 > 0 ? o->batch / 4 : 1);
    fr_info("UI faces: %d images (%s), %d per batch", r->ui.n_images, d.head_box ? "head box" : "whole image", r->U);
  }
  size_t img = (size_t)r->model.input_h * r->model.input_w * 3;
  int rows = o->batch + r->U;
  r->flags = calloc((size_t)rows, sizeof(int32_t));
  r->ui_order = malloc((size_t)(r->ui.n_images > 0 ? r->ui.n_images : 1) * sizeof(int32_t));
  r->tmp8 = malloc(img);
  r->row_xi_hat = malloc((size_t)rows * sizeof(float));
  r->row_xi = malloc((size_t)rows * sizeof(float));
  r->ep_cap = (int)(r->spe * o->batch);
  r->ep_xi_hat = malloc((size_t)r->ep_cap * sizeof(float));
  r->ep_xi = malloc((size_t)r->ep_cap * sizeof(float));
  r->ui_order_epoch = -1;
  if (!r->flags || !r->ui_order || !r->tmp8 || !r->row_xi_hat || !r->row_xi || !r->ep_xi_hat || !r->ep_xi)
    return fr_error_set(err, FR_ERR_NOMEM, "--ri: out of memory");
  for (int b = o->batch; b < rows; b++)
    r->flags[b] = 1;
  return FR_OK;
}

void fr_run_ri_config(const run_state *r, char *out, size_t n)
{
  const fr_train_run_options *o = r->o;
  const fr_ri_heads_config *k = &r->heads;
  const fr_degrade_options *g = &o->degrade_opts;
  snprintf(out, n,
           ",\"ri\":{\"alpha\":%.9g,\"beta\":%.9g,\"gamma\":%.9g,\"tau\":%.9g,\"dropout\":%.9g,\"reg_input\":\"%s\","
           "\"attention\":%d,\"detach_vproj\":%d,\"project_normalized\":%d,\"lr_mult\":%.9g,\"ui\":\"%s\","
           "\"ui_images\":%d,\"ui_per_batch\":%d,\"mu_sigma\":\"%s\",\"ui_k\":%d,\"degrade\":%d,\"degrade_prob\":%.9g,"
           "\"degrade_sizes\":\"%d:%d\"}",
           (double)k->alpha, (double)k->beta, (double)k->gamma, (double)k->tau, (double)k->dropout,
           k->reg_input == FR_RI_REG_EMBEDDING ? "embedding" : "features", k->attention, k->detach_vproj,
           k->project_normalized, (double)o->ri_lr_mult, r->ui.n_images ? r->ui.fingerprint : "", r->ui.n_images, r->U,
           o->mu_sigma_estimate ? "estimate" : "n01", o->ui_k, o->degrade, (double)o->degrade_prob,
           g->min_size, g->max_size);
}

int fr_run_ri_restore(run_state *r, fr_error *err)
{
  int rc = fr_ri_heads_load_from_model(fr_trainer_ri_heads(r->trainer), &r->model, err);
  const fr_model_tensor *s = fr_model_find_tensor(&r->model, RI_UI_STATS_TENSOR);
  if (!rc && (!s || s->rank != 1 || s->dims[0] != 3))
    rc = fr_error_set(err, FR_ERR_INVALID, "no /%s of 3 values", RI_UI_STATS_TENSOR);
  if (!rc)
    memcpy(r->ui_stats, s->data, sizeof(r->ui_stats));
  if (rc)
    fr_error_prefix(err, "--resume: %s", r->o->output);
  return rc;
}

int fr_run_degrade(run_state *r, fr_error *err)
{
  const fr_train_run_options *o = r->o;
  size_t img = (size_t)r->model.input_h * r->model.input_w * 3;
  int W = r->model.input_w, H = r->model.input_h, B = o->batch;
  int64_t pos = r->step % r->spe;
  if (!o->degrade)
    return FR_OK;
  if (!r->tmp8 && !(r->tmp8 = malloc(img)))
    return fr_error_set(err, FR_ERR_NOMEM, "--degrade: out of memory for a %dx%d image", W, H);
  for (int b = 0; b < B; b++) {
    if (fr_uniform01(draw(r, 0xde6, r->step, b)) >= o->degrade_prob)
      continue;
    int32_t idx = r->order[pos * B + b];
    int rc = fr_degrade_rgb8(r->data.pixels + (size_t)idx * img, W, H, draw(r, 0xde7, r->step, b), &o->degrade_opts,
                             r->tmp8, NULL, err);
    if (rc)
      return rc;
    fr_train_data_to_input(r->tmp8, W, H, r->model.mean, r->model.std, r->flips[b], r->images + (size_t)b * img);
  }
  return FR_OK;
}

int fr_run_ri_compose(run_state *r, fr_error *err)
{
  const fr_train_run_options *o = r->o;
  size_t img = (size_t)r->model.input_h * r->model.input_w * 3;
  int W = r->model.input_w, H = r->model.input_h, B = o->batch;
  (void)err;
  for (int j = 0; j < r->U; j++) {
    int64_t k = r->step * r->U + j, e = k / r->ui.n_images;
    if (e != r->ui_order_epoch) {
      fr_train_data_epoch_order(&r->ui, (uint64_t)o->seed ^ 0x5549u, e, r->ui_order);
      r->ui_order_epoch = e;
    }
    int32_t idx = r->ui_order[k % r->ui.n_images];
    fr_train_data_to_input(r->ui.pixels + (size_t)idx * img, W, H, r->model.mean, r->model.std, 0,
                           r->images + (size_t)(B + j) * img);
    r->labels[B + j] = -1;
  }
  return FR_OK;
}

void fr_run_ri_mu_sigma(const run_state *r, float *mu, float *sigma)
{
  *mu = 0.0f;
  *sigma = 1.0f;
  if (r->o->mu_sigma_estimate && r->ui_stats[0] >= 2.0f) {
    *mu = r->ui_stats[1];
    *sigma = sqrtf(r->ui_stats[2]) > 1e-3f ? sqrtf(r->ui_stats[2]) : 1e-3f;
  }
}

int fr_run_ri_after_step(run_state *r, const fr_trainer_losses *l, fr_error *err)
{
  int B = r->o->batch, rows = B + r->U;
  double t[5] = {l->arcface, l->ri.l1, l->ri.id, l->ri.mse, l->total};
  for (int k = 0; k < 5; k++)
    r->ep_terms[k] += t[k];
  r->ep_steps++;
  int rc = fr_ri_heads_read_outputs(fr_trainer_ri_heads(r->trainer), rows, r->row_xi_hat, NULL, err);
  if (!rc)
    rc = fr_trainer_read_xi(r->trainer, rows, r->row_xi, err);
  for (int b = 0; !rc && b < B && r->ep_rows < r->ep_cap; b++, r->ep_rows++) {
    r->ep_xi_hat[r->ep_rows] = r->row_xi_hat[b];
    r->ep_xi[r->ep_rows] = r->row_xi[b];
  }
  for (int b = B; !rc && b < rows; b++)
    r->ep_ui_sum += r->row_xi_hat[b], r->ep_ui_rows++;
  /* Eq. 6's mu/sigma over the last ~K UI samples: a running mean while fewer than K
   * were seen, then each batch replaces its share n/K (kept in float: a checkpoint
   * stores exactly this state, so --resume continues it bit for bit). */
  int n = l->ri.n_ui;
  if (!rc && n > 0) {
    double cnt = r->ui_stats[0], m0 = r->ui_stats[1], v0 = r->ui_stats[2];
    double K = r->o->ui_k > 0 ? r->o->ui_k : 5000, tot = cnt + n < K ? cnt + n : K, w = n / tot;
    double bm = l->ri.ui_mean, bv = n > 1 ? (double)l->ri.ui_var * (n - 1) / n : 0.0;
    double m1 = (1 - w) * m0 + w * bm;
    double v1 = (1 - w) * (v0 + (m0 - m1) * (m0 - m1)) + w * (bv + (bm - m1) * (bm - m1));
    r->ui_stats[0] = (float)tot, r->ui_stats[1] = (float)m1, r->ui_stats[2] = (float)v1;
  }
  return rc;
}

/* Average ranks (ties share their mean rank). */
static void ranks(const double *x, int n, double *rk, int *idx)
{
  for (int i = 0; i < n; i++)
    idx[i] = i;
  for (int i = 1; i < n; i++) { /* insertion sort: an epoch's rows, once per epoch */
    int v = idx[i], j = i - 1;
    while (j >= 0 && x[idx[j]] > x[v])
      idx[j + 1] = idx[j], j--;
    idx[j + 1] = v;
  }
  for (int i = 0; i < n;) {
    int j = i;
    while (j + 1 < n && x[idx[j + 1]] == x[idx[i]])
      j++;
    for (int k = i; k <= j; k++)
      rk[idx[k]] = (i + j) / 2.0 + 1;
    i = j + 1;
  }
}

double fr_run_ri_spearman(const double *a, const double *b, int n)
{
  double *ra = malloc((size_t)(n > 0 ? n : 1) * sizeof(double)), *rb = malloc((size_t)(n > 0 ? n : 1) * sizeof(double));
  int *idx = malloc((size_t)(n > 0 ? n : 1) * sizeof(int));
  double rho = NAN;
  if (ra && rb && idx && n > 2) {
    ranks(a, n, ra, idx);
    ranks(b, n, rb, idx);
    double ma = 0, mb = 0, sab = 0, saa = 0, sbb = 0;
    for (int i = 0; i < n; i++)
      ma += ra[i] / n, mb += rb[i] / n;
    for (int i = 0; i < n; i++)
      sab += (ra[i] - ma) * (rb[i] - mb), saa += (ra[i] - ma) * (ra[i] - ma), sbb += (rb[i] - mb) * (rb[i] - mb);
    rho = saa > 0 && sbb > 0 ? sab / sqrt(saa * sbb) : NAN;
  }
  free(ra);
  free(rb);
  free(idx);
  return rho;
}

void fr_run_ri_epoch_end(run_state *r, fr_train_run_summary *sum, int64_t epoch)
{
  double t[5];
  for (int k = 0; k < 5; k++)
    t[k] = r->ep_steps ? r->ep_terms[k] / r->ep_steps : NAN;
  int n = 0;
  double *a = calloc((size_t)(r->ep_rows > 0 ? r->ep_rows : 1), sizeof(double));
  double *b = calloc((size_t)(r->ep_rows > 0 ? r->ep_rows : 1), sizeof(double));
  for (int i = 0; a && b && i < r->ep_rows; i++)
    if (isfinite(r->ep_xi[i]) && isfinite(r->ep_xi_hat[i]))
      a[n] = r->ep_xi_hat[i], b[n] = r->ep_xi[i], n++;
  double rho = a && b ? fr_run_ri_spearman(a, b, n) : NAN;
  fr_ri_stats sh = {0}, sx = {0};
  fr_error e = {0};
  if (a && b && n > 0) {
    fr_ri_stats_of(a, n, &sh, &e);
    fr_ri_stats_of(b, n, &sx, &e);
  }
  fr_info("epoch %lld terms: arcface %.5f, L1 %.5f, ID %.5f, MSE %.6f, total %.5f (alpha %g, beta %g, gamma %g)",
          (long long)epoch + 1, t[0], t[1], t[2], t[3], t[4], (double)r->heads.alpha, (double)r->heads.beta,
          (double)r->heads.gamma);
  fr_info("epoch %lld xi^: mean %.4g, p5 %.4g, p50 %.4g, p95 %.4g (xi: p5 %.4g, p50 %.4g, p95 %.4g; Spearman %.3f "
          "over %d rows); UI rows' xi^ mean %.4g (%d rows); mu/sigma %.4g/%.4g over %.0f UI samples",
          (long long)epoch + 1, sh.mean, sh.p5, sh.p50, sh.p95, sx.p5, sx.p50, sx.p95, rho, n,
          r->ep_ui_rows ? r->ep_ui_sum / r->ep_ui_rows : NAN, r->ep_ui_rows, (double)r->ui_stats[1],
          sqrt((double)r->ui_stats[2]), (double)r->ui_stats[0]);
  if (sum->epochs_done == 1)
    memcpy(sum->first_terms, t, sizeof(t));
  memcpy(sum->last_terms, t, sizeof(t));
  sum->last_spearman = rho;
  free(a);
  free(b);
  memset(r->ep_terms, 0, sizeof(r->ep_terms));
  r->ep_steps = r->ep_rows = r->ep_ui_rows = 0;
  r->ep_ui_sum = 0;
}

int fr_run_ri_checkpoint(run_state *r, fr_error *err)
{
  int64_t three = 3;
  int rc = fr_ri_heads_store_in_model(fr_trainer_ri_heads(r->trainer), fr_trainer_ri_feature_layer(r->trainer),
                                      &r->model, err);
  if (!rc)
    rc = fr_model_set_tensor(&r->model, RI_UI_STATS_TENSOR, 1, &three, r->ui_stats, err);
  return rc;
}

void fr_run_ri_free(run_state *r)
{
  fr_train_data_free(&r->ui);
  free(r->flags);
  free(r->ui_order);
  free(r->tmp8);
  free(r->row_xi_hat);
  free(r->row_xi);
  free(r->ep_xi_hat);
  free(r->ep_xi);
}
