#ifndef FACERI_METRICS_H
#define FACERI_METRICS_H
/* Evaluation metrics beyond plain 1:1 verification: closed- and open-set
 * identification against a gallery, and quality error-versus-discard curves.
 * The conventions of verification.h hold here too: scores are similarities,
 * "accepted" means score > threshold, and a threshold for a false rate r over
 * n non-mated scores is the (floor(r*n)+1)-th largest of them, so the achieved
 * rate is at most r. scripts/metrics_reference.py reimplements every figure in
 * NumPy and tests/test_metrics_numpy.c compares the two. */
#include <stdint.h>

#include "faceri/error.h"

/* ---------- identification ---------- */

/* Fills scores[p * n_gallery + g] = similarity of probe p and template g for a
 * tile. The default computes dot products of the float rows in double; a device
 * GEMM can be plugged in. */
typedef int (*fr_score_tile_fn)(void *ctx, const float *probes, int64_t n_probes, const float *gallery,
                                int64_t n_gallery, int dim, double *scores, fr_error *err);

typedef struct fr_search_options {
  int64_t probe_block, gallery_block; /* tile shape; 0 = 256 x 2048 (4 MiB of scores) */
  fr_score_tile_fn score_tile;        /* NULL = the CPU default */
  void *score_ctx;
} fr_search_options;

/* What a probe's search found. A probe is mated when its label is in the gallery. */
typedef struct fr_probe_outcome {
  int64_t rank;       /* mated: 1 + number of OTHER templates scoring >= the mate (a tie is
                         not a win, so ranks are pessimistic); 0 for non-mated probes */
  double mated_score; /* score against its own template; NaN for non-mated probes */
  double top_score;   /* highest score over the whole gallery (the mate included) */
} fr_probe_outcome;

/* Searches every probe against a gallery of one template per identity (labels
 * must be unique: a repeated label is an error). Rows are L2-normalised float
 * vectors of dim values; non-finite values are an error naming the row. The
 * score matrix is produced and consumed in tiles, so memory is
 * O(block sizes + n_gallery), never O(n_probes * n_gallery). */
int fr_identification_search(const float *gallery, const int *gallery_labels, int64_t n_gallery, const float *probes,
                             const int *probe_labels, int64_t n_probes, int dim, const fr_search_options *opts,
                             fr_probe_outcome *outcomes, fr_error *err);

/* Closed-set CMC: cmc[r - 1] = fraction of MATED probes whose rank is <= r,
 * for r = 1..max_rank. Non-mated probes are left out (their count goes to
 * *n_nonmated if not NULL). Error when no probe is mated. */
int fr_identification_cmc(const fr_probe_outcome *outcomes, int64_t n_probes, int max_rank, double *cmc,
                          int64_t *n_nonmated, fr_error *err);

/* Open-set identification (NIST FRVT 1:N / SurvFace): for each FPIR f,
 *   threshold t = the (floor(f * N_nm) + 1)-th largest top_score of the N_nm
 *                 non-mated probes (-inf when that exceeds N_nm), so
 *                 FPIR = #{non-mated: top_score > t} / N_nm <= f;
 *   TPIR(f) = #{mated: rank <= R and mated_score > t} / N_mated.
 * The denominator is every mated probe. Needs at least one mated and one
 * non-mated probe. thresholds may be NULL. */
int fr_identification_tpir_at_fpir(const fr_probe_outcome *outcomes, int64_t n_probes, int rank, const double *fpirs,
                                   int n_fpir, double *tpir, double *thresholds, fr_error *err);

/* ---------- quality: error versus discard ---------- */

/* Pair quality = min of the two items' qualities. NaN (no quality) is taken as
 * -inf: an item with unknown quality is the first to be discarded, and so is
 * every pair it is in. Pair indices outside 0..n_items-1 are an error. */
int fr_pair_quality_min(const double *item_quality, int64_t n_items, const int64_t *a, const int64_t *b,
                        int64_t n_pairs, double *pair_quality, fr_error *err);

typedef enum fr_edc_threshold {
  FR_EDC_AT_FMR = 0, /* value = FMR over all impostor pairs (default 1e-3) */
  FR_EDC_AT_FNMR,    /* value = starting FNMR: the threshold is the largest genuine score
                        below the (floor(value*n)+1)-th smallest, so FNMR(0) <= value */
  FR_EDC_GIVEN       /* value = the threshold itself */
} fr_edc_threshold;

typedef struct fr_edc_options {
  fr_edc_threshold mode;
  double value;      /* see the mode; 0 with FR_EDC_AT_FMR means 1e-3 */
  double pauc_limit; /* discard fraction the pAUC runs to; 0 = 0.2 */
} fr_edc_options;

/* ISO/IEC 29794-1 error-versus-discard characteristic (FNMR flavour).
 * The threshold is fixed once, before any discard. Genuine pairs are sorted
 * by quality (NaN = -inf) and discarded from the lowest up, one quality level
 * at a time: all pairs sharing the cut-off quality go in the same step.
 * Point 0 is (0, FNMR over all genuine pairs); point k > 0 is the state after
 * the k-th lowest distinct quality level is gone: discard[k] = discarded /
 * n_genuine, fnmr[k] = #{kept: score <= threshold} / #kept, cut[k] = that
 * level (cut[0] is NaN). The point where nothing is left is not emitted (FNMR undefined).
 * pAUC: trapezoid area under (discard, fnmr) from 0 to pauc_limit, linearly
 * interpolated at the limit, held flat past the last point; it is NOT
 * normalised (pauc); pauc_relative = pauc / (fnmr[0] * pauc_limit), 1 = quality
 * no better than random order would be expected to be, NaN when fnmr[0] = 0.
 * Impostor scores are only used by FR_EDC_AT_FMR (may be NULL otherwise). */
typedef struct fr_edc {
  double threshold;
  int64_t n_genuine, n_impostor;
  int64_t n_points;
  double *discard, *fnmr, *cut;
  double pauc_limit, pauc, pauc_relative;
} fr_edc;

int fr_edc_compute(const double *genuine, const double *genuine_quality, int64_t n_genuine, const double *impostor,
                   int64_t n_impostor, const fr_edc_options *opts, fr_edc *out, fr_error *err);
void fr_edc_free(fr_edc *edc);

typedef struct fr_erc_options {
  double step;        /* 0 = 0.05 */
  double max_discard; /* 0 = 0.95: steps k*step for k = 0.. while k*step <= max_discard (+1e-9) */
  const double *fmrs; /* NULL = {1e-2, 1e-3, 1e-4} */
  int n_fmr;
} fr_erc_options;

/* The FIQA-paper ERC (SER-FIQ, MagFace, CR-FIQA evaluation code): genuine and
 * impostor pairs are pooled (genuine first, then impostor, in input order) and
 * stably sorted by pair quality (NaN = -inf; equal qualities keep that order,
 * so ties are NOT discarded together here, unlike the EDC). At step k the
 * lowest floor(k*step*N + 1e-9) of the N pairs are dropped; on what is left
 * the threshold for each FMR is recomputed from the remaining impostors by the
 * rule above and fnmr = #{remaining genuine: score <= t} / #remaining genuine.
 * When no genuine or no impostor pair remains, fnmr and threshold are NaN.
 * Arrays: discard[step] (nominal k*step), genuine_left[step],
 * impostor_left[step], fnmr/threshold[step * n_fmr + f]. */
typedef struct fr_erc {
  int n_steps, n_fmr;
  double *fmrs, *discard, *fnmr, *threshold;
  int64_t *genuine_left, *impostor_left;
} fr_erc;

int fr_erc_compute(const double *genuine, const double *genuine_quality, int64_t n_genuine, const double *impostor,
                   const double *impostor_quality, int64_t n_impostor, const fr_erc_options *opts, fr_erc *out,
                   fr_error *err);
void fr_erc_free(fr_erc *erc);

#endif
