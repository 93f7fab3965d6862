#ifndef FACERI_EVAL_H
#define FACERI_EVAL_H
/* faceri eval: evaluation protocols on a results file (coordinator/eval_*.c),
 * built on the metrics library (metrics.h, verification.h, pairs_file.h).
 *
 * Items: rows with status 0, a label and a finite embedding. Everything is
 * streamed in row blocks (results_reader.h); what is held is per-item scalars,
 * one template per identity, and the rows of the items a pair list names.
 *
 * Protocols (the choices the issue leaves open, documented here and in --help):
 * - verification pairs: a pairs.txt (name = label name; image number = the number
 *   in an LFW-style file name NAME_0004.jpg, else the item's 1-based position
 *   among its label's items), all pairs, or sampled pairs (every genuine pair when
 *   there are at most N of them, else N drawn uniformly; the same for impostor
 *   pairs; draws are with replacement, seeded);
 * - closed-set identification: the first K items of each identity (item order)
 *   are averaged into its template (normalised mean), the rest are probes;
 * - open-set: the same templates, but identities with an odd label id are left
 *   out of the gallery, so their probes are the non-mated searches; TPIR at FPIR
 *   at rank 20 (SurvFace);
 * - error versus discard for every quality column: item quality from the column
 *   (higher = better; NaN = unknown, discarded first), pair quality = the lower. */
#include <stdint.h>
#include <stdio.h>

#include "faceri/error.h"
#include "faceri/metrics.h"
#include "faceri/results_reader.h"
#include "faceri/verification.h"

#define FR_EVAL_MAX_QUALITY 8
#define FR_EVAL_MAX_RANK 20
#define FR_EVAL_N_FAR 4
#define FR_EVAL_N_FPIR 3

typedef enum fr_eval_pairs_mode { FR_PAIRS_SAMPLE = 0, FR_PAIRS_ALL, FR_PAIRS_FILE } fr_eval_pairs_mode;

typedef struct fr_eval_options {
  fr_eval_pairs_mode pairs_mode;
  const char *pairs_path;  /* FR_PAIRS_FILE */
  int64_t sample_pairs;    /* FR_PAIRS_SAMPLE: 0 = 1,000,000 */
  int64_t all_pairs_limit; /* FR_PAIRS_ALL refuses more items than this; 0 = 20,000 */
  uint64_t seed;           /* 0 = a fixed default */
  int gallery_first;       /* K; 0 = 1 */
  int open_rank;           /* 0 = 20 */
  const char *quality[FR_EVAL_MAX_QUALITY]; /* columns ("norm" = "quality/norm"); none = every present one */
  int n_quality;
  int no_identification, no_verification;
} fr_eval_options;

typedef struct fr_eval_quality {
  char column[64];
  int64_t n_finite; /* items with a finite value */
  int has_edc, has_erc;
  fr_edc edc;
  fr_erc erc;
  char why[256];    /* why a curve is missing */
} fr_eval_quality;

typedef struct fr_eval_result {
  int64_t items, items_used, n_identities;
  /* verification */
  int has_verification;
  const char *pairs_source; /* "pairs file", "all pairs", "sampled pairs" */
  int64_t pairs_skipped;    /* pairs.txt pairs naming an image not among the items */
  fr_verification ver;
  double fars[FR_EVAL_N_FAR], tpr[FR_EVAL_N_FAR], tpr_threshold[FR_EVAL_N_FAR];
  /* closed-set identification */
  int has_identification;
  int gallery_first;
  int64_t n_templates, n_probes;
  double cmc[FR_EVAL_MAX_RANK];
  /* open-set */
  int has_open_set;
  int open_rank;
  int64_t open_templates, open_mated, open_nonmated;
  double fpirs[FR_EVAL_N_FPIR], tpir[FR_EVAL_N_FPIR], tpir_threshold[FR_EVAL_N_FPIR];
  /* error versus discard */
  fr_eval_quality quality[FR_EVAL_MAX_QUALITY];
  int n_quality;
  char notes[512];          /* why a section is missing */
} fr_eval_result;

/* "norm" -> "quality/norm"; names with a '/' are kept. */
void fr_eval_column_name(const char *name, char *out, size_t size);

int fr_eval_run(fr_results_reader *r, const fr_eval_options *opts, fr_eval_result *out, fr_error *err);
void fr_eval_result_free(fr_eval_result *res);

void fr_eval_print_text(const fr_eval_result *res, FILE *out);
void fr_eval_print_json(const fr_eval_result *res, FILE *out);

/* argv[0] is "eval"; returns an FR_EXIT_* code. */
int fr_cmd_eval(int argc, char **argv);

#endif
