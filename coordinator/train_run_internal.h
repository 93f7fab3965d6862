#ifndef FACERI_TRAIN_RUN_INTERNAL_H
#define FACERI_TRAIN_RUN_INTERNAL_H
/* Shared by train_run.c (data, trainer, epochs, checkpoints) and train_run_ri.c (the
 * RI heads' part of a run: UI rows, degradation, mu/sigma, logs, checkpoint tensors). */
#include "faceri/model.h"
#include "faceri/train_run.h"
#include "faceri/trainer.h"
#include "faceri/vk_context.h"

#define RI_TENSOR_ROOT "heads/ri/"
#define RI_CONFIG_TENSOR "heads/ri/config"
#define RI_UI_STATS_TENSOR "heads/ri/ui_stats"

typedef struct run_state {
  const fr_train_run_options *o;
  fr_model model;       /* the initial (or checkpointed) model; checkpoints export into it */
  fr_train_data data;
  fr_vk_context *ctx;
  fr_trainer *trainer;
  char config[4096];
  float *loss;          /* one per step from 0, capacity loss_cap */
  int64_t loss_cap;
  int64_t step, spe, total;
  float *images, *head;
  int32_t *labels, *order;
  uint8_t *flips;
  /* --ri */
  fr_train_data ui;
  int U;                /* UI rows per batch (after the o->batch labelled ones) */
  int32_t *flags, *ui_order;
  int64_t ui_order_epoch;
  uint8_t *tmp8;        /* one 8-bit image */
  fr_ri_heads_config heads;
  float ui_stats[3];    /* UI samples seen (capped at ui_k), mean and variance of their xi^ */
  double ep_terms[5];   /* sums over this epoch's steps */
  int ep_steps;
  float *ep_xi_hat, *ep_xi, *row_xi_hat, *row_xi;
  int ep_rows, ep_cap, ep_ui_rows;
  double ep_ui_sum;
} run_state;

/* train_run_ri.c */
int fr_run_ri_prepare(run_state *r, fr_error *err);            /* after the data: UI set, buffers, heads config */
void fr_run_ri_config(const run_state *r, char *out, size_t n); /* the resume-relevant RI options as JSON fields */
int fr_run_ri_restore(run_state *r, fr_error *err);             /* --resume: heads' tensors and UI stats */
/* Rows [B, B + U) and the degradation of rows [0, B) for step r->step. */
int fr_run_ri_compose(run_state *r, fr_error *err);
void fr_run_ri_mu_sigma(const run_state *r, float *mu, float *sigma);
int fr_run_ri_after_step(run_state *r, const fr_trainer_losses *l, fr_error *err);
void fr_run_ri_epoch_end(run_state *r, fr_train_run_summary *sum, int64_t epoch);
int fr_run_ri_checkpoint(run_state *r, fr_error *err);
/* --degrade: replaces the chosen rows of the composed batch by degraded copies (with or
 * without the RI heads; seeded by (seed, step, row) so --resume draws the same). */
int fr_run_degrade(run_state *r, fr_error *err);
void fr_run_ri_free(run_state *r);
/* Spearman's rho of n pairs (average ranks for ties); NaN when n < 3 or a side is constant. */
double fr_run_ri_spearman(const double *a, const double *b, int n);

#endif
