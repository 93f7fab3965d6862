/* CPU score tiles and top-k lists (include/faceri/similarity.h). */
#include "faceri/similarity.h"

/* The score tiles are the whole cost of duplicate search and gallery search:
 * -O3 lets GCC vectorise the lane loops (-O2 keeps its cheap cost model). */
#if defined(__GNUC__) && !defined(__clang__) /* clang has no per-file optimize pragma (the fuzz build) */
#pragma GCC optimize("O3")
#endif

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define LANES 8

/* 4 x 4 register block of dot products: every loaded value feeds four
 * products, and the 8-lane interleave keeps a fixed summation order. */
static void block4(const float *a, int64_t na, const float *b, int64_t nb, int dim, float *c, int64_t ldc)
{
  float acc[4][4][LANES] = {{{0}}};
  const float *ar[4], *br[4];
  for (int i = 0; i < 4; i++) {
    ar[i] = a + (size_t)(i < na ? i : 0) * dim;
    br[i] = b + (size_t)(i < nb ? i : 0) * dim;
  }
  int k = 0;
  for (; k + LANES <= dim; k += LANES)
    for (int i = 0; i < 4; i++)
      for (int j = 0; j < 4; j++)
        for (int l = 0; l < LANES; l++)
          acc[i][j][l] += ar[i][k + l] * br[j][k + l];
  for (int i = 0; i < na && i < 4; i++)
    for (int j = 0; j < nb && j < 4; j++) {
      float s = 0;
      for (int q = k; q < dim; q++)
        s += ar[i][q] * br[j][q];
      for (int l = 0; l < LANES; l++)
        s += acc[i][j][l];
      c[i * ldc + j] = s;
    }
}

void fr_similarity_cpu(const float *a, int64_t na, const float *b, int64_t nb, int dim, float *c, int64_t ldc)
{
  /* 64 x 64 tiles keep both row sets in L1/L2 while every pair is visited. */
  const int64_t T = 64;
  for (int64_t i0 = 0; i0 < na; i0 += T)
    for (int64_t j0 = 0; j0 < nb; j0 += T) {
      int64_t i1 = i0 + T < na ? i0 + T : na, j1 = j0 + T < nb ? j0 + T : nb;
      for (int64_t i = i0; i < i1; i += 4)
        for (int64_t j = j0; j < j1; j += 4)
          block4(a + (size_t)i * dim, i1 - i, b + (size_t)j * dim, j1 - j, dim, c + i * ldc + j, ldc);
    }
}

void fr_similarity_ref(const float *a, int64_t na, const float *b, int64_t nb, int dim, double *c, int64_t ldc)
{
  for (int64_t i = 0; i < na; i++)
    for (int64_t j = 0; j < nb; j++) {
      double s = 0;
      for (int k = 0; k < dim; k++)
        s += (double)a[(size_t)i * dim + k] * b[(size_t)j * dim + k];
      c[i * ldc + j] = s;
    }
}

int fr_topk_init(fr_topk *t, int64_t rows, int k, fr_error *err)
{
  memset(t, 0, sizeof(*t));
  if (rows < 0 || k < 1)
    return fr_error_set(err, FR_ERR_INVALID, "top-k: k must be at least 1 (got %d)", k);
  size_t n = (size_t)(rows ? rows : 1) * (size_t)k;
  t->score = malloc(n * sizeof(float));
  t->index = malloc(n * sizeof(int64_t));
  if (!t->score || !t->index) {
    fr_topk_free(t);
    return fr_error_set(err, FR_ERR_NOMEM, "top-k: out of memory for %lld x %d candidates", (long long)rows, k);
  }
  t->rows = rows;
  t->k = k;
  for (size_t i = 0; i < (size_t)rows * (size_t)k; i++) {
    t->score[i] = -INFINITY;
    t->index[i] = -1;
  }
  return FR_OK;
}

void fr_topk_free(fr_topk *t)
{
  free(t->score);
  free(t->index);
  memset(t, 0, sizeof(*t));
}

static int better(float s, int64_t i, float s2, int64_t i2)
{
  return s > s2 || (s == s2 && i2 >= 0 && i < i2) || (s == s2 && i2 < 0);
}

void fr_topk_merge(fr_topk *t, int64_t row0, int64_t n, int64_t col0, int64_t m, const float *tile, int64_t ld)
{
  int k = t->k;
  for (int64_t i = 0; i < n; i++) {
    float *sc = t->score + (size_t)(row0 + i) * k;
    int64_t *ix = t->index + (size_t)(row0 + i) * k;
    for (int64_t j = 0; j < m; j++) {
      float s = tile[i * ld + j];
      int64_t col = col0 + j;
      if (!(s >= sc[k - 1]) || !better(s, col, sc[k - 1], ix[k - 1]))
        continue; /* the common case: not among the k best (NaN fails the first test) */
      int r = k - 1;
      while (r > 0 && better(s, col, sc[r - 1], ix[r - 1])) {
        sc[r] = sc[r - 1];
        ix[r] = ix[r - 1];
        r--;
      }
      sc[r] = s;
      ix[r] = col;
    }
  }
}
