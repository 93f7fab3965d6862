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
 * lower index, so CPU and device paths give the same candidate lists.
 *
 * Device (worker/nn/similarity.c, shaders/similarity_*.comp): the same scores,
 * bit for bit (the kernels repeat fr_similarity_cpu's summation order with no
 * contraction), consumed where they are computed: a per-row top-k or the pairs
 * above a threshold, so no score matrix crosses to the host. The templates B are
 * uploaded once in chunks that each fit a binding (maxStorageBufferRange,
 * maxTexelBufferElements); probe rows A go up in chunks per call. */
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

/* ---- device path ---- */
typedef struct fr_vk_context fr_vk_context;
typedef struct fr_similarity_device fr_similarity_device;

typedef struct fr_similarity_device_options {
  uint64_t max_binding_bytes; /* 0: the device's limits; smaller forces chunking (tests) */
  int64_t chunk_columns;      /* templates per dispatch; 0: 8192 on CPU devices, 65536 on GPUs */
} fr_similarity_device_options;

/* The device has what the kernels need (RGBA32F texel buffers, subgroup shuffles over 8 lanes). */
int fr_similarity_device_usable(const fr_vk_context *ctx);
int fr_similarity_device_create(fr_vk_context *ctx, const fr_similarity_device_options *opts,
                                fr_similarity_device **out, fr_error *err);
void fr_similarity_device_destroy(fr_similarity_device *d);
/* Makes room for n templates of dim values (discarding earlier ones); fill them with upload_b. */
int fr_similarity_device_set_b(fr_similarity_device *d, int64_t n, int dim, fr_error *err);
int fr_similarity_device_upload_b(fr_similarity_device *d, int64_t row0, int64_t rows, const float *b, fr_error *err);
/* Templates per device chunk (after set_b). */
int64_t fr_similarity_device_chunk_rows(const fr_similarity_device *d);
/* Merges the scores of a [m, dim] against every template into rows [row0, row0 + m)
 * of t, as fr_topk_merge with the whole of B would. t->k at most
 * FR_SIMILARITY_DEVICE_MAX_K: each lane keeps its lists by insertion, which only
 * pays while k is small against the templates scanned. */
#define FR_SIMILARITY_DEVICE_MAX_K 256
int fr_similarity_device_topk(fr_similarity_device *d, const float *a, int64_t m, fr_topk *t, int64_t row0,
                              fr_error *err);

/* Pairs (a_origin + i, j) with score > thr (the float score compared with the double
 * thr, as the CPU path does), over templates j >= col_begin, and j > a_origin + i when
 * upper; sorted by (a, b). More than max_pairs: FR_ERR_UNSUPPORTED, total says how
 * many were found in the chunk that overflowed. */
typedef struct fr_similarity_pairs {
  int64_t n, total;
  int64_t *a, *b;
  float *score;
} fr_similarity_pairs;
int fr_similarity_device_pairs(fr_similarity_device *d, const float *a, int64_t m, int64_t a_origin,
                               int64_t col_begin, double thr, int upper, int64_t max_pairs, fr_similarity_pairs *out,
                               fr_error *err);
void fr_similarity_pairs_free(fr_similarity_pairs *p);

#endif
