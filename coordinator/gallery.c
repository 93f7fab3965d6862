/* Gallery templates from a results file, the gallery and matches files, and
 * blocked top-k search (include/faceri/gallery.h). */
#include "faceri/gallery.h"

#include <hdf5.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval_internal.h"
#include "faceri/cli_util.h"
#include "faceri/similarity.h"
#include "results_hdf5.h"

void fr_gallery_free(fr_gallery *g)
{
  for (int64_t i = 0; g->names && i < g->n; i++)
    free(g->names[i]);
  free(g->names);
  free(g->templates);
  free(g->count);
  memset(g, 0, sizeof(*g));
}

static int alloc_gallery(fr_gallery *g, int64_t n, int dim, fr_error *err)
{
  g->n = n;
  g->dim = dim;
  g->templates = calloc((size_t)(n ? n : 1) * dim, sizeof(float));
  g->names = calloc((size_t)(n ? n : 1), sizeof(char *));
  g->count = calloc((size_t)(n ? n : 1), sizeof(int64_t));
  if (!g->templates || !g->names || !g->count) {
    fr_gallery_free(g);
    return fr_error_set(err, FR_ERR_NOMEM, "gallery: out of memory for %lld templates", (long long)n);
  }
  return FR_OK;
}

int fr_gallery_build(fr_results_reader *r, const fr_gallery_build_options *opts, fr_gallery *out, int64_t *left_out,
                     fr_error *err)
{
  memset(out, 0, sizeof(*out));
  fr_gallery_build_options o = opts ? *opts : (fr_gallery_build_options){.min_quality = NAN};
  char col[64];
  const char *cols[1];
  int nc = 0;
  if (o.quality_column)
    fr_eval_column_name(o.quality_column, col, sizeof(col));
  else
    snprintf(col, sizeof(col), "%s", fr_results_reader_has_column(r, "quality/ers") ? "quality/ers" : "quality/norm");
  int need_q = o.weighting == FR_WEIGHT_QUALITY || isfinite(o.min_quality);
  if (need_q) {
    if (!fr_results_reader_has_column(r, col))
      return fr_error_set(err, FR_ERR_INVALID, "%s: no quality column /%s", fr_results_reader_path(r), col);
    cols[nc++] = col;
  }
  eval_items it;
  int rc = eval_items_load(r, cols, nc, &it, err);
  if (rc)
    return rc;
  int dim = fr_results_reader_dim(r), L = it.n_labels;
  double *sum = calloc((size_t)(L ? L : 1) * dim, sizeof(double));
  int64_t *count = calloc((size_t)(L ? L : 1), sizeof(int64_t));
  float *rows = malloc((size_t)8192 * dim * sizeof(float)), *scratch = malloc((size_t)8192 * dim * sizeof(float));
  if (!sum || !count || !rows || !scratch)
    rc = fr_error_set(err, FR_ERR_NOMEM, "gallery: out of memory for %d identities", L);
  int64_t dropped = 0;
  for (int64_t p0 = 0; !rc && p0 < it.n;) {
    int64_t p1 = eval_span_end(&it, p0, 8192);
    if ((rc = eval_read_used(r, &it, p0, p1, scratch, rows, err)))
      break;
    for (int64_t p = p0; p < p1; p++) {
      double q = nc ? it.quality[0][p] : 1;
      /* Unknown quality (NaN) fails every threshold, and has no weight. */
      if ((isfinite(o.min_quality) && !(q >= o.min_quality)) || (o.weighting == FR_WEIGHT_QUALITY && !(q > 0))) {
        dropped++;
        continue;
      }
      double w = o.weighting == FR_WEIGHT_QUALITY ? q : 1;
      const float *v = rows + (size_t)(p - p0) * dim;
      double *s = sum + (size_t)it.label[p] * dim;
      for (int k = 0; k < dim; k++)
        s[k] += w * v[k];
      count[it.label[p]]++;
    }
    p0 = p1;
  }
  int64_t n = 0;
  for (int l = 0; !rc && l < L; l++)
    n += count[l] > 0;
  if (!rc)
    rc = alloc_gallery(out, n, dim, err);
  int64_t t = 0;
  for (int l = 0; !rc && l < L; l++) {
    if (!count[l])
      continue;
    double n2 = 0;
    for (int k = 0; k < dim; k++)
      n2 += sum[(size_t)l * dim + k] * sum[(size_t)l * dim + k];
    double inv = n2 > 0 ? 1 / sqrt(n2) : 0;
    for (int k = 0; k < dim; k++)
      out->templates[(size_t)t * dim + k] = (float)(sum[(size_t)l * dim + k] * inv);
    out->count[t] = count[l];
    if (!(out->names[t] = strdup(fr_results_reader_label_name(r, l))))
      rc = fr_error_set(err, FR_ERR_NOMEM, "gallery: out of memory for names");
    t++;
  }
  if (rc)
    fr_gallery_free(out);
  if (left_out)
    *left_out = dropped;
  free(sum);
  free(count);
  free(rows);
  free(scratch);
  eval_items_free(&it);
  return rc;
}

static int set_double_attr(hid_t obj, const char *name, double v)
{
  hid_t space = H5Screate(H5S_SCALAR);
  hid_t a = space >= 0 ? H5Acreate2(obj, name, H5T_IEEE_F64LE, space, H5P_DEFAULT, H5P_DEFAULT) : -1;
  int rc = a >= 0 && H5Awrite(a, H5T_NATIVE_DOUBLE, &v) >= 0 ? 0 : -1;
  if (a >= 0)
    H5Aclose(a);
  if (space >= 0)
    H5Sclose(space);
  return rc;
}

int fr_gallery_save(const fr_gallery *g, const char *path, const char *source, const fr_gallery_build_options *o,
                    fr_error *err)
{
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (f < 0)
    return fr_error_set(err, FR_ERR_IO, "%s: cannot create the gallery file", path);
  hid_t str = fr_h5_string_type(H5T_CSET_UTF8);
  hid_t ds = -1;
  int bad = str < 0 || fr_h5_set_string_attr(f, "format", "faceri-gallery") < 0 ||
            fr_h5_set_int_attr(f, "version", 1) < 0 || fr_h5_set_string_attr(f, "source", source) < 0 ||
            fr_h5_set_string_attr(f, "weighting", o && o->weighting == FR_WEIGHT_QUALITY ? "quality" : "mean") < 0 ||
            fr_h5_set_string_attr(f, "quality_column", o && o->quality_column ? o->quality_column : "") < 0 ||
            set_double_attr(f, "min_quality", o ? o->min_quality : NAN) < 0 || fr_h5_group(f, "labels") < 0;
  if (!bad)
    bad = (ds = fr_h5_create_rows(f, "templates", H5T_IEEE_F32LE, (hsize_t)g->dim, 1024, NULL,
                                  "unit-length template per identity")) < 0 ||
          fr_h5_write_rows(ds, H5T_NATIVE_FLOAT, 0, (int)g->n, (hsize_t)g->dim, g->templates) < 0;
  if (ds >= 0)
    H5Dclose(ds);
  if (!bad)
    bad = fr_h5_write_vector(f, "labels/name", str, str, (int)g->n, g->names) < 0 ||
          fr_h5_write_vector(f, "count", H5T_STD_I64LE, H5T_NATIVE_INT64, (int)g->n, g->count) < 0;
  if (str >= 0)
    H5Tclose(str);
  if (H5Fclose(f) < 0)
    bad = 1;
  return bad ? fr_error_set(err, FR_ERR_HDF5, "%s: HDF5 failed to write the gallery", path) : FR_OK;
}

int fr_gallery_load(const char *path, fr_gallery *out, fr_error *err)
{
  memset(out, 0, sizeof(*out));
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  FILE *probe = fopen(path, "rb");
  if (!probe)
    return fr_error_set(err, FR_ERR_IO, "%s: cannot open the gallery", path);
  fclose(probe);
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0)
    return fr_error_set(err, FR_ERR_FORMAT, "%s: not an HDF5 file", path);
  char fmt[64];
  hid_t ds = -1, str = fr_h5_string_type(H5T_CSET_UTF8);
  int rc = FR_OK;
  if (fr_h5_get_string_attr(f, "format", fmt, sizeof(fmt)) < 0 || strcmp(fmt, "faceri-gallery"))
    rc = fr_error_set(err, FR_ERR_FORMAT, "%s: not a faceri gallery (format \"%s\")", path, fmt);
  hsize_t dims[2] = {0, 0};
  if (!rc) {
    ds = H5Dopen2(f, "templates", H5P_DEFAULT);
    hid_t sp = ds >= 0 ? H5Dget_space(ds) : -1;
    if (sp < 0 || H5Sget_simple_extent_ndims(sp) != 2 || H5Sget_simple_extent_dims(sp, dims, NULL) < 0 || dims[1] < 1 ||
        dims[1] > 65536 || dims[0] > (1u << 30))
      rc = fr_error_set(err, FR_ERR_FORMAT, "%s: /templates is not a [T, D] matrix", path);
    if (sp >= 0)
      H5Sclose(sp);
  }
  if (!rc)
    rc = alloc_gallery(out, (int64_t)dims[0], (int)dims[1], err);
  if (!rc && dims[0] && fr_h5_read_rows(ds, H5T_NATIVE_FLOAT, 0, (int)dims[0], dims[1], out->templates) < 0)
    rc = fr_error_set(err, FR_ERR_HDF5, "%s: cannot read /templates", path);
  char **names = NULL;
  int64_t nn = 0, *count = NULL, nc = 0;
  if (!rc && (fr_h5_read_vector(f, "labels/name", str, &nn, (void **)&names, sizeof(char *)) < 0 ||
              fr_h5_read_vector(f, "count", H5T_NATIVE_INT64, &nc, (void **)&count, sizeof(int64_t)) < 0 ||
              nn != out->n || nc != out->n))
    rc = fr_error_set(err, FR_ERR_FORMAT, "%s: /labels/name or /count does not match /templates", path);
  for (int64_t i = 0; !rc && i < out->n; i++) {
    out->count[i] = count[i];
    if (!(out->names[i] = strdup(names[i] ? names[i] : "")))
      rc = fr_error_set(err, FR_ERR_NOMEM, "%s: out of memory", path);
  }
  for (int64_t i = 0; !rc && i < out->n * out->dim; i++)
    if (!isfinite(out->templates[i]))
      rc = fr_error_set(err, FR_ERR_FORMAT, "%s: template %lld is not finite", path, (long long)(i / out->dim));
  fr_h5_free_strings(names, nn);
  free(count);
  if (ds >= 0)
    H5Dclose(ds);
  if (str >= 0)
    H5Tclose(str);
  H5Fclose(f);
  if (rc)
    fr_gallery_free(out);
  return rc;
}

