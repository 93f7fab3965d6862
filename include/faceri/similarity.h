#ifndef FACERI_SIMILARITY_H
#define FACERI_SIMILARITY_H
/* Blocked similarity of two sets of L2-normalised float rows: the score tile
 * C[i, j] = <a_i, b_j> behind duplicate search (audit) and gallery search.
 *
 * CPU (common/similarity_cpu.c): float products summed in 8 interleaved float
 * lanes, so the compiler vectorises it without -ffast-math; the result differs
 * from a double dot product by at most ~dim * 2^-24 (a few 1e-6 for 192-d unit
 * rows). fr_similarity_ref is the naive double reference the tests (and the
 * device kernel's test) compare against.
 *
 * Top-k: fr_topk_* keeps the k best (score, index) per row, ties broken by the
 * lower index, so CPU and device paths give the same candidate lists. */
#include <stdint.h>

#include "faceri/error.h"

/* c[i * ldc + j] = <a_i, b_j>, a [na, dim], b [nb, dim] row-major. */
void fr_similarity_cpu(const float *a, int64_t na, const float *b, int64_t nb, int dim, float *c, int64_t ldc);
/* The same in double, one dot product at a time (the reference). */
void fr_similarity_ref(const float *a, int64_t na, const float *b, int64_t nb, int dim, double *c, int64_t ldc);

/* k best per row: scores[row * k + r], index[row * k + r] sorted best first;
 * empty slots have score -inf and index -1. */
typedef struct fr_topk {
  int64_t rows;
  int k;
  float *score;
  int64_t *index;
} fr_topk;

int fr_topk_init(fr_topk *t, int64_t rows, int k, fr_error *err);
void fr_topk_free(fr_topk *t);
/* Merges a tile of scores for rows [row0, row0 + n) against columns [col0, col0 + m)
 * (tile[i * ld + j]); NaN scores are never kept. */
void fr_topk_merge(fr_topk *t, int64_t row0, int64_t n, int64_t col0, int64_t m, const float *tile, int64_t ld);

#endif
