#ifndef FACERI_EVAL_INTERNAL_H
#define FACERI_EVAL_INTERNAL_H
/* Shared by eval, audit and report (coordinator/ only): the table of usable items
 * of a results file, pair lists over it, and gathering the rows they name. */
#include <stdint.h>

#include "faceri/eval.h"
#include "faceri/results_reader.h"

/* Items with status 0 and a label, in item order ("used" items). */
typedef struct eval_items {
  int64_t n, items;
  int64_t *index;       /* [n] global row */
  int32_t *label;       /* [n] */
  int n_labels;         /* label id space */
  int64_t *label_start; /* [n_labels + 1]: label l's used items are by_label[label_start[l] ..] */
  int64_t *by_label;    /* [n] used-item positions grouped by label, in item order */
  int n_quality;
  char columns[FR_EVAL_MAX_QUALITY][64];
  double *quality[FR_EVAL_MAX_QUALITY]; /* [n] NaN = unknown */
} eval_items;

/* Streams status, labels and the quality columns (may be 0 of them). */
int eval_items_load(fr_results_reader *r, const char *const *columns, int n_columns, eval_items *out,
                    fr_error *err);
void eval_items_free(eval_items *it);

typedef struct eval_pairs {
  int64_t n, n_genuine, cap;
  int64_t *a, *b; /* used-item positions */
  uint8_t *genuine;
  int64_t skipped;
} eval_pairs;

int eval_pairs_all(const eval_items *it, int64_t limit, eval_pairs *out, fr_error *err);
/* Genuine: all when there are at most n, else n uniform draws; impostor likewise. */
int eval_pairs_sample(const eval_items *it, int64_t n, uint64_t seed, eval_pairs *out, fr_error *err);
int eval_pairs_file(fr_results_reader *r, const eval_items *it, const char *path, eval_pairs *out, fr_error *err);
void eval_pairs_free(eval_pairs *p);

/* Scores (dot products in double) of every pair; reads only the rows the pairs
 * name, block by block. */
int eval_pairs_score(fr_results_reader *r, const eval_items *it, const eval_pairs *p, double *scores,
                     fr_error *err);

/* Rows of the used items flagged in need[n] into a compact [count, dim] matrix;
 * slot[i] = its row there (-1 when not needed). */
int eval_gather_rows(fr_results_reader *r, const eval_items *it, const uint8_t *need, float **rows, int64_t **slot,
                     int64_t *count, fr_error *err);

/* Used items p0 .. p1 - 1 read as one hyperslab of their global rows (the span
 * index[p1-1] - index[p0] + 1 must be at most max_rows; eval_span_end picks p1). */
int64_t eval_span_end(const eval_items *it, int64_t p0, int64_t max_rows);
int eval_read_used(fr_results_reader *r, const eval_items *it, int64_t p0, int64_t p1, float *scratch, float *out,
                   fr_error *err);

/* xorshift64*: small, seeded, the same on every platform. */
static inline uint64_t eval_rand(uint64_t *s)
{
  *s ^= *s >> 12, *s ^= *s << 25, *s ^= *s >> 27;
  return *s * 0x2545f4914f6cdd1dull;
}

#endif
