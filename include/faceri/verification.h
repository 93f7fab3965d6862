#ifndef FACERI_VERIFICATION_H
#define FACERI_VERIFICATION_H
/* 1:1 verification figures from labelled embeddings: every pair of items is
 * genuine (same label) or impostor, scored by cosine similarity.
 *
 * Conventions shared by every metric in faceri (metrics.h follows them too):
 * - scores are similarities: higher = more alike; a comparison is accepted
 *   ("same") iff score > threshold, so a score equal to the threshold is rejected;
 * - the threshold for a false-accept rate r over n impostor scores is the
 *   (floor(r * n) + 1)-th largest impostor score, so at most floor(r * n)
 *   impostors are accepted: the achieved FAR is <= r (ties at the threshold
 *   only lower it). When floor(r * n) >= n every score is accepted (threshold
 *   -inf);
 * - NaN scores are invalid input. */
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

/* TPR at each FAR in fars[0..n_far) (each in [0, 1]); tpr[k] and, when not
 * NULL, thresholds[k] receive the figure and the threshold used. */
int fr_verification_tpr_at_fars(const double *genuine, int64_t n_genuine, const double *impostor, int64_t n_impostor,
                                const double *fars, int n_far, double *tpr, double *thresholds, fr_error *err);

/* The threshold rule above, on impostor scores already sorted ascending. */
double fr_threshold_at_false_rate(const double *nonmated_sorted, int64_t n, double rate);

/* All pairs among n L2-normalised embeddings with integer labels. Keeps all
 * n(n-1)/2 scores in memory: meant for small sets (LFW-sized); large sets go
 * through a pair list (pairs_file.h). */
int fr_verification_all_pairs(const float *embeddings, const int *labels, int n, int dim, fr_verification *out,
                              fr_error *err);

#endif
