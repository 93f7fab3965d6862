/* Near-duplicate search for the audit: blocked products of embedding panels
 * (fr_similarity_cpu), over all pairs or within each identity. All pairs can also
 * run on the device (fr_similarity_device_pairs: the same scores bit for bit),
 * its pairs recorded in the CPU path's order so both write the same /audit. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "audit_internal.h"
#include "faceri/log.h"
#include "faceri/similarity.h"
#include "faceri/vk_context.h"

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

typedef struct panels {
  int dim;
  float *a, *b, *scratch, *tile;
  int64_t *pa, *pb;
} panels;

static void panels_free(panels *p)
{
  free(p->a);
  free(p->b);
  free(p->scratch);
  free(p->tile);
  free(p->pa);
  free(p->pb);
  memset(p, 0, sizeof(*p));
}

static int panels_init(panels *p, int dim, fr_error *err)
{
  memset(p, 0, sizeof(*p));
  p->dim = dim;
  p->a = malloc((size_t)PANEL_A * dim * sizeof(float));
  p->b = malloc((size_t)PANEL_B * dim * sizeof(float));
  p->scratch = malloc((size_t)PANEL_A * dim * sizeof(float));
  p->tile = malloc((size_t)PANEL_A * PANEL_A * sizeof(float)); /* the panel against itself */
  p->pa = malloc(PANEL_A * sizeof(int64_t));
  p->pb = malloc(PANEL_B * sizeof(int64_t));
  if (!p->a || !p->b || !p->scratch || !p->tile || !p->pa || !p->pb) {
    panels_free(p);
    return fr_error_set(err, FR_ERR_NOMEM, "audit: out of memory for duplicate panels");
  }
  return FR_OK;
}

/* The pairs of panel [a0, a1) (already in p->a) on the CPU: the panel against itself
 * (upper triangle), then against every later block, each tile in row-major order. */
static int cpu_panel(fr_results_reader *r, const eval_items *it, int64_t a0, int64_t a1, panels *p, double thr,
                     uint8_t *flags, audit_dups *d, fr_error *err)
{
  int dim = p->dim, rc = FR_OK;
  for (int64_t q = a0; q < a1; q++)
    p->pa[q - a0] = q;
  fr_similarity_cpu(p->a, a1 - a0, p->a, a1 - a0, dim, p->tile, a1 - a0);
  rc = scan_tile(d, it, p->tile, a1 - a0, a1 - a0, p->pa, p->pa, 1, thr, flags, err);
  for (int64_t b0 = a1; !rc && b0 < it->n;) {
    int64_t b1 = eval_span_end(it, b0, PANEL_B);
    if ((rc = eval_read_used(r, it, b0, b1, p->scratch, p->b, err)))
      break;
    for (int64_t q = b0; q < b1; q++)
      p->pb[q - b0] = q;
    fr_similarity_cpu(p->a, a1 - a0, p->b, b1 - b0, dim, p->tile, b1 - b0);
    rc = scan_tile(d, it, p->tile, a1 - a0, b1 - b0, p->pa, p->pb, 0, thr, flags, err);
    b0 = b1;
  }
  return rc;
}

static int all_pairs(fr_results_reader *r, const eval_items *it, double thr, uint8_t *flags, audit_dups *d,
                     fr_error *err)
{
  panels p;
  int rc = panels_init(&p, fr_results_reader_dim(r), err);
  for (int64_t a0 = 0; !rc && a0 < it->n;) {
    int64_t a1 = eval_span_end(it, a0, PANEL_A);
    if (!(rc = eval_read_used(r, it, a0, a1, p.scratch, p.a, err)))
      rc = cpu_panel(r, it, a0, a1, &p, thr, flags, d, err);
    a0 = a1;
  }
  panels_free(&p);
  return rc;
}

/* ---- device path: the same pairs, in the same order ---- */

/* Device hits of a panel: more than this and the panel is scanned on the CPU. */
#define DEVICE_MAX_PAIRS (4 << 20)

typedef struct hit_order {
  int64_t block, a, b;
  int64_t i; /* position in the device's list */
} hit_order;

static int cmp_order(const void *x, const void *y)
{
  const hit_order *p = x, *q = y;
  if (p->block != q->block)
    return p->block < q->block ? -1 : 1;
  if (p->a != q->a)
    return p->a < q->a ? -1 : 1;
  return p->b < q->b ? -1 : p->b > q->b;
}

/* Block of used position b as the CPU path cuts them after panel [a0, a1): 0 for the
 * panel itself, then 1, 2, ... (starts[] holds the block starts). */
static int64_t block_of(const int64_t *starts, int64_t n_starts, int64_t b)
{
  int64_t lo = 0, hi = n_starts - 1;
  while (lo < hi) {
    int64_t mid = (lo + hi + 1) / 2;
    if (starts[mid] <= b)
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

/* Records the device's pairs of panel [a0, a1) in the CPU path's order: block by
 * block, then row-major, so a truncated record keeps the same pairs. */
static int record_panel(const eval_items *it, int64_t a0, int64_t a1, const fr_similarity_pairs *hp, uint8_t *flags,
                        audit_dups *d, int64_t **starts, int64_t *cap, fr_error *err)
{
  int64_t ns = 0;
  for (int64_t b0 = a0; b0 < it->n; ns++) {
    if (ns == *cap) {
      int64_t c = *cap ? *cap * 2 : 256, *n = realloc(*starts, (size_t)c * sizeof(int64_t));
      if (!n)
        return fr_error_set(err, FR_ERR_NOMEM, "audit: out of memory for panel blocks");
      *starts = n;
      *cap = c;
    }
    (*starts)[ns] = b0;
    b0 = b0 == a0 ? a1 : eval_span_end(it, b0, PANEL_B);
  }
  hit_order *o = malloc(((size_t)hp->n + 1) * sizeof(hit_order));
  if (!o)
    return fr_error_set(err, FR_ERR_NOMEM, "audit: out of memory for %lld duplicate pairs", (long long)hp->n);
  for (int64_t i = 0; i < hp->n; i++)
    o[i] = (hit_order){block_of(*starts, ns, hp->b[i]), hp->a[i], hp->b[i], i};
  qsort(o, (size_t)hp->n, sizeof(hit_order), cmp_order);
  int rc = FR_OK;
  for (int64_t i = 0; !rc && i < hp->n; i++) {
    flags[o[i].a] |= FR_AUDIT_DUPLICATE;
    flags[o[i].b] |= FR_AUDIT_DUPLICATE;
    rc = record(d, it->index[o[i].a], it->index[o[i].b], hp->score[o[i].i], err);
  }
  free(o);
  return rc;
}

static int all_pairs_device(fr_results_reader *r, const eval_items *it, double thr, uint8_t *flags, audit_dups *d,
                            fr_similarity_device *dev, fr_error *err)
{
  panels p;
  int64_t *starts = NULL, cap = 0;
  int rc = panels_init(&p, fr_results_reader_dim(r), err);
  /* Every used embedding goes to the device once, as the templates (used positions). */
  if (!rc)
    rc = fr_similarity_device_set_b(dev, it->n, p.dim, err);
  for (int64_t a0 = 0; !rc && a0 < it->n;) {
    int64_t a1 = eval_span_end(it, a0, PANEL_A);
    if (!(rc = eval_read_used(r, it, a0, a1, p.scratch, p.a, err)))
      rc = fr_similarity_device_upload_b(dev, a0, a1 - a0, p.a, err);
    a0 = a1;
  }
  for (int64_t a0 = 0; !rc && a0 < it->n;) {
    int64_t a1 = eval_span_end(it, a0, PANEL_A);
    fr_similarity_pairs hp = {0};
    if ((rc = eval_read_used(r, it, a0, a1, p.scratch, p.a, err)))
      break;
    rc = fr_similarity_device_pairs(dev, p.a, a1 - a0, a0, a0, thr, 1, DEVICE_MAX_PAIRS, &hp, err);
    if (rc == FR_ERR_UNSUPPORTED) /* more than DEVICE_MAX_PAIRS: the CPU streams this dense panel */
      rc = cpu_panel(r, it, a0, a1, &p, thr, flags, d, err);
    else if (!rc)
      rc = record_panel(it, a0, a1, &hp, flags, d, &starts, &cap, err);
    fr_similarity_pairs_free(&hp);
    a0 = a1;
  }
  panels_free(&p);
  free(starts);
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

int audit_open_device(const fr_audit_options *o, fr_dup_scope scope, int64_t used, fr_vk_context **ctx,
                      fr_similarity_device **dev, fr_error *err)
{
  *ctx = NULL;
  *dev = NULL;
  double pairs = (double)used * (double)(used - 1) / 2;
  if (scope != FR_DUP_ALL || o->dup_device == FR_AUDIT_CPU ||
      (o->dup_device == FR_AUDIT_AUTO && pairs < AUDIT_DEVICE_MIN_PAIRS))
    return FR_OK;
  fr_vk_options vo = {.device = o->device, .validation = -1};
  int rc = fr_vk_context_create(&vo, ctx, err);
  if (!rc)
    rc = fr_similarity_device_create(*ctx, NULL, dev, err);
  if (rc) {
    fr_vk_context_destroy(*ctx);
    *ctx = NULL;
    if (o->dup_device == FR_AUDIT_AUTO) { /* the CPU path finds the same pairs */
      fr_warn("audit: no device for the duplicate search (%s); using the CPU", err->message);
      return FR_OK;
    }
  }
  return rc;
}

int audit_find_duplicates(fr_results_reader *r, const eval_items *it, fr_dup_scope scope, double thr,
                          uint8_t *flags, audit_dups *d, fr_similarity_device *dev, fr_error *err)
{
  if (scope == FR_DUP_OFF)
    return FR_OK;
  if (scope == FR_DUP_ALL)
    return dev ? all_pairs_device(r, it, thr, flags, d, dev, err) : all_pairs(r, it, thr, flags, d, err);
  return within_labels(r, it, thr, flags, d, err);
}
