#include "results_fixture.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int fixture_write(const char *path, const fixture_item *items, int n, int dim, fr_error *err)
{
  return fixture_write_inputs(path, items, n, dim, NULL, 0, err);
}

int fixture_write_inputs(const char *path, const fixture_item *items, int n, int dim, const char *const *inputs,
                         int n_inputs, fr_error *err)
{
  fr_input_fingerprint fp[8];
  if (n_inputs > 8)
    return fr_error_set(err, FR_ERR_INVALID, "fixture: at most 8 inputs");
  for (int i = 0; i < n_inputs; i++) {
    int rc = fr_fingerprint_input(inputs[i], &fp[i], err);
    if (rc)
      return rc;
  }
  fr_results_meta meta = {.command_line = "test", .model_path = "none", .model_sha256 = "0", .architecture = "test",
                          .device = "test device", .embedding_size = dim, .n_inputs = n_inputs, .inputs = fp};
  fr_results_file *rf = NULL;
  int rc = fr_results_create(path, &meta, &rf, err);
  if (rc)
    return rc;
  fr_result_row *rows = calloc((size_t)n, sizeof(*rows));
  if (!rows) {
    fr_results_close(rf, 0, err);
    return fr_error_set(err, FR_ERR_NOMEM, "fixture rows");
  }
  for (int i = 0; i < n; i++)
    rows[i] = (fr_result_row){.key = items[i].key, .label = items[i].label, .status = items[i].status,
                              .error = items[i].status ? "failed in the fixture" : "", .width = 112, .height = 112,
                              .embedding = items[i].embedding, .norm = items[i].norm, .ers = items[i].ers,
                              .ri = items[i].ri, .aligned = -1, .align_score = NAN};
  rc = fr_results_write_items(rf, 0, rows, n, 0, err);
  fr_shard_record shard = {.id = 0, .first = 0, .count = n, .attempts = 1, .worker = "w", .device = "d",
                           .reason = "", .seconds = 1};
  if (!rc)
    rc = fr_results_commit_shard(rf, &shard, err);
  free(rows);
  int rc2 = fr_results_close(rf, !rc, err);
  return rc ? rc : rc2;
}

static double uniform(unsigned long long *s)
{
  *s ^= *s >> 12, *s ^= *s << 25, *s ^= *s >> 27;
  return (double)((*s * 0x2545f4914f6cdd1dull) >> 11) / 9007199254740992.0;
}

static double normal(unsigned long long *s)
{
  double u = uniform(s), v = uniform(s);
  return sqrt(-2 * log(u + 1e-300)) * cos(2 * M_PI * v);
}

int fixture_write_synthetic(const char *path, int n_ids, int per_id, int dim, unsigned seed, fr_error *err)
{
  int n = n_ids * per_id;
  unsigned long long s = 0x9e3779b97f4a7c15ull ^ seed;
  double *centres = malloc((size_t)n_ids * dim * sizeof(double));
  float *emb = malloc((size_t)n * dim * sizeof(float));
  fixture_item *items = calloc((size_t)n, sizeof(*items));
  char *keys = malloc((size_t)n * 64), *labels = malloc((size_t)n_ids * 16);
  int rc = FR_OK;
  if (!centres || !emb || !items || !keys || !labels) {
    rc = fr_error_set(err, FR_ERR_NOMEM, "fixture");
    goto done;
  }
  for (int c = 0; c < n_ids; c++) {
    double n2 = 0;
    for (int k = 0; k < dim; k++) {
      centres[c * dim + k] = normal(&s);
      n2 += centres[c * dim + k] * centres[c * dim + k];
    }
    for (int k = 0; k < dim; k++)
      centres[c * dim + k] /= sqrt(n2);
    snprintf(labels + c * 16, 16, "id%03d", c);
  }
  for (int i = 0; i < n; i++) {
    int id = i % n_ids;
    double sigma = 0.3 + 1.7 * uniform(&s), n2 = 0;
    float *v = emb + (size_t)i * dim;
    for (int k = 0; k < dim; k++) {
      v[k] = (float)(centres[id * dim + k] + sigma * normal(&s) / sqrt(dim));
      n2 += (double)v[k] * v[k];
    }
    for (int k = 0; k < dim; k++)
      v[k] = (float)(v[k] / sqrt(n2));
    snprintf(keys + (size_t)i * 64, 64, "synth:id%03d/id%03d_%04d.jpg", id, id, i / n_ids + 1);
    /* Quantised so that ties occur, as with real quality scores. */
    items[i] = (fixture_item){.key = keys + (size_t)i * 64, .label = labels + id * 16, .status = 0, .embedding = v,
                              .norm = (float)(round((2.0 - sigma) * 20) / 20), .ers = (float)(1.2 - 0.3 * sigma),
                              .ri = NAN};
  }
  rc = fixture_write(path, items, n, dim, err);
done:
  free(centres);
  free(emb);
  free(items);
  free(keys);
  free(labels);
  return rc;
}
