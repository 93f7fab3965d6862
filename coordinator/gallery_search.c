/* 1:N top-k search of a results file's probes against a gallery: probe blocks
 * streamed from the file, score tiles of PROBE_BLOCK x TEMPLATE_BLOCK merged
 * into per-probe top-k lists (or, on the device path, the fused kernels of
 * worker/nn/similarity.c over the templates held on the device), rows appended
 * to the matches file. Both paths give identical lists. */
#include <hdf5.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "faceri/cli_util.h"
#include "faceri/gallery.h"
#include "faceri/item_status.h"
#include "faceri/log.h"
#include "faceri/vk_context.h"
#include "faceri/similarity.h"
#include "results_hdf5.h"

#define PROBE_BLOCK 1024
/* The device passes over every template once per probe block: larger blocks. */
#define PROBE_BLOCK_DEVICE 8192
#define TEMPLATE_BLOCK 8192

typedef struct matches_file {
  hid_t f, str, row, key, tmpl, score;
  int64_t n;
} matches_file;

static int matches_open(matches_file *m, const char *path, const fr_gallery *g, int k, fr_error *err)
{
  m->f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (m->f < 0)
    return fr_error_set(err, FR_ERR_IO, "%s: cannot create the matches file", path);
  m->str = fr_h5_string_type(H5T_CSET_ASCII);
  int bad = m->str < 0 || fr_h5_group(m->f, "probe") < 0 || fr_h5_group(m->f, "match") < 0 ||
            fr_h5_group(m->f, "labels") < 0 || fr_h5_set_string_attr(m->f, "format", "faceri-matches") < 0 ||
            fr_h5_set_int_attr(m->f, "top_k", k) < 0;
  if (!bad) {
    m->row = fr_h5_create_rows(m->f, "probe/row", H5T_STD_I64LE, 0, 4096, NULL, "row of the probe in its results file");
    m->key = fr_h5_create_rows(m->f, "probe/key", m->str, 0, 4096, NULL, "the probe's key");
    m->tmpl = fr_h5_create_rows(m->f, "match/template", H5T_STD_I32LE, (hsize_t)k, 1024, NULL,
                                "gallery template index (/labels/name), best first; -1 none");
    m->score = fr_h5_create_rows(m->f, "match/score", H5T_IEEE_F32LE, (hsize_t)k, 1024, NULL, "cosine, best first");
    hid_t utf8 = fr_h5_string_type(H5T_CSET_UTF8);
    bad = m->row < 0 || m->key < 0 || m->tmpl < 0 || m->score < 0 || utf8 < 0 ||
          fr_h5_write_vector(m->f, "labels/name", utf8, utf8, (int)g->n, g->names) < 0;
    if (utf8 >= 0)
      H5Tclose(utf8);
  }
  return bad ? fr_error_set(err, FR_ERR_HDF5, "%s: HDF5 failed to lay out the matches file", path) : FR_OK;
}

/* RFC 4180: quotes doubled inside a quoted field (keys may hold anything). */
static void csv_field(FILE *out, const char *s)
{
  fputc('"', out);
  for (; *s; s++) {
    if (*s == '"')
      fputc('"', out);
    fputc(*s, out);
  }
  fputc('"', out);
}

static int matches_close(matches_file *m)
{
  hid_t ids[] = {m->row, m->key, m->tmpl, m->score};
  for (size_t i = 0; i < 4; i++)
    if (ids[i] > 0)
      H5Dclose(ids[i]);
  if (m->str > 0)
    H5Tclose(m->str);
  return m->f > 0 && H5Fclose(m->f) >= 0 ? 0 : -1;
}

int fr_gallery_open_device(fr_gallery_path path, const char *device, double comparisons, int k, fr_vk_context **ctx,
                           fr_similarity_device **dev, fr_error *err)
{
  *ctx = NULL;
  *dev = NULL;
  if (path == FR_PATH_CPU ||
      (path == FR_PATH_AUTO && (comparisons < FR_GALLERY_DEVICE_MIN || k > FR_SIMILARITY_DEVICE_MAX_K)))
    return FR_OK;
  if (k > FR_SIMILARITY_DEVICE_MAX_K)
    return fr_error_set(err, FR_ERR_INVALID, "--top-k %d: the device path keeps at most %d candidates (use --cpu)", k,
                        FR_SIMILARITY_DEVICE_MAX_K);
  fr_vk_options vo = {.device = device, .validation = -1};
  int rc = fr_vk_context_create(&vo, ctx, err);
  if (!rc)
    rc = fr_similarity_device_create(*ctx, NULL, dev, err);
  if (rc) {
    fr_vk_context_destroy(*ctx);
    *ctx = NULL;
    if (path == FR_PATH_AUTO) { /* no usable device: the CPU path answers the same */
      fr_warn("gallery: no device path (%s); searching on the CPU", err->message);
      return FR_OK;
    }
  }
  return rc;
}

int fr_gallery_search(const fr_gallery *g, fr_results_reader *r, int k, const char *out_path, FILE *csv,
                      fr_similarity_device *dev, fr_gallery_search_stats *stats, fr_error *err)
{
  memset(stats, 0, sizeof(*stats));
  double t0 = fr_now_seconds();
  int dim = g->dim;
  if (fr_results_reader_dim(r) != dim)
    return fr_error_set(err, FR_ERR_INVALID, "%s: embeddings of %d values, the gallery has %d",
                        fr_results_reader_path(r), fr_results_reader_dim(r), dim);
  if (k < 1 || g->n < 1)
    return fr_error_set(err, FR_ERR_INVALID, "gallery search: needs k >= 1 and at least one template");
  matches_file m = {-1, -1, -1, -1, -1, -1, 0};
  int rc = matches_open(&m, out_path, g, k, err);
  const int64_t pb = dev ? PROBE_BLOCK_DEVICE : PROBE_BLOCK;
  int64_t items = fr_results_reader_items(r), tb = g->n < TEMPLATE_BLOCK ? g->n : TEMPLATE_BLOCK;
  float *block = malloc((size_t)pb * dim * sizeof(float)), *probes = malloc((size_t)pb * dim * sizeof(float));
  float *tile = dev ? NULL : malloc((size_t)pb * tb * sizeof(float));
  int8_t *status = malloc(pb);
  int64_t *rows = malloc(pb * sizeof(int64_t));
  char **keys = calloc(pb, sizeof(char *)), **pkeys = calloc(pb, sizeof(char *));
  int32_t *tmpl = malloc((size_t)pb * k * sizeof(int32_t));
  fr_topk top = {0};
  if (!rc && (!block || !probes || (!tile && !dev) || !status || !rows || !keys || !pkeys || !tmpl))
    rc = fr_error_set(err, FR_ERR_NOMEM, "gallery search: out of memory for a probe block");
  if (!rc)
    rc = fr_topk_init(&top, pb, k, err);
  if (!rc && dev && !(rc = fr_similarity_device_set_b(dev, g->n, dim, err)))
    rc = fr_similarity_device_upload_b(dev, 0, g->n, g->templates, err);
  stats->device = dev != NULL;
  for (int64_t g0 = 0; !rc && g0 < items; g0 += pb) {
    int64_t n = items - g0 < pb ? items - g0 : pb, np = 0;
    if ((rc = fr_results_read_status(r, g0, n, status, err)) || (rc = fr_results_read_embedding(r, g0, n, block, err)) ||
        (rc = fr_results_read_keys(r, g0, n, keys, err)))
      break;
    for (int64_t i = 0; i < n; i++)
      if (status[i] == FR_ITEM_OK) {
        memcpy(probes + (size_t)np * dim, block + (size_t)i * dim, (size_t)dim * sizeof(float));
        pkeys[np] = keys[i];
        rows[np++] = g0 + i;
      }
    for (int64_t i = 0; i < top.rows * k; i++) {
      top.score[i] = -INFINITY;
      top.index[i] = -1;
    }
    if (dev && np && (rc = fr_similarity_device_topk(dev, probes, np, &top, 0, err)))
      break;
    for (int64_t t0b = 0; !dev && t0b < g->n && np; t0b += tb) {
      int64_t nt = g->n - t0b < tb ? g->n - t0b : tb;
      fr_similarity_cpu(probes, np, g->templates + (size_t)t0b * dim, nt, dim, tile, nt);
      fr_topk_merge(&top, 0, np, t0b, nt, tile, nt);
    }
    for (int64_t i = 0; i < np * k; i++)
      tmpl[i] = (int32_t)top.index[i];
    if (np && (fr_h5_write_rows(m.row, H5T_NATIVE_INT64, m.n, (int)np, 0, rows) < 0 ||
               fr_h5_write_rows(m.key, m.str, m.n, (int)np, 0, pkeys) < 0 ||
               fr_h5_write_rows(m.tmpl, H5T_NATIVE_INT32, m.n, (int)np, (hsize_t)k, tmpl) < 0 ||
               fr_h5_write_rows(m.score, H5T_NATIVE_FLOAT, m.n, (int)np, (hsize_t)k, top.score) < 0))
      rc = fr_error_set(err, FR_ERR_HDF5, "%s: HDF5 failed to write matches", out_path);
    for (int64_t i = 0; csv && i < np; i++)
      for (int j = 0; j < k && tmpl[i * k + j] >= 0; j++)
      {
        csv_field(csv, pkeys[i]);
        fprintf(csv, ",%d,", j + 1);
        csv_field(csv, g->names[tmpl[i * k + j]]);
        fprintf(csv, ",%.6f\n", top.score[i * k + j]);
      }
    m.n += np;
    stats->comparisons += np * g->n;
    fr_results_free_keys(keys, n);
    memset(keys, 0, pb * sizeof(char *));
  }
  stats->probes = m.n;
  if (matches_close(&m) < 0 && !rc)
    rc = fr_error_set(err, FR_ERR_HDF5, "%s: HDF5 failed to close the matches file", out_path);
  fr_topk_free(&top);
  free(block);
  free(probes);
  free(tile);
  free(status);
  free(rows);
  free(keys);
  free(pkeys);
  free(tmpl);
  stats->seconds = fr_now_seconds() - t0;
  return rc;
}
