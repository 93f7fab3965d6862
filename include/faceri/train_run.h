#ifndef FACERI_TRAIN_RUN_H
#define FACERI_TRAIN_RUN_H
/* One training run as `faceri train` does it: read the data (train_data.h), set up
 * the trainer (trainer.h) from the initial model or from a checkpoint, run epochs of
 * seeded batches, and checkpoint into the output model file (docs/MODEL_FORMAT.md
 * §4.2-4.3) at every epoch end, every `checkpoint_every` steps and at the end.
 *
 * Exact resume: the data order depends only on (seed, epoch), flips on (seed, step),
 * the device step is deterministic, and the checkpoint holds the parameters, the
 * head, the optimizer state and the step. A resumed run therefore produces the same
 * losses and the same weights, bit for bit, as one that never stopped. The
 * checkpoint's config (data fingerprint and every option that changes the numbers)
 * must match the resuming run's; only --epochs and --max-steps may differ. */
#include <stdint.h>
#include <stdio.h>

#include "faceri/degrade.h"
#include "faceri/error.h"
#include "faceri/optimizer.h"
#include "faceri/ri_heads.h"
#include "faceri/train_data.h"
#include "faceri/train_loss.h"

typedef struct fr_train_run_options {
  const char *const *inputs;
  int n_inputs;
  const char *output, *init, *device;
  int resume, json;
  fr_loss_kind loss;
  float s, m;
  int s_given, m_given;
  int epochs;
  int64_t max_steps;        /* 0: none */
  int batch;
  fr_optim_kind optim;
  float lr, momentum, weight_decay, max_grad_norm, head_lr_mult;
  int cosine, warmup;
  int train_from;
  int head_init_mean;
  int head_init_model;        /* the --init model's /prototypes (same classes), not the means */
  int flip;
  uint32_t seed;
  int64_t checkpoint_every; /* 0: epoch ends only */
  fr_train_data_options data; /* pp.input_w/h are taken from the model */
  /* --align: every image aligned once before the epochs (data.align_opts; an aligner
   * on the run's device from mtcnn_dir, NULL: fr_mtcnn_default_dir()). */
  int align;
  const char *mtcnn_dir;
  /* The paper's RI heads and loss (--ri; docs/RI_HEADS.md): heads config from
   * fr_ri_heads_defaults with the options below; the model must have a UI centre. */
  int ri;
  fr_ri_heads_config heads;   /* alpha, beta, gamma, tau, dropout, reg_input, detach_vproj, ... */
  float ri_lr_mult;           /* the heads' learning-rate multiplier (1) */
  const char **ui_inputs;     /* --ui: unrecognisable faces mixed into every batch */
  int n_ui_inputs;
  int ui_per_batch;           /* UI rows added to each batch (0: batch / 4, at least 1) */
  int ui_region;              /* -1: the model's UI face region (head box or whole); 0 whole; 1 head box */
  int mu_sigma_estimate;      /* 0: N(0, 1); 1: mean/std of the UI rows' xi^ over the last ui_k samples */
  int ui_k;                   /* 5000 */
  int degrade;                /* --degrade: very-low-resolution augmentation of the labelled rows */
  float degrade_prob;         /* per image (0.5) */
  fr_degrade_options degrade_opts;
} fr_train_run_options;

fr_train_run_options fr_train_run_defaults(void);

typedef struct fr_train_run_summary {
  int phase_setup;          /* the error (if any) came before training started */
  fr_train_data data;       /* counts only (the arrays are freed) */
  int n_images, n_classes;
  int64_t steps_per_epoch, start_step, end_step;
  double first_loss, last_loss;        /* the first and last step of this invocation */
  double first_epoch_loss, last_epoch_loss; /* mean over the first / last epoch completed in this invocation */
  int epochs_done;
  double seconds, images_per_s;
  uint64_t peak_device_bytes;
  char device[256];
  /* --ri: the mean of each term (arcface, L1, ID, MSE, total) over the first and last
   * epoch completed in this invocation, and Spearman's rho between xi^ and xi over the
   * labelled rows of the last one. */
  int ri, n_ui_images;
  double first_terms[5], last_terms[5], last_spearman;
} fr_train_run_summary;

int fr_train_run(const fr_train_run_options *o, fr_train_run_summary *sum, fr_error *err);
/* One JSON object (the run's summary, or its error) on out. */
void fr_train_run_print_summary(const fr_train_run_options *o, const fr_train_run_summary *sum, int rc,
                                const char *error, FILE *out);

#endif
