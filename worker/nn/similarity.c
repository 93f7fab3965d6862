/* Similarity search on the device (include/faceri/similarity.h): the templates B
 * live on the device in chunks (each within the binding limits); probe rows A go up
 * in chunks too, and every (A chunk, B chunk) pair is one dispatch of a kernel that
 * scores and selects in place (shaders/similarity.glsl):
 *   similarity_topk   per (row, split) sorted top-k lists, kept on the device across
 *                     the B chunks, merged on the host into the caller's fr_topk
 *   similarity_pairs  the pairs above a threshold, appended through an atomic counter
 *                     and sorted on the host (the kernel's order is a race)
 * Both compute fr_similarity_cpu's arithmetic exactly, so results equal the CPU path
 * bit for bit, ties included. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "faceri/similarity.h"
#include "faceri/vk_context.h"

/* Must match R and C in shaders/similarity.glsl. */
#define SIM_R 4
#define SIM_C 4
#define SIM_MIN_SUBGROUP 8u
/* B chunk (one dispatch) and A chunk sizes: a CPU device wants chunks whose
 * templates stay in its caches while every row group passes over them. */
#define CHUNK_COLS_CPU 8192
#define CHUNK_COLS_GPU 65536
#define CHUNK_ROWS 8192
/* Work per submission, in scored pairs: keeps one submit well inside the fence
 * timeout on a slow CPU device. */
#define PAIRS_PER_SUBMIT ((uint64_t)1 << 26)
/* lavapipe ends an invocation's loops silently once they have run 65,535 iterations
 * in all (one counter per invocation, every loop's back-edges counted, a divergent
 * loop for as long as any lane is in it): a dispatch gives each lane few enough
 * columns that even the worst case (every score inserted, every insertion shifting
 * the whole list) stays under it. GPUs have no such limit. */
#define LOOP_BUDGET_CPU 60000
#define LOOP_BUDGET_GPU (1 << 24)
#define MAX_SPLITS 64

typedef struct sim_push {
  uint32_t m, n, ld4, dim;
  uint32_t cbase, cols_per_split, splits, k;
  uint32_t first;
  int32_t col0, row0;
  uint32_t upper;
  float thr;
  uint32_t cap;
} sim_push;

struct fr_similarity_device {
  fr_vk_context *ctx;
  fr_vk_kernel *topk, *pairs;             /* generic dim */
  fr_vk_kernel *topk_fixed, *pairs_fixed; /* CPU devices: specialised for the templates' dim */
  uint32_t wg;
  int cpu;
  uint64_t max_binding;     /* bytes one binding may span */
  int64_t chunk_cols_max;   /* B rows per chunk */
  int64_t n;
  int dim, ld4;
  fr_vk_buffer *chunks; /* B, chunk i holds rows [i * chunk_rows, ...) */
  int n_chunks;
  int64_t chunk_rows;
  fr_vk_buffer a, top_s, top_i, hits;
  float *pack; /* padded rows for dims that are not a multiple of 4 */
  size_t pack_floats;
};

int fr_similarity_device_usable(const fr_vk_context *ctx)
{
  const fr_vk_device_info *info = fr_vk_context_device(ctx);
  return info->has_texel_rgba32f && info->subgroup_size >= SIM_MIN_SUBGROUP &&
         (info->subgroup_ops & VK_SUBGROUP_FEATURE_SHUFFLE_BIT) && info->max_push_constants >= sizeof(sim_push);
}

int fr_similarity_device_create(fr_vk_context *ctx, const fr_similarity_device_options *o,
                                fr_similarity_device **out, fr_error *err)
{
  *out = NULL;
  const fr_vk_device_info *info = fr_vk_context_device(ctx);
  if (!fr_similarity_device_usable(ctx))
    return fr_error_set(err, FR_ERR_UNSUPPORTED,
                        "similarity kernels: %s lacks RGBA32F texel buffers or subgroup shuffles over %u lanes",
                        info->name, SIM_MIN_SUBGROUP);
  fr_similarity_device *d = calloc(1, sizeof(*d));
  if (!d)
    return fr_error_set(err, FR_ERR_NOMEM, "similarity kernels: out of memory");
  d->ctx = ctx;
  d->cpu = info->type == VK_PHYSICAL_DEVICE_TYPE_CPU;
  uint32_t lim = info->max_workgroup_size[0] < info->max_workgroup_invocations ? info->max_workgroup_size[0]
                                                                               : info->max_workgroup_invocations;
  /* On a CPU one subgroup per workgroup keeps a row group's work on one core. */
  d->wg = d->cpu ? info->subgroup_size : 64;
  if (d->wg > lim)
    d->wg = lim;
  d->max_binding = info->max_storage_buffer_range;
  if (info->max_texel_buffer_elements * 16 < d->max_binding)
    d->max_binding = info->max_texel_buffer_elements * 16;
  if (o && o->max_binding_bytes && o->max_binding_bytes < d->max_binding)
    d->max_binding = o->max_binding_bytes;
  d->chunk_cols_max = o && o->chunk_columns > 0 ? o->chunk_columns : d->cpu ? CHUNK_COLS_CPU : CHUNK_COLS_GPU;
  const fr_vk_binding_kind kinds[4] = {FR_BIND_TEXEL, FR_BIND_TEXEL, FR_BIND_STORAGE, FR_BIND_STORAGE};
  uint32_t spec[2] = {d->wg, 0};
  int rc = fr_vk_kernel_create(ctx, "similarity_topk", 4, kinds, sizeof(sim_push), spec, 2, &d->topk, err);
  if (!rc)
    rc = fr_vk_kernel_create(ctx, "similarity_pairs", 3, kinds, sizeof(sim_push), spec, 2, &d->pairs, err);
  if (rc) {
    fr_similarity_device_destroy(d);
    return rc;
  }
  *out = d;
  return FR_OK;
}

static void free_b(fr_similarity_device *d)
{
  for (int i = 0; i < d->n_chunks; i++)
    fr_vk_buffer_destroy(d->ctx, &d->chunks[i]);
  free(d->chunks);
  d->chunks = NULL;
  d->n_chunks = 0;
  d->n = 0;
  fr_vk_kernel_destroy(d->ctx, d->topk_fixed);
  fr_vk_kernel_destroy(d->ctx, d->pairs_fixed);
  d->topk_fixed = d->pairs_fixed = NULL;
}

void fr_similarity_device_destroy(fr_similarity_device *d)
{
  if (!d)
    return;
  free_b(d);
  fr_vk_kernel_destroy(d->ctx, d->topk);
  fr_vk_kernel_destroy(d->ctx, d->pairs);
  fr_vk_buffer_destroy(d->ctx, &d->a);
  fr_vk_buffer_destroy(d->ctx, &d->top_s);
  fr_vk_buffer_destroy(d->ctx, &d->top_i);
  fr_vk_buffer_destroy(d->ctx, &d->hits);
  free(d->pack);
  free(d);
}

int64_t fr_similarity_device_chunk_rows(const fr_similarity_device *d) { return d->chunk_rows; }

int fr_similarity_device_set_b(fr_similarity_device *d, int64_t n, int dim, fr_error *err)
{
  free_b(d);
  if (n < 1 || dim < 1 || dim > 65536 || n > INT32_MAX / 2)
    return fr_error_set(err, FR_ERR_INVALID, "similarity: %lld templates of %d values", (long long)n, dim);
  d->dim = dim;
  d->ld4 = (dim + 3) / 4;
  uint64_t row_bytes = (uint64_t)d->ld4 * 16;
  int64_t rows = (int64_t)(d->max_binding / row_bytes);
  if (rows > d->chunk_cols_max)
    rows = d->chunk_cols_max;
  if (rows < 1)
    return fr_error_set(err, FR_ERR_UNSUPPORTED, "similarity: a %d-value row exceeds the %llu-byte binding limit", dim,
                        (unsigned long long)d->max_binding);
  d->chunk_rows = rows;
  int nc = (int)((n + rows - 1) / rows);
  d->chunks = calloc((size_t)nc, sizeof(fr_vk_buffer));
  if (!d->chunks)
    return fr_error_set(err, FR_ERR_NOMEM, "similarity: out of memory for %d template chunks", nc);
  d->n = n;
  for (int i = 0; i < nc; i++) {
    int64_t r = n - (int64_t)i * rows < rows ? n - (int64_t)i * rows : rows;
    int rc = fr_vk_buffer_create(d->ctx, (uint64_t)r * row_bytes, &d->chunks[i], err);
    if (rc) {
      fr_error_prefix(err, "similarity: templates chunk %d of %d", i + 1, nc);
      free_b(d);
      return rc;
    }
    d->n_chunks = i + 1;
  }
  /* On a CPU the unrolled kernel holds each lane's A rows in private arrays; a GPU
   * would spill them, so it keeps the generic one. */
  if (d->cpu && dim % 8 == 0 && dim <= 512) {
    const fr_vk_binding_kind kinds[4] = {FR_BIND_TEXEL, FR_BIND_TEXEL, FR_BIND_STORAGE, FR_BIND_STORAGE};
    uint32_t spec[2] = {d->wg, (uint32_t)dim / 8};
    int rc = fr_vk_kernel_create(d->ctx, "similarity_topk", 4, kinds, sizeof(sim_push), spec, 2, &d->topk_fixed, err);
    if (!rc)
      rc = fr_vk_kernel_create(d->ctx, "similarity_pairs", 3, kinds, sizeof(sim_push), spec, 2, &d->pairs_fixed,
                               err);
    if (rc) {
      free_b(d);
      return rc;
    }
  }
  return FR_OK;
}

/* rows x dim floats as rows of ld4 texels (zero-padded) in d->pack, or the input itself. */
static int padded(fr_similarity_device *d, const float *src, int64_t rows, const float **out, fr_error *err)
{
  if (d->dim % 4 == 0) {
    *out = src;
    return FR_OK;
  }
  size_t need = (size_t)rows * d->ld4 * 4;
  if (need > d->pack_floats) {
    float *p = realloc(d->pack, need * sizeof(float));
    if (!p)
      return fr_error_set(err, FR_ERR_NOMEM, "similarity: out of memory padding %lld rows", (long long)rows);
    d->pack = p;
    d->pack_floats = need;
  }
  memset(d->pack, 0, need * sizeof(float));
  for (int64_t i = 0; i < rows; i++)
    memcpy(d->pack + (size_t)i * d->ld4 * 4, src + (size_t)i * d->dim, (size_t)d->dim * sizeof(float));
  *out = d->pack;
  return FR_OK;
}

int fr_similarity_device_upload_b(fr_similarity_device *d, int64_t row0, int64_t rows, const float *b, fr_error *err)
{
  if (row0 < 0 || rows < 0 || row0 + rows > d->n)
    return fr_error_set(err, FR_ERR_INVALID, "similarity: template rows [%lld, %lld) outside the %lld set",
                        (long long)row0, (long long)(row0 + rows), (long long)d->n);
  uint64_t row_bytes = (uint64_t)d->ld4 * 16;
  while (rows > 0) {
    int c = (int)(row0 / d->chunk_rows);
    int64_t in_chunk = row0 - (int64_t)c * d->chunk_rows, r = d->chunk_rows - in_chunk < rows ? d->chunk_rows - in_chunk : rows;
    const float *src;
    int rc = padded(d, b, r, &src, err);
    if (!rc)
      rc = fr_vk_buffer_upload(d->ctx, &d->chunks[c], (uint64_t)in_chunk * row_bytes, src, (uint64_t)r * row_bytes, err);
    if (rc)
      return rc;
    b += (size_t)r * d->dim;
    row0 += r;
    rows -= r;
  }
  return FR_OK;
}

/* Grows a device buffer to at least `bytes` (contents are not kept). */
static int ensure(fr_similarity_device *d, fr_vk_buffer *b, uint64_t bytes, fr_error *err)
{
  if (b->buffer && b->size >= bytes)
    return FR_OK;
  fr_vk_buffer_destroy(d->ctx, b);
  return fr_vk_buffer_create(d->ctx, bytes, b, err);
}

/* How `mc` rows meet the columns: row groups x splits of the columns (enough
 * workgroups to fill the device), and the most columns one split may scan in one
 * dispatch (the loop budget); a dispatch covers at most splits x max_cps columns. */
typedef struct plan {
  uint32_t groups, splits;
  int64_t max_cps;
} plan;

static plan make_plan(const fr_similarity_device *d, int64_t mc, int64_t cols, int fixed, int k)
{
  plan p;
  p.groups = (uint32_t)((mc + (int64_t)d->wg * SIM_R - 1) / ((int64_t)d->wg * SIM_R));
  uint32_t target = d->cpu ? 64 : 2048, s = (target + p.groups - 1) / p.groups;
  uint32_t by_cols = (uint32_t)((cols + 255) / 256); /* at least 256 columns a split */
  if (s > by_cols)
    s = by_cols;
  if (s > MAX_SPLITS)
    s = MAX_SPLITS;
  p.splits = s < 1 ? 1 : s;
  /* Worst-case loop iterations per column group: the k loop when not unrolled, the
   * tails, and for top-k an insertion shifting k entries for each of the R x C scores;
   * once per dispatch, the lists' initialisation. */
  int64_t per_group = 1 + (fixed ? 0 : d->dim / 8) + (int64_t)SIM_R * SIM_C * (k + (d->dim % 8 ? 8 : 0));
  int64_t budget = (d->cpu ? LOOP_BUDGET_CPU : LOOP_BUDGET_GPU) - (int64_t)SIM_R * (k + 1);
  int64_t groups = budget / per_group;
  p.max_cps = (groups < 1 ? 1 : groups) * SIM_C;
  return p;
}

/* A rows [0, mc) uploaded (padded) to d->a. */
static int upload_a(fr_similarity_device *d, const float *a, int64_t mc, fr_error *err)
{
  uint64_t bytes = (uint64_t)mc * d->ld4 * 16;
  const float *src;
  int rc = ensure(d, &d->a, bytes, err);
  if (!rc)
    rc = padded(d, a, mc, &src, err);
  if (!rc)
    rc = fr_vk_buffer_upload(d->ctx, &d->a, 0, src, bytes, err);
  return rc;
}

/* Rows of A per chunk: within the binding limit for A and for the lists. */
static int64_t rows_per_chunk(const fr_similarity_device *d, int64_t m, uint64_t per_row_out)
{
  int64_t mc = m < CHUNK_ROWS ? m : CHUNK_ROWS;
  uint64_t row_bytes = (uint64_t)d->ld4 * 16;
  if ((uint64_t)mc * row_bytes > d->max_binding)
    mc = (int64_t)(d->max_binding / row_bytes);
  if (per_row_out && (uint64_t)mc * per_row_out > d->max_binding)
    mc = (int64_t)(d->max_binding / per_row_out);
  return mc;
}

static int check_ready(const fr_similarity_device *d, const char *what, fr_error *err)
{
  if (!d->n_chunks)
    return fr_error_set(err, FR_ERR_INVALID, "similarity %s: no templates set", what);
  return FR_OK;
}

/* Runs the dispatches of one A chunk over the B chunks from `c_first`, grouped into
 * submissions of bounded work; push fields that vary per chunk are filled here. */
static int run_chunks(fr_similarity_device *d, const fr_vk_kernel *k, fr_vk_arg *args, sim_push push, int64_t mc,
                      int64_t col_begin, plan p, fr_error *err)
{
  fr_vk_sequence *seq = NULL;
  int rc = fr_vk_sequence_create(d->ctx, 0, &seq, err);
  int c = (int)(col_begin / d->chunk_rows), first = 1;
  int64_t sub = -1; /* next column of chunk c to dispatch; -1: the chunk's start */
  while (!rc && c < d->n_chunks) {
    rc = fr_vk_sequence_begin(seq, err);
    uint64_t work = 0;
    while (!rc && c < d->n_chunks && work < PAIRS_PER_SUBMIT) {
      int64_t c0 = (int64_t)c * d->chunk_rows, n = d->n - c0 < d->chunk_rows ? d->n - c0 : d->chunk_rows;
      if (sub < 0)
        sub = col_begin > c0 ? col_begin - c0 : 0;
      int64_t range = n - sub < (int64_t)p.splits * p.max_cps ? n - sub : (int64_t)p.splits * p.max_cps;
      int64_t cps = (range + p.splits - 1) / p.splits;
      push.n = (uint32_t)(sub + range);
      push.cbase = (uint32_t)sub;
      push.cols_per_split = (uint32_t)((cps + SIM_C - 1) / SIM_C * SIM_C);
      push.splits = p.splits;
      push.first = (uint32_t)first;
      push.col0 = (int32_t)c0;
      args[1] = (fr_vk_arg){&d->chunks[c], 0, 0};
      if (work)
        fr_vk_sequence_barrier(seq); /* the lists / the counter of the previous dispatch */
      rc = fr_vk_sequence_dispatch(seq, k, args, &push, p.groups, p.splits, 1, NULL, err);
      first = 0;
      work += (uint64_t)mc * (uint64_t)range + 1;
      sub += range;
      if (sub >= n) {
        c++;
        sub = -1;
      }
    }
    if (!rc)
      rc = fr_vk_sequence_end(seq, err);
    if (!rc)
      rc = fr_vk_sequence_run(seq, err);
  }
  fr_vk_sequence_destroy(seq);
  return rc;
}

static int better(float s, int64_t i, float s2, int64_t i2)
{
  return s > s2 || (s == s2 && (i2 < 0 || i < i2));
}

/* Merges row `row` of t with `lists` sorted lists of k (scores s, indices ix). */
static void merge_row(fr_topk *t, int64_t row, int lists, const float *s, const int32_t *ix, float *tmp_s,
                      int64_t *tmp_i, int *head)
{
  int k = t->k;
  float *ts = t->score + (size_t)row * k;
  int64_t *ti = t->index + (size_t)row * k;
  int own = 0;
  for (int l = 0; l < lists; l++)
    head[l] = 0;
  for (int r = 0; r < k; r++) {
    int best = -1; /* -1: t's own list */
    float bs = own < k ? ts[own] : -INFINITY;
    int64_t bi = own < k ? ti[own] : -1;
    for (int l = 0; l < lists; l++) {
      if (head[l] >= k || ix[(size_t)l * k + head[l]] < 0)
        continue;
      float ls = s[(size_t)l * k + head[l]];
      int64_t li = ix[(size_t)l * k + head[l]];
      if (bi < 0 || better(ls, li, bs, bi)) {
        best = l;
        bs = ls;
        bi = li;
      }
    }
    if (best < 0)
      own++;
    else
      head[best]++;
    tmp_s[r] = bs;
    tmp_i[r] = bi;
  }
  memcpy(ts, tmp_s, (size_t)k * sizeof(float));
  memcpy(ti, tmp_i, (size_t)k * sizeof(int64_t));
}

int fr_similarity_device_topk(fr_similarity_device *d, const float *a, int64_t m, fr_topk *t, int64_t row0,
                              fr_error *err)
{
  int rc = check_ready(d, "top-k", err);
  if (rc)
    return rc;
  if (m < 0 || row0 < 0 || row0 + m > t->rows)
    return fr_error_set(err, FR_ERR_INVALID, "similarity top-k: rows [%lld, %lld) outside the %lld lists",
                        (long long)row0, (long long)(row0 + m), (long long)t->rows);
  int k = t->k;
  if (k > FR_SIMILARITY_DEVICE_MAX_K)
    return fr_error_set(err, FR_ERR_UNSUPPORTED, "similarity top-k: k = %d is above the device path's %d", k,
                        FR_SIMILARITY_DEVICE_MAX_K);
  const fr_vk_kernel *kern = d->topk_fixed ? d->topk_fixed : d->topk;
  int fixed = d->topk_fixed != NULL;
  int64_t widest = d->chunk_rows < d->n ? d->chunk_rows : d->n;
  float *hs = NULL, *tmp_s = malloc((size_t)k * sizeof(float));
  int32_t *hi = NULL;
  int64_t *tmp_i = malloc((size_t)k * sizeof(int64_t));
  int *head = malloc(MAX_SPLITS * sizeof(int));
  if (!tmp_s || !tmp_i || !head)
    rc = fr_error_set(err, FR_ERR_NOMEM, "similarity top-k: out of memory");
  for (int64_t i0 = 0; !rc && i0 < m;) {
    /* The split count is fixed for the A chunk (from its widest B chunk): the lists
     * carry over from one B chunk to the next. */
    int64_t mc = rows_per_chunk(d, m - i0, 0);
    plan p = make_plan(d, mc, widest, fixed, k);
    /* Fewer rows may mean more splits: settle (splits are bounded, so this ends). */
    for (int tries = 0; tries < 8 && mc > 0 && (uint64_t)mc * p.splits * k * 4 > d->max_binding; tries++) {
      mc = (int64_t)(d->max_binding / ((uint64_t)p.splits * k * 4));
      if (mc > 0)
        p = make_plan(d, mc, widest, fixed, k);
    }
    if (mc < 1 || (uint64_t)mc * p.splits * k * 4 > d->max_binding) {
      rc = fr_error_set(err, FR_ERR_UNSUPPORTED,
                        "similarity top-k: lists of %d for one row exceed the %llu-byte binding limit", k,
                        (unsigned long long)d->max_binding);
      break;
    }
    uint64_t lists = (uint64_t)mc * p.splits * k;
    rc = upload_a(d, a + (size_t)i0 * d->dim, mc, err);
    if (!rc)
      rc = ensure(d, &d->top_s, lists * 4, err);
    if (!rc)
      rc = ensure(d, &d->top_i, lists * 4, err);
    float *ns = rc ? NULL : realloc(hs, lists * sizeof(float));
    if (ns)
      hs = ns;
    int32_t *ni = rc || !ns ? NULL : realloc(hi, lists * sizeof(int32_t));
    if (ni)
      hi = ni;
    if (!rc && (!ns || !ni))
      rc = fr_error_set(err, FR_ERR_NOMEM, "similarity top-k: out of memory for %llu candidates",
                        (unsigned long long)lists);
    if (rc)
      break;
    sim_push push = {.m = (uint32_t)mc, .ld4 = (uint32_t)d->ld4, .dim = (uint32_t)d->dim, .splits = p.splits,
                     .k = (uint32_t)k};
    fr_vk_arg args[4] = {{&d->a, 0, (uint64_t)mc * d->ld4 * 16}, {0}, {&d->top_s, 0, lists * 4},
                         {&d->top_i, 0, lists * 4}};
    rc = run_chunks(d, kern, args, push, mc, 0, p, err);
    if (!rc)
      rc = fr_vk_buffer_download(d->ctx, &d->top_s, 0, hs, lists * 4, err);
    if (!rc)
      rc = fr_vk_buffer_download(d->ctx, &d->top_i, 0, hi, lists * 4, err);
    for (int64_t i = 0; !rc && i < mc; i++)
      merge_row(t, row0 + i0 + i, (int)p.splits, hs + (size_t)i * p.splits * k, hi + (size_t)i * p.splits * k, tmp_s,
                tmp_i, head);
    i0 += mc;
  }
  free(hs);
  free(hi);
  free(tmp_s);
  free(tmp_i);
  free(head);
  return rc;
}

void fr_similarity_pairs_free(fr_similarity_pairs *p)
{
  free(p->a);
  free(p->b);
  free(p->score);
  memset(p, 0, sizeof(*p));
}

static int cmp_hit(const void *x, const void *y)
{
  const uint32_t *a = x, *b = y;
  if (a[0] != b[0])
    return a[0] < b[0] ? -1 : 1;
  return a[1] < b[1] ? -1 : a[1] > b[1];
}

/* The threshold as a float f with (s > f) == ((double)s > thr) for every float s:
 * the CPU path compares the float score against the double threshold. */
static float float_threshold(double thr)
{
  float f = (float)thr;
  if ((double)f > thr)
    f = nextafterf(f, -INFINITY);
  return f;
}

int fr_similarity_device_pairs(fr_similarity_device *d, const float *a, int64_t m, int64_t a_origin,
                               int64_t col_begin, double thr, int upper, int64_t max_pairs, fr_similarity_pairs *out,
                               fr_error *err)
{
  memset(out, 0, sizeof(*out));
  int rc = check_ready(d, "pairs", err);
  if (rc)
    return rc;
  if (m < 0 || a_origin < 0 || a_origin + m > INT32_MAX || col_begin < 0 || col_begin > d->n || isnan(thr))
    return fr_error_set(err, FR_ERR_INVALID, "similarity pairs: bad rows, columns or threshold");
  const fr_vk_kernel *kern = d->pairs_fixed ? d->pairs_fixed : d->pairs;
  uint64_t cap_bytes = d->max_binding < ((uint64_t)64 << 20) ? d->max_binding : ((uint64_t)64 << 20);
  uint64_t cap = cap_bytes / 16 - 1;
  uint32_t *hits = NULL;
  for (int64_t i0 = 0; !rc && i0 < m;) {
    int64_t mc = rows_per_chunk(d, m - i0, 0), cols = d->n - col_begin > 0 ? d->n - col_begin : 1;
    if ((uint64_t)mc * (uint64_t)cols >= UINT32_MAX) /* the hit counter must not wrap */
      mc = (int64_t)(UINT32_MAX / (uint64_t)cols);
    uint32_t count = 0;
    rc = upload_a(d, a + (size_t)i0 * d->dim, mc, err);
    if (!rc)
      rc = ensure(d, &d->hits, (cap + 1) * 16, err);
    if (!rc)
      rc = fr_vk_buffer_upload(d->ctx, &d->hits, 0, &count, 4, err);
    if (rc)
      break;
    sim_push push = {.m = (uint32_t)mc, .ld4 = (uint32_t)d->ld4, .dim = (uint32_t)d->dim, .splits = 1,
                     .row0 = (int32_t)(a_origin + i0), .upper = upper != 0, .thr = float_threshold(thr),
                     .cap = (uint32_t)cap};
    fr_vk_arg args[3] = {{&d->a, 0, (uint64_t)mc * d->ld4 * 16}, {0}, {&d->hits, 0, (cap + 1) * 16}};
    plan p = make_plan(d, mc, cols, d->pairs_fixed != NULL, 0);
    rc = run_chunks(d, kern, args, push, mc, col_begin, p, err);
    if (!rc)
      rc = fr_vk_buffer_download(d->ctx, &d->hits, 0, &count, 4, err);
    if (rc)
      break;
    /* The counter wraps only past 2^32 hits; a chunk has fewer pairs than that. */
    if (count > cap || out->n + (int64_t)count > max_pairs) {
      out->total = out->n + count;
      rc = fr_error_set(err, FR_ERR_UNSUPPORTED, "similarity pairs: more than %lld pairs above %g",
                        (long long)(max_pairs < (int64_t)cap ? max_pairs : (int64_t)cap), thr);
      break;
    }
    uint32_t *nh = realloc(hits, ((size_t)count + 1) * 16);
    int64_t *na = realloc(out->a, ((size_t)(out->n + count) + 1) * sizeof(int64_t));
    if (na)
      out->a = na;
    int64_t *nb = realloc(out->b, ((size_t)(out->n + count) + 1) * sizeof(int64_t));
    if (nb)
      out->b = nb;
    float *ns = realloc(out->score, ((size_t)(out->n + count) + 1) * sizeof(float));
    if (ns)
      out->score = ns;
    if (nh)
      hits = nh;
    if (!nh || !na || !nb || !ns) {
      rc = fr_error_set(err, FR_ERR_NOMEM, "similarity pairs: out of memory for %u pairs", count);
      break;
    }
    if (count && (rc = fr_vk_buffer_download(d->ctx, &d->hits, 16, hits, (uint64_t)count * 16, err)))
      break;
    qsort(hits, count, 16, cmp_hit);
    for (uint32_t h = 0; h < count; h++) {
      out->a[out->n] = a_origin + i0 + hits[h * 4];
      out->b[out->n] = hits[h * 4 + 1];
      memcpy(&out->score[out->n], &hits[h * 4 + 2], sizeof(float));
      out->n++;
    }
    i0 += mc;
  }
  out->total = rc ? out->total : out->n;
  free(hits);
  return rc;
}
