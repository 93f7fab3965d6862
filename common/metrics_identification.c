/* Closed- and open-set identification from a gallery search done in tiles. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "faceri/metrics.h"
#include "faceri/verification.h"

#define DEFAULT_PROBE_BLOCK 256
#define DEFAULT_GALLERY_BLOCK 2048

static int cpu_score_tile(void *ctx, const float *probes, int64_t np, const float *gallery, int64_t ng, int dim,
                          double *scores, fr_error *err)
{
  (void)ctx;
  (void)err;
  /* Four templates at a time so each probe value loaded is used four times. */
  for (int64_t p = 0; p < np; p++) {
    const float *x = probes + (size_t)p * (size_t)dim;
    double *row = scores + (size_t)p * (size_t)ng;
    int64_t g = 0;
    for (; g + 4 <= ng; g += 4) {
      const float *y0 = gallery + (size_t)g * (size_t)dim, *y1 = y0 + dim, *y2 = y1 + dim, *y3 = y2 + dim;
      double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      for (int k = 0; k < dim; k++) {
        double v = x[k];
        s0 += v * y0[k];
        s1 += v * y1[k];
        s2 += v * y2[k];
        s3 += v * y3[k];
      }
      row[g] = s0, row[g + 1] = s1, row[g + 2] = s2, row[g + 3] = s3;
    }
    for (; g < ng; g++) {
      const float *y = gallery + (size_t)g * (size_t)dim;
      double s = 0;
      for (int k = 0; k < dim; k++)
        s += (double)x[k] * y[k];
      row[g] = s;
    }
  }
  return FR_OK;
}

typedef struct label_slot {
  int label;
  int64_t index;
} label_slot;

static int compare_slot(const void *a, const void *b)
{
  const label_slot *x = a, *y = b;
  if (x->label != y->label)
    return (x->label > y->label) - (x->label < y->label);
  return (x->index > y->index) - (x->index < y->index);
}

static int64_t find_label(const label_slot *slots, int64_t n, int label)
{
  int64_t lo = 0, hi = n;
  while (lo < hi) {
    int64_t mid = lo + (hi - lo) / 2;
    if (slots[mid].label < label)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo < n && slots[lo].label == label ? slots[lo].index : -1;
}

static int check_finite(const float *rows, int64_t n, int dim, const char *what, fr_error *err)
{
  for (int64_t i = 0; i < n; i++)
    for (int k = 0; k < dim; k++)
      if (!isfinite(rows[(size_t)i * (size_t)dim + k]))
        return fr_error_set(err, FR_ERR_INVALID, "identification: %s row %lld has a non-finite value at %d", what,
                            (long long)i, k);
  return FR_OK;
}

static int call_tile(const fr_search_options *o, const float *probes, int64_t np, const float *gallery, int64_t ng,
                     int dim, double *scores, fr_error *err)
{
  int rc = o->score_tile(o->score_ctx, probes, np, gallery, ng, dim, scores, err);
  if (rc)
    return rc;
  for (int64_t i = 0; i < np * ng; i++)
    if (isnan(scores[i]))
      return fr_error_set(err, FR_ERR_INTERNAL, "identification: the score tile function returned NaN");
  return FR_OK;
}

int fr_identification_search(const float *gallery, const int *gallery_labels, int64_t n_gallery, const float *probes,
                             const int *probe_labels, int64_t n_probes, int dim, const fr_search_options *opts,
                             fr_probe_outcome *outcomes, fr_error *err)
{
  if (n_gallery <= 0 || n_probes <= 0 || dim <= 0)
    return fr_error_set(err, FR_ERR_INVALID,
                        "identification needs templates, probes and a dimension (got %lld, %lld, %d)",
                        (long long)n_gallery, (long long)n_probes, dim);
  fr_search_options o = opts ? *opts : (fr_search_options){0};
  if (!o.score_tile)
    o.score_tile = cpu_score_tile;
  int64_t pb_max = o.probe_block > 0 ? o.probe_block : DEFAULT_PROBE_BLOCK;
  int64_t gb_max = o.gallery_block > 0 ? o.gallery_block : DEFAULT_GALLERY_BLOCK;
  if (pb_max > n_probes)
    pb_max = n_probes;
  if (gb_max > n_gallery)
    gb_max = n_gallery;
  int rc;
  if ((rc = check_finite(gallery, n_gallery, dim, "gallery", err)) || (rc = check_finite(probes, n_probes, dim, "probe", err)))
    return rc;

  label_slot *slots = malloc((size_t)n_gallery * sizeof(label_slot));
  int64_t tile_cells = pb_max * (gb_max > pb_max ? gb_max : pb_max);
  double *scores = malloc((size_t)tile_cells * sizeof(double));
  float *mates = calloc((size_t)pb_max * (size_t)dim, sizeof(float));
  int64_t *mate_index = malloc((size_t)pb_max * sizeof(int64_t));
  int64_t *count = malloc((size_t)pb_max * sizeof(int64_t));
  if (!slots || !scores || !mates || !mate_index || !count) {
    rc = fr_error_set(err, FR_ERR_NOMEM, "identification: out of memory for a %lld x %lld tile and %lld templates",
                      (long long)pb_max, (long long)gb_max, (long long)n_gallery);
    goto done;
  }
  for (int64_t g = 0; g < n_gallery; g++)
    slots[g] = (label_slot){gallery_labels[g], g};
  qsort(slots, (size_t)n_gallery, sizeof(label_slot), compare_slot);
  for (int64_t g = 1; g < n_gallery; g++)
    if (slots[g].label == slots[g - 1].label) {
      rc = fr_error_set(err, FR_ERR_INVALID,
                        "identification: gallery templates %lld and %lld share label %d (one template per identity)",
                        (long long)slots[g - 1].index, (long long)slots[g].index, slots[g].label);
      goto done;
    }

  for (int64_t p0 = 0; p0 < n_probes; p0 += pb_max) {
    int64_t pb = n_probes - p0 < pb_max ? n_probes - p0 : pb_max;
    const float *pblock = probes + (size_t)p0 * (size_t)dim;
    /* The mated score comes from the same tile function as the rest, so a
     * device scorer cannot rank a probe against a differently rounded mate. */
    for (int64_t p = 0; p < pb; p++) {
      mate_index[p] = find_label(slots, n_gallery, probe_labels[p0 + p]);
      float *dst = mates + (size_t)p * (size_t)dim;
      if (mate_index[p] >= 0)
        memcpy(dst, gallery + (size_t)mate_index[p] * (size_t)dim, (size_t)dim * sizeof(float));
      else
        memset(dst, 0, (size_t)dim * sizeof(float));
    }
    if ((rc = call_tile(&o, pblock, pb, mates, pb, dim, scores, err)))
      goto done;
    for (int64_t p = 0; p < pb; p++) {
      fr_probe_outcome *out = &outcomes[p0 + p];
      out->mated_score = mate_index[p] >= 0 ? scores[(size_t)p * (size_t)pb + (size_t)p] : NAN;
      out->top_score = -INFINITY;
      count[p] = 0;
    }
    for (int64_t g0 = 0; g0 < n_gallery; g0 += gb_max) {
      int64_t gb = n_gallery - g0 < gb_max ? n_gallery - g0 : gb_max;
      if ((rc = call_tile(&o, pblock, pb, gallery + (size_t)g0 * (size_t)dim, gb, dim, scores, err)))
        goto done;
      for (int64_t p = 0; p < pb; p++) {
        fr_probe_outcome *out = &outcomes[p0 + p];
        const double *row = scores + (size_t)p * (size_t)gb;
        double top = out->top_score, mated = out->mated_score;
        int64_t c = 0, skip = mate_index[p] - g0;
        for (int64_t g = 0; g < gb; g++) {
          double s = row[g];
          top = s > top ? s : top;
          c += (s >= mated) & (g != skip); /* false for every s when mated is NaN */
        }
        out->top_score = top;
        count[p] += c;
      }
    }
    for (int64_t p = 0; p < pb; p++) {
      fr_probe_outcome *out = &outcomes[p0 + p];
      out->rank = mate_index[p] >= 0 ? 1 + count[p] : 0;
      if (mate_index[p] >= 0 && out->mated_score > out->top_score)
        out->top_score = out->mated_score; /* only if a device scorer rounds the two calls differently */
    }
  }
done:
  free(slots);
  free(scores);
  free(mates);
  free(mate_index);
  free(count);
  return rc;
}

int fr_identification_cmc(const fr_probe_outcome *outcomes, int64_t n_probes, int max_rank, double *cmc,
                          int64_t *n_nonmated, fr_error *err)
{
  if (max_rank < 1)
    return fr_error_set(err, FR_ERR_INVALID, "CMC: maximum rank %d is below 1", max_rank);
  int64_t *hits = calloc((size_t)max_rank, sizeof(int64_t));
  if (!hits)
    return fr_error_set(err, FR_ERR_NOMEM, "CMC: out of memory for %d ranks", max_rank);
  int64_t mated = 0;
  for (int64_t i = 0; i < n_probes; i++) {
    int64_t r = outcomes[i].rank;
    if (r <= 0)
      continue;
    mated++;
    if (r <= max_rank)
      hits[r - 1]++;
  }
  if (n_nonmated)
    *n_nonmated = n_probes - mated;
  if (mated == 0) {
    free(hits);
    return fr_error_set(err, FR_ERR_INVALID, "CMC: none of the %lld probes has its identity in the gallery",
                        (long long)n_probes);
  }
  int64_t cum = 0;
  for (int r = 0; r < max_rank; r++) {
    cum += hits[r];
    cmc[r] = (double)cum / (double)mated;
  }
  free(hits);
  return FR_OK;
}

static int compare_double(const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int fr_identification_tpir_at_fpir(const fr_probe_outcome *outcomes, int64_t n_probes, int rank, const double *fpirs,
                                   int n_fpir, double *tpir, double *thresholds, fr_error *err)
{
  if (rank < 1)
    return fr_error_set(err, FR_ERR_INVALID, "TPIR: rank %d is below 1", rank);
  for (int k = 0; k < n_fpir; k++)
    if (!(fpirs[k] >= 0 && fpirs[k] <= 1))
      return fr_error_set(err, FR_ERR_INVALID, "TPIR: FPIR %g (entry %d) is not in [0, 1]", fpirs[k], k);
  int64_t n_mated = 0, n_nm = 0;
  for (int64_t i = 0; i < n_probes; i++)
    n_mated += outcomes[i].rank > 0;
  n_nm = n_probes - n_mated;
  if (n_mated == 0 || n_nm == 0)
    return fr_error_set(err, FR_ERR_INVALID,
                        "TPIR at FPIR needs mated and non-mated probes (got %lld and %lld)", (long long)n_mated,
                        (long long)n_nm);
  double *top = malloc((size_t)n_nm * sizeof(double));
  if (!top)
    return fr_error_set(err, FR_ERR_NOMEM, "TPIR: out of memory for %lld non-mated probes", (long long)n_nm);
  int64_t j = 0;
  for (int64_t i = 0; i < n_probes; i++)
    if (outcomes[i].rank <= 0) {
      if (isnan(outcomes[i].top_score)) {
        free(top);
        return fr_error_set(err, FR_ERR_INVALID, "TPIR: probe %lld has a NaN top score", (long long)i);
      }
      top[j++] = outcomes[i].top_score;
    }
  qsort(top, (size_t)n_nm, sizeof(double), compare_double);
  for (int k = 0; k < n_fpir; k++) {
    double t = fr_threshold_at_false_rate(top, n_nm, fpirs[k]);
    int64_t hits = 0;
    for (int64_t i = 0; i < n_probes; i++)
      hits += outcomes[i].rank > 0 && outcomes[i].rank <= rank && outcomes[i].mated_score > t;
    tpir[k] = (double)hits / (double)n_mated;
    if (thresholds)
      thresholds[k] = t;
  }
  free(top);
  return FR_OK;
}
