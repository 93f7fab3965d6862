/* Device similarity kernels against the CPU path (fr_similarity_cpu + fr_topk_merge,
 * itself tested against the double reference in test_gallery): the scores are meant
 * to be bit-identical, so lists and pairs are compared exactly, ties included. Shapes
 * cover the unrolled (dim % 8 == 0) and generic kernels, a dim % 4 != 0 tail, k > n,
 * row and column counts off the tiles, and chunking forced by a small binding limit. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "faceri/similarity.h"
#include "faceri/vk_context.h"
#include "test_util.h"

static fr_vk_context *ctx;

static void fill(float *v, int64_t n, int dim, unsigned *s, int normalise)
{
  for (int64_t i = 0; i < n; i++) {
    double n2 = 0;
    for (int k = 0; k < dim; k++) {
      *s = *s * 1103515245u + 12345u;
      v[i * dim + k] = (float)(*s >> 8) / (1 << 24) * 2.0f - 1.0f;
      n2 += (double)v[i * dim + k] * v[i * dim + k];
    }
    for (int k = 0; normalise && k < dim; k++)
      v[i * dim + k] = (float)(v[i * dim + k] / sqrt(n2));
  }
}

/* Copies row src of b over rows dst (exact ties between templates far apart). */
static void dup_rows(float *b, int dim, int64_t src, const int64_t *dst, int n)
{
  for (int i = 0; i < n; i++)
    memcpy(b + dst[i] * dim, b + src * dim, (size_t)dim * sizeof(float));
}

static int create(const fr_similarity_device_options *o, fr_similarity_device **d)
{
  fr_error err = {0};
  int rc = fr_similarity_device_create(ctx, o, d, &err);
  if (rc)
    printf("\n  %s\n", err.message);
  return rc;
}

/* Device top-k of a against b equals the CPU's: same indices, same score bits. */
static void check_topk(const fr_similarity_device_options *o, int64_t m, int64_t n, int dim, int k, int ties,
                       int64_t *chunk_rows)
{
  float *a = malloc((size_t)m * dim * sizeof(float)), *b = malloc((size_t)n * dim * sizeof(float));
  float *c = malloc((size_t)m * n * sizeof(float));
  CU_ASSERT_FATAL(a && b && c);
  unsigned s = (unsigned)(m * 31 + n * 7 + dim);
  fill(a, m, dim, &s, 1);
  fill(b, n, dim, &s, 1);
  if (ties == 2) {
    /* Scores rising with the template index: every score enters every list at the
     * top, the worst case for the kernels' insertion loops (lavapipe cuts an
     * invocation's loops after 65,535 iterations in all). */
    for (int64_t j = 0; j < n; j++) {
      double t = 1.5 * (double)j / (double)n;
      for (int q = 0; q < dim; q++)
        b[j * dim + q] = (float)(q == 0 ? cos(t) : q == 1 ? sin(t) : 0.0);
    }
    for (int64_t i = 0; i < m; i++)
      for (int q = 0; q < dim; q++)
        a[i * dim + q] = (float)(q == 0 ? cos(1.6 + 0.001 * (double)i) : q == 1 ? sin(1.6 + 0.001 * (double)i) : 0.0);
  } else if (ties) {
    int64_t dst[] = {n / 2, n - 1, 1};
    dup_rows(b, dim, 0, dst, 3);
    memcpy(a + dim, b, (size_t)dim * sizeof(float)); /* probe 1 scores the tied templates highest */
  }
  fr_topk ref, got;
  fr_error err = {0};
  CU_ASSERT_EQUAL_FATAL(fr_topk_init(&ref, m, k, &err), FR_OK);
  CU_ASSERT_EQUAL_FATAL(fr_topk_init(&got, m, k, &err), FR_OK);
  fr_similarity_cpu(a, m, b, n, dim, c, n);
  fr_topk_merge(&ref, 0, m, 0, n, c, n);
  fr_similarity_device *d = NULL;
  CU_ASSERT_EQUAL_FATAL(create(o, &d), FR_OK);
  int rc = fr_similarity_device_set_b(d, n, dim, &err);
  /* Uploaded in two uneven parts, so a part can straddle chunks. */
  if (!rc)
    rc = fr_similarity_device_upload_b(d, 0, n / 3, b, &err);
  if (!rc)
    rc = fr_similarity_device_upload_b(d, n / 3, n - n / 3, b + (size_t)(n / 3) * dim, &err);
  if (!rc)
    rc = fr_similarity_device_topk(d, a, m, &got, 0, &err);
  if (rc)
    printf("\n  %s\n", err.message);
  CU_ASSERT_EQUAL(rc, FR_OK);
  if (chunk_rows)
    *chunk_rows = fr_similarity_device_chunk_rows(d);
  int64_t bad = 0;
  for (int64_t i = 0; i < m * k; i++)
    if (ref.index[i] != got.index[i] || memcmp(&ref.score[i], &got.score[i], sizeof(float)))
      bad++;
  if (bad)
    printf("\n  m %lld n %lld dim %d k %d: %lld of %lld entries differ (first row: ref %lld %.9g, got %lld %.9g)\n",
           (long long)m, (long long)n, dim, k, (long long)bad, (long long)(m * k), (long long)ref.index[0],
           ref.score[0], (long long)got.index[0], got.score[0]);
  CU_ASSERT_EQUAL(bad, 0);
  if (ties == 1 && k >= 4 && m > 1) { /* the tie order: lower index first */
    CU_ASSERT_EQUAL(got.index[k + 0], 0);
    CU_ASSERT_EQUAL(got.index[k + 1], 1);
    CU_ASSERT_EQUAL(got.index[k + 2], n / 2);
    CU_ASSERT_EQUAL(got.index[k + 3], n - 1);
  }
  if (k > n) { /* k > n: the lists end with empty slots */
    CU_ASSERT_EQUAL(got.index[k - 1], -1);
    CU_ASSERT(isinf(got.score[k - 1]) && got.score[k - 1] < 0);
  }
  CU_ASSERT_EQUAL(fr_vk_validation_messages(ctx), 0);
  fr_similarity_device_destroy(d);
  fr_topk_free(&ref);
  fr_topk_free(&got);
  free(a);
  free(b);
  free(c);
}

static void test_topk_unrolled(void)
{
  if (!ctx)
    TEST_SKIP("no Vulkan device");
  check_topk(NULL, 77, 1301, 192, 10, 1, NULL); /* the gallery shape: dim 192 */
  check_topk(NULL, 33, 517, 64, 100, 1, NULL);  /* k ~ 100 */
  check_topk(NULL, 40, 3000, 8, 100, 2, NULL);  /* every score inserted */
  check_topk(NULL, 9, 20000, 8, 10, 2, NULL);
}

static void test_topk_generic(void)
{
  if (!ctx)
    TEST_SKIP("no Vulkan device");
  check_topk(NULL, 41, 299, 45, 7, 1, NULL); /* dim % 4 != 0: padded rows and an in-order tail */
  check_topk(NULL, 9, 70, 20, 5, 0, NULL);   /* dim % 8 == 4 */
  check_topk(NULL, 5, 3, 3, 8, 0, NULL);     /* k > n, dim below one step */
  check_topk(NULL, 1, 1, 1, 1, 0, NULL);
  check_topk(NULL, 17, 2500, 12, 60, 2, NULL);
}

static void test_topk_chunked(void)
{
  if (!ctx)
    TEST_SKIP("no Vulkan device");
  /* A 2 KiB binding limit: 24-d rows of 96 bytes give 21 templates a chunk, and the
   * lists of k = 5 over the splits force several probe chunks too. */
  fr_similarity_device_options o = {.max_binding_bytes = 2048};
  int64_t rows = 0;
  check_topk(&o, 70, 203, 24, 5, 1, &rows);
  CU_ASSERT_EQUAL(rows, 21);
  fr_similarity_device_options o2 = {.chunk_columns = 40};
  check_topk(&o2, 50, 333, 192, 6, 1, &rows);
  CU_ASSERT_EQUAL(rows, 40);
}

/* Merging into lists that already hold candidates, as fr_topk_merge does. */
static void test_topk_merges(void)
{
  if (!ctx)
    TEST_SKIP("no Vulkan device");
  enum { M = 12, N = 90, D = 16, K = 6 };
  static float a[M * D], b[N * D], c[M * N];
  unsigned s = 5;
  fill(a, M, D, &s, 1);
  fill(b, N, D, &s, 1);
  fr_topk ref, got;
  fr_error err = {0};
  fr_similarity_device *d = NULL;
  CU_ASSERT_EQUAL_FATAL(fr_topk_init(&ref, M, K, &err), FR_OK);
  CU_ASSERT_EQUAL_FATAL(fr_topk_init(&got, M, K, &err), FR_OK);
  fr_similarity_cpu(a, M, b, N, D, c, N);
  fr_topk_merge(&ref, 0, M, 0, N, c, N);
  /* got already holds the first 40 columns (from the CPU); the device then adds all
   * 90, so columns 0-39 arrive twice: a candidate list keeps both copies in order,
   * exactly as fr_topk_merge fed the same tile twice would. */
  fr_topk twice;
  CU_ASSERT_EQUAL_FATAL(fr_topk_init(&twice, M, K, &err), FR_OK);
  fr_topk_merge(&twice, 0, M, 0, 40, c, N);
  fr_topk_merge(&twice, 0, M, 0, N, c, N);
  fr_topk_merge(&got, 0, M, 0, 40, c, N);
  CU_ASSERT_EQUAL_FATAL(create(NULL, &d), FR_OK);
  CU_ASSERT_EQUAL(fr_similarity_device_set_b(d, N, D, &err), FR_OK);
  CU_ASSERT_EQUAL(fr_similarity_device_upload_b(d, 0, N, b, &err), FR_OK);
  CU_ASSERT_EQUAL(fr_similarity_device_topk(d, a, M, &got, 0, &err), FR_OK);
  CU_ASSERT_EQUAL(memcmp(got.index, twice.index, sizeof(int64_t) * M * K), 0);
  CU_ASSERT_EQUAL(memcmp(got.score, twice.score, sizeof(float) * M * K), 0);
  /* Rows [4, 8) of a into rows [4, 8) of a fresh set: the rest stay empty. */
  fr_topk part;
  CU_ASSERT_EQUAL_FATAL(fr_topk_init(&part, M, K, &err), FR_OK);
  CU_ASSERT_EQUAL(fr_similarity_device_topk(d, a + 4 * D, 4, &part, 4, &err), FR_OK);
  CU_ASSERT_EQUAL(memcmp(part.index + 4 * K, ref.index + 4 * K, sizeof(int64_t) * 4 * K), 0);
  CU_ASSERT_EQUAL(part.index[0], -1);
  CU_ASSERT_EQUAL(part.index[8 * K], -1);
  /* Bad calls name the problem and change nothing. */
  CU_ASSERT_EQUAL(fr_similarity_device_topk(d, a, M, &part, 1, &err), FR_ERR_INVALID);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "outside"));
  CU_ASSERT_EQUAL(fr_similarity_device_upload_b(d, N - 1, 2, b, &err), FR_ERR_INVALID);
  fr_topk wide;
  CU_ASSERT_EQUAL_FATAL(fr_topk_init(&wide, 1, FR_SIMILARITY_DEVICE_MAX_K + 1, &err), FR_OK);
  CU_ASSERT_EQUAL(fr_similarity_device_topk(d, a, 1, &wide, 0, &err), FR_ERR_UNSUPPORTED);
  fr_topk_free(&wide);
  CU_ASSERT_EQUAL(fr_similarity_device_set_b(d, 0, D, &err), FR_ERR_INVALID);
  CU_ASSERT_EQUAL(fr_similarity_device_topk(d, a, M, &part, 0, &err), FR_ERR_INVALID);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "no templates"));
  CU_ASSERT_EQUAL(fr_vk_validation_messages(ctx), 0);
  fr_similarity_device_destroy(d);
  fr_topk_free(&ref);
  fr_topk_free(&got);
  fr_topk_free(&twice);
  fr_topk_free(&part);
}

/* Device pairs above a threshold equal a scan of the CPU tile, in (a, b) order. */
static void check_pairs(const fr_similarity_device_options *o, int64_t n, int dim, int64_t a0, int64_t col_begin,
                        int upper)
{
  float *b = malloc((size_t)n * dim * sizeof(float)), *c = malloc((size_t)n * n * sizeof(float));
  CU_ASSERT_FATAL(b && c);
  unsigned s = (unsigned)(n + dim);
  fill(b, n, dim, &s, 1);
  /* Near-duplicates: perturbed copies, and an exact copy. */
  for (int64_t i = 10; i + 3 < n; i += 17)
    for (int k = 0; k < dim; k++)
      b[(i + 3) * dim + k] = b[i * dim + k] + (k % 5 == 0 ? 0.01f : 0.0f);
  memcpy(b + (n - 1) * dim, b + 2 * dim, (size_t)dim * sizeof(float));
  fr_similarity_cpu(b, n, b, n, dim, c, n);
  double thr = 0.9;
  int64_t m = n - a0;
  fr_similarity_device *d = NULL;
  fr_error err = {0};
  fr_similarity_pairs got = {0};
  CU_ASSERT_EQUAL_FATAL(create(o, &d), FR_OK);
  int rc = fr_similarity_device_set_b(d, n, dim, &err);
  if (!rc)
    rc = fr_similarity_device_upload_b(d, 0, n, b, &err);
  if (!rc)
    rc = fr_similarity_device_pairs(d, b + a0 * dim, m, a0, col_begin, thr, upper, 1 << 20, &got, &err);
  if (rc)
    printf("\n  %s\n", err.message);
  CU_ASSERT_EQUAL(rc, FR_OK);
  int64_t want = 0, bad = 0;
  for (int64_t i = a0; i < n; i++)
    for (int64_t j = col_begin; j < n; j++)
      if (c[i * n + j] > thr && (!upper || j > i)) {
        if (want >= got.n || got.a[want] != i || got.b[want] != j || memcmp(&got.score[want], &c[i * n + j], 4))
          bad++;
        want++;
      }
  if (want <= 2)
    printf("\n  n %lld dim %d: only %lld pairs\n", (long long)n, dim, (long long)want);
  CU_ASSERT(want > 2);
  CU_ASSERT_EQUAL(got.n, want);
  CU_ASSERT_EQUAL(got.total, want);
  CU_ASSERT_EQUAL(bad, 0);
  /* A threshold equal to a pair's score leaves it out (strictly above). */
  fr_similarity_pairs eq = {0};
  CU_ASSERT_EQUAL(fr_similarity_device_pairs(d, b + 10 * dim, 1, 10, 13, c[10 * n + 13], 0, 100, &eq, &err), FR_OK);
  for (int64_t i = 0; i < eq.n; i++)
    CU_ASSERT(eq.b[i] != 13);
  /* Too many pairs: refused with the count. */
  fr_similarity_pairs many = {0};
  CU_ASSERT_EQUAL(fr_similarity_device_pairs(d, b, n, 0, 0, -2.0, 0, 10, &many, &err), FR_ERR_UNSUPPORTED);
  CU_ASSERT(many.total > 10);
  CU_ASSERT_EQUAL(fr_vk_validation_messages(ctx), 0);
  fr_similarity_pairs_free(&got);
  fr_similarity_pairs_free(&eq);
  fr_similarity_pairs_free(&many);
  fr_similarity_device_destroy(d);
  free(b);
  free(c);
}

static void test_pairs(void)
{
  if (!ctx)
    TEST_SKIP("no Vulkan device");
  check_pairs(NULL, 300, 192, 0, 0, 1);
  check_pairs(NULL, 211, 45, 50, 50, 1);
  check_pairs(NULL, 150, 24, 7, 100, 0);
  fr_similarity_device_options o = {.max_binding_bytes = 2048};
  check_pairs(&o, 130, 24, 20, 20, 1);
}

int main(void)
{
  fr_error err = {0};
  if (fr_vk_context_create(NULL, &ctx, &err)) {
    printf("no Vulkan device: %s\n", err.message);
    ctx = NULL;
  } else if (!fr_similarity_device_usable(ctx)) {
    printf("the device lacks what the similarity kernels need\n");
    fr_vk_context_destroy(ctx);
    ctx = NULL;
  }
  if (CU_initialize_registry() != CUE_SUCCESS)
    return 1;
  CU_pSuite s = CU_add_suite("similarity", NULL, NULL);
  CU_add_test(s, "top-k, unrolled kernel", test_topk_unrolled);
  CU_add_test(s, "top-k, generic kernel", test_topk_generic);
  CU_add_test(s, "top-k, forced chunking", test_topk_chunked);
  CU_add_test(s, "top-k merges into lists", test_topk_merges);
  CU_add_test(s, "pairs above a threshold", test_pairs);
  int rc = test_run_all();
  fr_vk_context_destroy(ctx);
  return rc;
}
