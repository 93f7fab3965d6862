/* Near-duplicate search for the audit: blocked products of embedding panels
 * (fr_similarity_cpu), over all pairs or within each identity. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "audit_internal.h"
#include "faceri/similarity.h"

#define PANEL_A 2048
#define PANEL_B 1024

static int record(audit_dups *d, int64_t a, int64_t b, float cos, fr_error *err)
{
  d->total++;
  if (d->n == d->max) {
    d->truncated = 1;
    return FR_OK;
  }
  if (d->n == d->cap) {
    int64_t cap = d->cap ? d->cap * 2 : 1024;
    int64_t *na = realloc(d->a, (size_t)cap * sizeof(int64_t));
    if (na)
      d->a = na;
    int64_t *nb = realloc(d->b, (size_t)cap * sizeof(int64_t));
    if (nb)
      d->b = nb;
    float *nc = realloc(d->cos, (size_t)cap * sizeof(float));
    if (nc)
      d->cos = nc;
    if (!na || !nb || !nc)
      return fr_error_set(err, FR_ERR_NOMEM, "audit: out of memory for %lld duplicate pairs", (long long)cap);
    d->cap = cap;
  }
  d->a[d->n] = a;
  d->b[d->n] = b;
  d->cos[d->n++] = cos;
  return FR_OK;
}

void audit_dups_free(audit_dups *d)
{
  free(d->a);
  free(d->b);
  free(d->cos);
  memset(d, 0, sizeof(*d));
}

/* Pairs of a tile above the threshold; pa/pb are used-item positions of the rows. */
static int scan_tile(audit_dups *d, const eval_items *it, const float *tile, int64_t na, int64_t nb,
                     const int64_t *pa, const int64_t *pb, int same_panel, double thr, uint8_t *flags, fr_error *err)
{
  int rc = FR_OK;
  for (int64_t i = 0; !rc && i < na; i++)
    for (int64_t j = same_panel ? i + 1 : 0; !rc && j < nb; j++) {
      float c = tile[i * nb + j];
      if (c > thr) {
        flags[pa[i]] |= FR_AUDIT_DUPLICATE;
        flags[pb[j]] |= FR_AUDIT_DUPLICATE;
        rc = record(d, it->index[pa[i]], it->index[pb[j]], c, err);
      }
    }
  return rc;
}

static int all_pairs(fr_results_reader *r, const eval_items *it, double thr, uint8_t *flags, audit_dups *d,
                     fr_error *err)
{
  int dim = fr_results_reader_dim(r);
  float *a = malloc((size_t)PANEL_A * dim * sizeof(float)), *b = malloc((size_t)PANEL_B * dim * sizeof(float));
  float *scratch = malloc((size_t)PANEL_A * dim * sizeof(float));
  float *tile = malloc((size_t)PANEL_A * PANEL_A * sizeof(float)); /* the panel against itself */
  int64_t *pa = malloc(PANEL_A * sizeof(int64_t)), *pb = malloc(PANEL_B * sizeof(int64_t));
  int rc = !a || !b || !scratch || !tile || !pa || !pb
               ? fr_error_set(err, FR_ERR_NOMEM, "audit: out of memory for duplicate panels")
               : FR_OK;
  for (int64_t a0 = 0; !rc && a0 < it->n;) {
    int64_t a1 = eval_span_end(it, a0, PANEL_A);
    if ((rc = eval_read_used(r, it, a0, a1, scratch, a, err)))
      break;
    for (int64_t p = a0; p < a1; p++)
      pa[p - a0] = p;
    /* The panel against itself (upper triangle), then against every later block. */
    fr_similarity_cpu(a, a1 - a0, a, a1 - a0, dim, tile, a1 - a0);
    for (int64_t i = 0; !rc && i < a1 - a0; i++)
      for (int64_t j = i + 1; !rc && j < a1 - a0; j++) {
        float c = tile[i * (a1 - a0) + j];
        if (c > thr) {
          flags[a0 + i] |= FR_AUDIT_DUPLICATE;
          flags[a0 + j] |= FR_AUDIT_DUPLICATE;
          rc = record(d, it->index[a0 + i], it->index[a0 + j], c, err);
        }
      }
    for (int64_t b0 = a1; !rc && b0 < it->n;) {
      int64_t b1 = eval_span_end(it, b0, PANEL_B);
      if ((rc = eval_read_used(r, it, b0, b1, scratch, b, err)))
        break;
      for (int64_t p = b0; p < b1; p++)
        pb[p - b0] = p;
      fr_similarity_cpu(a, a1 - a0, b, b1 - b0, dim, tile, b1 - b0);
      rc = scan_tile(d, it, tile, a1 - a0, b1 - b0, pa, pb, 0, thr, flags, err);
      b0 = b1;
    }
    a0 = a1;
  }
  free(a);
  free(b);
  free(scratch);
  free(tile);
  free(pa);
  free(pb);
  return rc;
}

/* Within each identity: its rows are read as one span when they lie close
 * together (datasets keep an identity's files together), else one by one. */
static int within_labels(fr_results_reader *r, const eval_items *it, double thr, uint8_t *flags, audit_dups *d,
                         fr_error *err)
{
  int dim = fr_results_reader_dim(r);
  int64_t cap = 0;
  for (int l = 0; l < it->n_labels; l++)
    if (it->label_start[l + 1] - it->label_start[l] > cap)
      cap = it->label_start[l + 1] - it->label_start[l];
  if (cap > PANEL_A * 4)
    return fr_error_set(err, FR_ERR_UNSUPPORTED, "audit: an identity of %lld items is more than the %d a panel holds",
                        (long long)cap, PANEL_A * 4);
  float *rows = malloc((size_t)(cap ? cap : 1) * dim * sizeof(float));
  float *span = malloc((size_t)FR_RESULTS_BLOCK_ROWS / 16 * dim * sizeof(float));
  float *tile = malloc((size_t)(cap ? cap : 1) * (cap ? cap : 1) * sizeof(float));
  int rc = !rows || !span || !tile ? fr_error_set(err, FR_ERR_NOMEM, "audit: out of memory for identity panels")
                                   : FR_OK;
  for (int l = 0; !rc && l < it->n_labels; l++) {
    int64_t s = it->label_start[l], n = it->label_start[l + 1] - s;
    if (n < 2)
      continue;
    const int64_t *pos = it->by_label + s;
    int64_t first = it->index[pos[0]], width = it->index[pos[n - 1]] - first + 1;
    if (width <= FR_RESULTS_BLOCK_ROWS / 16) {
      rc = fr_results_read_embedding(r, first, width, span, err);
      for (int64_t k = 0; !rc && k < n; k++)
        memcpy(rows + (size_t)k * dim, span + (size_t)(it->index[pos[k]] - first) * dim, (size_t)dim * sizeof(float));
    } else {
      for (int64_t k = 0; !rc && k < n; k++)
        rc = fr_results_read_embedding(r, it->index[pos[k]], 1, rows + (size_t)k * dim, err);
    }
    if (rc)
      break;
    fr_similarity_cpu(rows, n, rows, n, dim, tile, n);
    rc = scan_tile(d, it, tile, n, n, pos, pos, 1, thr, flags, err);
  }
  free(rows);
  free(span);
  free(tile);
  return rc;
}

int audit_find_duplicates(fr_results_reader *r, const eval_items *it, fr_dup_scope scope, double thr,
                          uint8_t *flags, audit_dups *d, fr_error *err)
{
  if (scope == FR_DUP_OFF)
    return FR_OK;
  return scope == FR_DUP_ALL ? all_pairs(r, it, thr, flags, d, err) : within_labels(r, it, thr, flags, d, err);
}
