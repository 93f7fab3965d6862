#ifndef FACERI_VERIFICATION_H
#define FACERI_VERIFICATION_H
/* 1:1 verification figures from labelled embeddings: every pair of items is
 * genuine (same label) or impostor, scored by cosine similarity. */
#include <stdint.h>

#include "faceri/error.h"

typedef struct fr_verification {
  int64_t genuine, impostor;
  double accuracy;        /* balanced accuracy (TPR + TNR) / 2 at the best threshold */
  double threshold;       /* that threshold: score > threshold means "same" */
  double tpr_at_far_1e3;  /* TPR where at most 0.1% of impostor pairs are accepted */
  double tpr_at_far_1e4;
  double genuine_mean, impostor_mean;
} fr_verification;

/* From raw score lists (higher = more similar). */
int fr_verification_from_scores(const double *genuine, int64_t n_genuine, const double *impostor, int64_t n_impostor,
                                fr_verification *out, fr_error *err);

/* All pairs among n L2-normalised embeddings with integer labels. */
int fr_verification_all_pairs(const float *embeddings, const int *labels, int n, int dim, fr_verification *out,
                              fr_error *err);

#endif
