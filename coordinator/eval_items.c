/* The used items of a results file, pair lists over them, and gathering the
 * embedding rows a pair list names: all streamed in row blocks. */
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval_internal.h"
#include "faceri/item_status.h"
#include "faceri/pairs_file.h"
#include "results_hdf5.h"

void eval_items_free(eval_items *it)
{
  free(it->index);
  free(it->label);
  free(it->label_start);
  free(it->by_label);
  for (int q = 0; q < it->n_quality; q++)
    free(it->quality[q]);
  memset(it, 0, sizeof(*it));
}

static int nomem(fr_results_reader *r, const char *what, fr_error *err)
{
  return fr_error_set(err, FR_ERR_NOMEM, "%s: out of memory for %s", fr_results_reader_path(r), what);
}

int eval_items_load(fr_results_reader *r, const char *const *columns, int n_columns, eval_items *out,
                    fr_error *err)
{
  memset(out, 0, sizeof(*out));
  if (n_columns > FR_EVAL_MAX_QUALITY)
    return fr_error_set(err, FR_ERR_INVALID, "at most %d quality columns", FR_EVAL_MAX_QUALITY);
  int64_t items = fr_results_reader_items(r);
  out->items = items;
  out->n_labels = fr_results_reader_n_labels(r);
  out->n_quality = n_columns;
  int64_t block = FR_RESULTS_BLOCK_ROWS;
  int8_t *status = malloc((size_t)block);
  int32_t *label = malloc((size_t)block * sizeof(int32_t));
  float *qf = malloc((size_t)block * sizeof(float));
  out->index = malloc((size_t)(items ? items : 1) * sizeof(int64_t));
  out->label = malloc((size_t)(items ? items : 1) * sizeof(int32_t));
  int rc = !status || !label || !qf || !out->index || !out->label ? nomem(r, "the item table", err) : FR_OK;
  for (int q = 0; !rc && q < n_columns; q++) {
    snprintf(out->columns[q], sizeof(out->columns[q]), "%s", columns[q]);
    if (!(out->quality[q] = malloc((size_t)(items ? items : 1) * sizeof(double))))
      rc = nomem(r, "quality values", err);
  }
  for (int64_t first = 0; !rc && first < items; first += block) {
    int64_t n = items - first < block ? items - first : block;
    if ((rc = fr_results_read_status(r, first, n, status, err)) || (rc = fr_results_read_labels(r, first, n, label, err)))
      break;
    int64_t start = out->n;
    for (int64_t i = 0; i < n; i++)
      if (status[i] == FR_ITEM_OK && label[i] >= 0 && label[i] < out->n_labels) {
        out->index[out->n] = first + i;
        out->label[out->n++] = label[i];
      }
    for (int q = 0; !rc && q < n_columns; q++) {
      if ((rc = fr_results_read_column(r, columns[q], first, n, qf, err)))
        break;
      for (int64_t k = start; k < out->n; k++)
        out->quality[q][k] = qf[out->index[k] - first];
    }
  }
  free(status);
  free(label);
  free(qf);
  if (!rc) {
    out->label_start = calloc((size_t)out->n_labels + 2, sizeof(int64_t));
    out->by_label = malloc((size_t)(out->n ? out->n : 1) * sizeof(int64_t));
    if (!out->label_start || !out->by_label)
      rc = nomem(r, "the label index", err);
  }
  if (!rc) {
    /* Counting sort: stable, so each label's items stay in item order. */
    for (int64_t i = 0; i < out->n; i++)
      out->label_start[out->label[i] + 2]++;
    for (int l = 0; l < out->n_labels; l++)
      out->label_start[l + 2] += out->label_start[l + 1];
    for (int64_t i = 0; i < out->n; i++)
      out->by_label[out->label_start[out->label[i] + 1]++] = i;
  }
  if (rc)
    eval_items_free(out);
  return rc;
}

void eval_pairs_free(eval_pairs *p)
{
  free(p->a);
  free(p->b);
  free(p->genuine);
  memset(p, 0, sizeof(*p));
}

static int pairs_push(eval_pairs *p, int64_t a, int64_t b, int genuine, fr_error *err)
{
  if (p->n == p->cap) {
    int64_t cap = p->cap ? p->cap * 2 : 4096;
    int64_t *na = realloc(p->a, (size_t)cap * sizeof(int64_t));
    if (na)
      p->a = na;
    int64_t *nb = realloc(p->b, (size_t)cap * sizeof(int64_t));
    if (nb)
      p->b = nb;
    uint8_t *ng = realloc(p->genuine, (size_t)cap);
    if (ng)
      p->genuine = ng;
    if (!na || !nb || !ng)
      return fr_error_set(err, FR_ERR_NOMEM, "out of memory for %lld pairs", (long long)cap);
    p->cap = cap;
  }
  p->a[p->n] = a;
  p->b[p->n] = b;
  p->genuine[p->n++] = (uint8_t)genuine;
  p->n_genuine += genuine;
  return FR_OK;
}

static int64_t genuine_total(const eval_items *it)
{
  int64_t total = 0;
  for (int l = 0; l < it->n_labels; l++) {
    int64_t c = it->label_start[l + 1] - it->label_start[l];
    total += c * (c - 1) / 2;
  }
  return total;
}

int eval_pairs_all(const eval_items *it, int64_t limit, eval_pairs *out, fr_error *err)
{
  memset(out, 0, sizeof(*out));
  if (it->n > limit)
    return fr_error_set(err, FR_ERR_INVALID,
                        "--all-pairs: %lld items make %lld pairs; the limit is %lld items (use --sample-pairs N)",
                        (long long)it->n, (long long)(it->n * (it->n - 1) / 2), (long long)limit);
  int rc = FR_OK;
  for (int64_t i = 0; !rc && i < it->n; i++)
    for (int64_t j = i + 1; !rc && j < it->n; j++)
      rc = pairs_push(out, i, j, it->label[i] == it->label[j], err);
  if (rc)
    eval_pairs_free(out);
  return rc;
}

int eval_pairs_sample(const eval_items *it, int64_t n, uint64_t seed, eval_pairs *out, fr_error *err)
{
  memset(out, 0, sizeof(*out));
  uint64_t s = seed ? seed : 0x5eed5eed5eedull;
  int64_t gtotal = genuine_total(it);
  int rc = FR_OK;
  if (gtotal <= n) {
    for (int l = 0; !rc && l < it->n_labels; l++)
      for (int64_t i = it->label_start[l]; !rc && i < it->label_start[l + 1]; i++)
        for (int64_t j = i + 1; !rc && j < it->label_start[l + 1]; j++)
          rc = pairs_push(out, it->by_label[i], it->by_label[j], 1, err);
  } else {
    /* A uniform genuine pair: an identity with probability proportional to its
     * pair count (cumulative counts, binary search), then two distinct members. */
    int64_t *cum = malloc(((size_t)it->n_labels + 1) * sizeof(int64_t));
    if (!cum)
      return fr_error_set(err, FR_ERR_NOMEM, "out of memory sampling pairs");
    cum[0] = 0;
    for (int l = 0; l < it->n_labels; l++) {
      int64_t c = it->label_start[l + 1] - it->label_start[l];
      cum[l + 1] = cum[l] + c * (c - 1) / 2;
    }
    for (int64_t k = 0; !rc && k < n; k++) {
      int64_t x = (int64_t)(eval_rand(&s) % (uint64_t)gtotal);
      int lo = 0, hi = it->n_labels - 1;
      while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (cum[mid + 1] <= x)
          lo = mid + 1;
        else
          hi = mid;
      }
      int64_t c = it->label_start[lo + 1] - it->label_start[lo];
      int64_t i = (int64_t)(eval_rand(&s) % (uint64_t)c), j = (int64_t)(eval_rand(&s) % (uint64_t)(c - 1));
      j += j >= i;
      rc = pairs_push(out, it->by_label[it->label_start[lo] + i], it->by_label[it->label_start[lo] + j], 1, err);
    }
    free(cum);
  }
  int64_t itotal = it->n * (it->n - 1) / 2 - gtotal;
  if (!rc && itotal > 0 && itotal <= n) {
    for (int64_t i = 0; !rc && i < it->n; i++)
      for (int64_t j = i + 1; !rc && j < it->n; j++)
        if (it->label[i] != it->label[j])
          rc = pairs_push(out, i, j, 0, err);
  } else if (!rc && itotal > 0) {
    for (int64_t k = 0; !rc && k < n;) {
      int64_t i = (int64_t)(eval_rand(&s) % (uint64_t)it->n), j = (int64_t)(eval_rand(&s) % (uint64_t)it->n);
      if (it->label[i] == it->label[j])
        continue;
      rc = pairs_push(out, i, j, 0, err);
      k++;
    }
  }
  if (rc)
    eval_pairs_free(out);
  return rc;
}

/* ---- pairs.txt ---- */

typedef struct lookup_ctx {
  const eval_items *it;
  fr_label_map names;
  int32_t *number; /* [n] image number from the key's file name, -1 when it has none */
} lookup_ctx;

/* "…/Aaron_Peirsol_0004.jpg" -> 4: the digits between the last '_' and the extension. */
static int32_t image_number(const char *key)
{
  const char *base = strrchr(key, '/');
  base = base ? base + 1 : key;
  const char *dot = strrchr(base, '.'), *us = strrchr(base, '_');
  if (!dot || !us || us > dot || dot - us < 2)
    return -1;
  long v = 0;
  for (const char *p = us + 1; p < dot; p++) {
    if (!isdigit((unsigned char)*p) || v > 100000000)
      return -1;
    v = v * 10 + (*p - '0');
  }
  return (int32_t)v;
}

static int lookup_item(void *vctx, const char *name, int number, int64_t *index, fr_error *err)
{
  lookup_ctx *c = vctx;
  int l = fr_label_map_get(&c->names, name, 0);
  if (l < 0)
    return FR_ERR_NOT_FOUND;
  const eval_items *it = c->it;
  int64_t b = it->label_start[l], e = it->label_start[l + 1];
  for (int64_t k = b; k < e; k++)
    if (c->number[it->by_label[k]] == number) {
      *index = it->by_label[k];
      return FR_OK;
    }
  /* No numbered file names: the label's number-th item in item order. */
  if (number <= e - b && c->number[it->by_label[b]] < 0) {
    *index = it->by_label[b + number - 1];
    return FR_OK;
  }
  return FR_ERR_NOT_FOUND;
}

int eval_pairs_file(fr_results_reader *r, const eval_items *it, const char *path, eval_pairs *out, fr_error *err)
{
  memset(out, 0, sizeof(*out));
  lookup_ctx c = {.it = it};
  int rc = fr_label_map_init(&c.names) ? nomem(r, "label names", err) : FR_OK;
  for (int l = 0; !rc && l < it->n_labels; l++)
    if (fr_label_map_get(&c.names, fr_results_reader_label_name(r, l), 1) < 0)
      rc = nomem(r, "label names", err);
  c.number = malloc((size_t)(it->n ? it->n : 1) * sizeof(int32_t));
  char **keys = malloc((size_t)FR_RESULTS_BLOCK_ROWS * sizeof(char *));
  if (!rc && (!c.number || !keys))
    rc = nomem(r, "image numbers", err);
  /* Keys are read in blocks of consecutive used items' rows. */
  for (int64_t k = 0; !rc && k < it->n;) {
    int64_t first = it->index[k], last = first;
    int64_t e = k;
    while (e < it->n && it->index[e] - first < FR_RESULTS_BLOCK_ROWS)
      last = it->index[e++];
    if ((rc = fr_results_read_keys(r, first, last - first + 1, keys, err)))
      break;
    for (int64_t q = k; q < e; q++)
      c.number[q] = image_number(keys[it->index[q] - first]);
    fr_results_free_keys(keys, last - first + 1);
    k = e;
  }
  fr_pairs pairs = {0};
  if (!rc)
    rc = fr_pairs_read_file(path, lookup_item, &c, &pairs, err);
  for (int64_t i = 0; !rc && i < pairs.n; i++)
    rc = pairs_push(out, pairs.pairs[i].a, pairs.pairs[i].b, pairs.pairs[i].genuine, err);
  out->skipped = pairs.n_skipped;
  fr_pairs_free(&pairs);
  free(keys);
  free(c.number);
  fr_label_map_free(&c.names);
  if (rc)
    eval_pairs_free(out);
  return rc;
}

/* ---- rows ---- */

int eval_gather_rows(fr_results_reader *r, const eval_items *it, const uint8_t *need, float **rows, int64_t **slot,
                     int64_t *count, fr_error *err)
{
  int dim = fr_results_reader_dim(r);
  *rows = NULL;
  *count = 0;
  *slot = malloc((size_t)(it->n ? it->n : 1) * sizeof(int64_t));
  if (!*slot)
    return nomem(r, "row slots", err);
  int64_t n = 0;
  for (int64_t i = 0; i < it->n; i++)
    (*slot)[i] = need[i] ? n++ : -1;
  *rows = malloc((size_t)(n ? n : 1) * (size_t)dim * sizeof(float));
  float *block = malloc((size_t)FR_RESULTS_BLOCK_ROWS * (size_t)dim * sizeof(float));
  int rc = !*rows || !block ? nomem(r, "embedding rows", err) : FR_OK;
  for (int64_t k = 0; !rc && k < it->n;) {
    while (k < it->n && !need[k])
      k++;
    if (k == it->n)
      break;
    int64_t first = it->index[k], e = k, last = first;
    while (e < it->n && it->index[e] - first < FR_RESULTS_BLOCK_ROWS)
      last = it->index[e++];
    if ((rc = fr_results_read_embedding(r, first, last - first + 1, block, err)))
      break;
    for (int64_t q = k; q < e; q++)
      if (need[q])
        memcpy(*rows + (size_t)(*slot)[q] * dim, block + (size_t)(it->index[q] - first) * dim,
               (size_t)dim * sizeof(float));
    k = e;
  }
  free(block);
  if (rc) {
    free(*rows);
    free(*slot);
    *rows = NULL;
    *slot = NULL;
    return rc;
  }
  *count = n;
  return FR_OK;
}

int eval_pairs_score(fr_results_reader *r, const eval_items *it, const eval_pairs *p, double *scores,
                     fr_error *err)
{
  int dim = fr_results_reader_dim(r);
  uint8_t *need = calloc((size_t)(it->n ? it->n : 1), 1);
  if (!need)
    return nomem(r, "pair rows", err);
  for (int64_t i = 0; i < p->n; i++)
    need[p->a[i]] = need[p->b[i]] = 1;
  float *rows = NULL;
  int64_t *slot = NULL, count = 0;
  int rc = eval_gather_rows(r, it, need, &rows, &slot, &count, err);
  free(need);
  for (int64_t i = 0; !rc && i < p->n; i++) {
    const float *x = rows + (size_t)slot[p->a[i]] * dim, *y = rows + (size_t)slot[p->b[i]] * dim;
    double s = 0;
    for (int k = 0; k < dim; k++)
      s += (double)x[k] * y[k];
    if (!isfinite(s))
      rc = fr_error_set(err, FR_ERR_FORMAT, "%s: item %lld or %lld has a non-finite embedding",
                        fr_results_reader_path(r), (long long)it->index[p->a[i]], (long long)it->index[p->b[i]]);
    scores[i] = s;
  }
  free(rows);
  free(slot);
  return rc;
}

int64_t eval_span_end(const eval_items *it, int64_t p0, int64_t max_rows)
{
  int64_t p1 = p0;
  while (p1 < it->n && it->index[p1] - it->index[p0] < max_rows)
    p1++;
  return p1;
}

int eval_read_used(fr_results_reader *r, const eval_items *it, int64_t p0, int64_t p1, float *scratch, float *out,
                   fr_error *err)
{
  if (p1 <= p0)
    return FR_OK;
  int dim = fr_results_reader_dim(r);
  int64_t first = it->index[p0], span = it->index[p1 - 1] - first + 1;
  if (span == p1 - p0) /* no failed items in between: read straight into place */
    return fr_results_read_embedding(r, first, span, out, err);
  int rc = fr_results_read_embedding(r, first, span, scratch, err);
  for (int64_t p = p0; !rc && p < p1; p++)
    memcpy(out + (size_t)(p - p0) * dim, scratch + (size_t)(it->index[p] - first) * dim, (size_t)dim * sizeof(float));
  return rc;
}
