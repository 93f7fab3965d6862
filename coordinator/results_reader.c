/* Chunked reader of results files: row blocks through hyperslabs, so the answer
 * commands run on millions of items with memory bounded by the block size. */
#include "faceri/results_reader.h"

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "faceri/results_file.h"
#include "results_hdf5.h"

#define MAX_COLUMNS 16

typedef struct column {
  char name[64];
  hid_t ds; /* -1: absent */
} column;

struct fr_results_reader {
  char path[1024];
  hid_t file, bytes_type;
  hid_t embedding, label, status, key;
  int64_t items;
  int dim;
  char **label_names;
  int64_t n_labels;
  column columns[MAX_COLUMNS];
  int n_columns;
};

const char *fr_results_reader_path(const fr_results_reader *r) { return r->path; }
int64_t fr_results_reader_items(const fr_results_reader *r) { return r->items; }
int fr_results_reader_dim(const fr_results_reader *r) { return r->dim; }
int fr_results_reader_n_labels(const fr_results_reader *r) { return (int)r->n_labels; }
int64_t fr_results_reader_hid(const fr_results_reader *r) { return (int64_t)r->file; }

const char *fr_results_reader_label_name(const fr_results_reader *r, int id)
{
  return id >= 0 && id < r->n_labels && r->label_names[id] ? r->label_names[id] : "";
}

void fr_results_reader_attr(const fr_results_reader *r, const char *name, char *out, size_t size)
{
  if (size)
    out[0] = '\0';
  if (size && fr_h5_get_string_attr(r->file, name, out, size) < 0)
    out[0] = '\0';
}

int64_t fr_results_reader_int_attr(const fr_results_reader *r, const char *name, int64_t def)
{
  int64_t v = 0;
  return fr_h5_get_int_attr(r->file, name, &v) < 0 ? def : v;
}

static hid_t open_rows(fr_results_reader *r, const char *name, int64_t rows, int required, fr_error *err)
{
  if (H5Lexists(r->file, name, H5P_DEFAULT) <= 0) {
    if (required)
      fr_error_set(err, FR_ERR_FORMAT, "%s: not a results file: no /%s", r->path, name);
    return -1;
  }
  hid_t ds = H5Dopen2(r->file, name, H5P_DEFAULT);
  if (ds < 0) {
    fr_error_set(err, FR_ERR_HDF5, "%s: HDF5 cannot open /%s", r->path, name);
    return -1;
  }
  int64_t have = fr_h5_rows(ds);
  if (rows >= 0 && have != rows) {
    H5Dclose(ds);
    fr_error_set(err, FR_ERR_FORMAT, "%s: /%s has %lld rows, /items/status %lld", r->path, name, (long long)have,
                 (long long)rows);
    return -1;
  }
  return ds;
}

void fr_results_reader_close(fr_results_reader *r)
{
  if (!r)
    return;
  hid_t ids[] = {r->embedding, r->label, r->status, r->key};
  for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++)
    if (ids[i] >= 0)
      H5Dclose(ids[i]);
  for (int i = 0; i < r->n_columns; i++)
    if (r->columns[i].ds >= 0)
      H5Dclose(r->columns[i].ds);
  fr_h5_free_strings(r->label_names, r->n_labels);
  if (r->bytes_type >= 0)
    H5Tclose(r->bytes_type);
  if (r->file >= 0)
    H5Fclose(r->file);
  free(r);
}

static int check_layout(fr_results_reader *r, fr_error *err)
{
  char format[64];
  if (fr_h5_get_string_attr(r->file, "format", format, sizeof(format)) < 0 || strcmp(format, "faceri-results"))
    return fr_error_set(err, FR_ERR_FORMAT, "%s: not a faceri results file (format attribute \"%s\")", r->path,
                        format);
  int64_t schema = 0;
  /* Schema 3 only added /items/aligned, /items/align_score and the align
   * attributes; absent columns read as NaN, so schema 2 files still read. */
  if (fr_h5_get_int_attr(r->file, "schema_version", &schema) < 0 || schema < FR_RESULTS_SCHEMA_MIN_READ ||
      schema > FR_RESULTS_SCHEMA_VERSION)
    return fr_error_set(err, FR_ERR_FORMAT, "%s: results schema %lld, this faceri reads %d..%d", r->path,
                        (long long)schema, FR_RESULTS_SCHEMA_MIN_READ, FR_RESULTS_SCHEMA_VERSION);
  if ((r->status = open_rows(r, "items/status", -1, 1, err)) < 0)
    return err->code;
  r->items = fr_h5_rows(r->status);
  if (r->items < 0)
    return fr_error_set(err, FR_ERR_HDF5, "%s: cannot read the size of /items/status", r->path);
  if ((r->label = open_rows(r, "items/label", r->items, 1, err)) < 0 ||
      (r->key = open_rows(r, "items/key", r->items, 1, err)) < 0 ||
      (r->embedding = open_rows(r, "embedding", r->items, 1, err)) < 0)
    return err->code;
  hid_t space = H5Dget_space(r->embedding);
  hsize_t dims[2] = {0, 0};
  int rank = space >= 0 ? H5Sget_simple_extent_ndims(space) : -1;
  if (rank == 2)
    H5Sget_simple_extent_dims(space, dims, NULL);
  if (space >= 0)
    H5Sclose(space);
  if (rank != 2 || dims[1] < 1 || dims[1] > 65536)
    return fr_error_set(err, FR_ERR_FORMAT, "%s: /embedding is not an [N, D] matrix with 1 <= D <= 65536", r->path);
  r->dim = (int)dims[1];
  hid_t utf8 = fr_h5_string_type(H5T_CSET_UTF8);
  int bad = utf8 < 0 || fr_h5_read_vector(r->file, "labels/name", utf8, &r->n_labels, (void **)&r->label_names,
                                           sizeof(char *)) < 0;
  if (utf8 >= 0)
    H5Tclose(utf8);
  if (bad) {
    r->n_labels = 0;
    return fr_error_set(err, FR_ERR_FORMAT, "%s: cannot read /labels/name", r->path);
  }
  if (r->n_labels > (1 << 30))
    return fr_error_set(err, FR_ERR_FORMAT, "%s: %lld labels is more than this reader handles", r->path,
                        (long long)r->n_labels);
  return FR_OK;
}

int fr_results_reader_open(const char *path, int read_write, fr_results_reader **out, fr_error *err)
{
  *out = NULL;
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  fr_results_reader *r = calloc(1, sizeof(*r));
  if (!r)
    return fr_error_set(err, FR_ERR_NOMEM, "%s: out of memory opening the results", path);
  snprintf(r->path, sizeof(r->path), "%s", path);
  r->file = r->bytes_type = r->embedding = r->label = r->status = r->key = -1;
  FILE *probe = fopen(path, read_write ? "r+b" : "rb");
  if (!probe) {
    free(r);
    return fr_error_set(err, FR_ERR_IO, "%s: cannot open the results file%s", path,
                        read_write ? " for writing" : "");
  }
  fclose(probe);
  r->file = H5Fopen(path, read_write ? H5F_ACC_RDWR : H5F_ACC_RDONLY, H5P_DEFAULT);
  if (r->file < 0) {
    free(r);
    return fr_error_set(err, FR_ERR_FORMAT, "%s: not an HDF5 file, or it is open for writing elsewhere", path);
  }
  r->bytes_type = fr_h5_string_type(H5T_CSET_ASCII);
  int rc = r->bytes_type < 0 ? fr_error_set(err, FR_ERR_HDF5, "%s: cannot make a string type", path)
                             : check_layout(r, err);
  if (rc) {
    fr_results_reader_close(r);
    return rc;
  }
  *out = r;
  return FR_OK;
}

static int check_range(const fr_results_reader *r, int64_t first, int64_t n, fr_error *err)
{
  if (first < 0 || n < 0 || first + n > r->items || n > INT32_MAX)
    return fr_error_set(err, FR_ERR_INVALID, "%s: rows %lld..%lld are outside the %lld items", r->path,
                        (long long)first, (long long)(first + n), (long long)r->items);
  return FR_OK;
}

static int read_block(fr_results_reader *r, hid_t ds, const char *name, hid_t type, int64_t first, int64_t n,
                      hsize_t cols, void *out, fr_error *err)
{
  int rc = check_range(r, first, n, err);
  if (rc)
    return rc;
  if (fr_h5_read_rows(ds, type, first, (int)n, cols, out) < 0)
    return fr_error_set(err, FR_ERR_HDF5, "%s: HDF5 failed to read /%s rows %lld..%lld", r->path, name,
                        (long long)first, (long long)(first + n));
  return FR_OK;
}

int fr_results_read_embedding(fr_results_reader *r, int64_t first, int64_t n, float *out, fr_error *err)
{
  return read_block(r, r->embedding, "embedding", H5T_NATIVE_FLOAT, first, n, (hsize_t)r->dim, out, err);
}

int fr_results_read_labels(fr_results_reader *r, int64_t first, int64_t n, int32_t *out, fr_error *err)
{
  return read_block(r, r->label, "items/label", H5T_NATIVE_INT32, first, n, 0, out, err);
}

int fr_results_read_status(fr_results_reader *r, int64_t first, int64_t n, int8_t *out, fr_error *err)
{
  return read_block(r, r->status, "items/status", H5T_NATIVE_INT8, first, n, 0, out, err);
}

/* Columns are opened on first use and kept open; absent ones are remembered too. */
static column *find_column(fr_results_reader *r, const char *name, fr_error *err)
{
  for (int i = 0; i < r->n_columns; i++)
    if (!strcmp(r->columns[i].name, name))
      return &r->columns[i];
  if (strlen(name) >= sizeof(r->columns[0].name)) {
    fr_error_set(err, FR_ERR_INVALID, "%s: column name \"%s\" is too long", r->path, name);
    return NULL;
  }
  if (r->n_columns == MAX_COLUMNS) {
    fr_error_set(err, FR_ERR_INVALID, "%s: more than %d quality columns asked for", r->path, MAX_COLUMNS);
    return NULL;
  }
  column *c = &r->columns[r->n_columns];
  snprintf(c->name, sizeof(c->name), "%s", name);
  c->ds = -1;
  /* An absent group makes H5Lexists fail on the dataset link: check each level. */
  const char *slash = strchr(name, '/');
  int exists = 1;
  if (slash) {
    char group[64];
    snprintf(group, sizeof(group), "%.*s", (int)(slash - name), name);
    exists = H5Lexists(r->file, group, H5P_DEFAULT) > 0;
  }
  if (exists && H5Lexists(r->file, name, H5P_DEFAULT) > 0) {
    fr_error dummy;
    c->ds = open_rows(r, name, r->items, 0, &dummy);
    if (c->ds >= 0) {
      hid_t space = H5Dget_space(c->ds);
      int rank = space >= 0 ? H5Sget_simple_extent_ndims(space) : -1;
      if (space >= 0)
        H5Sclose(space);
      if (rank != 1) {
        H5Dclose(c->ds);
        c->ds = -1;
      }
    }
  }
  r->n_columns++;
  return c;
}

int fr_results_reader_has_column(const fr_results_reader *r, const char *column)
{
  fr_error err;
  struct column *c = find_column((fr_results_reader *)r, column, &err);
  return c && c->ds >= 0;
}

int fr_results_read_column(fr_results_reader *r, const char *name, int64_t first, int64_t n, float *out,
                           fr_error *err)
{
  column *c = find_column(r, name, err);
  if (!c)
    return err->code;
  if (c->ds < 0) {
    int rc = check_range(r, first, n, err);
    for (int64_t i = 0; !rc && i < n; i++)
      out[i] = NAN;
    return rc;
  }
  return read_block(r, c->ds, name, H5T_NATIVE_FLOAT, first, n, 0, out, err);
}

int fr_results_read_keys(fr_results_reader *r, int64_t first, int64_t n, char **out, fr_error *err)
{
  int rc = check_range(r, first, n, err);
  if (rc)
    return rc;
  for (int64_t i = 0; i < n; i++)
    out[i] = NULL;
  char **raw = calloc(n > 0 ? (size_t)n : 1, sizeof(char *));
  if (!raw)
    return fr_error_set(err, FR_ERR_NOMEM, "%s: out of memory reading %lld keys", r->path, (long long)n);
  rc = read_block(r, r->key, "items/key", r->bytes_type, first, n, 0, raw, err);
  for (int64_t i = 0; !rc && i < n; i++) {
    out[i] = strdup(raw[i] ? raw[i] : "");
    if (!out[i])
      rc = fr_error_set(err, FR_ERR_NOMEM, "%s: out of memory reading keys", r->path);
  }
  for (int64_t i = 0; i < n; i++)
    if (raw[i])
      H5free_memory(raw[i]);
  free(raw);
  if (rc) {
    fr_results_free_keys(out, n);
    for (int64_t i = 0; i < n; i++)
      out[i] = NULL;
  }
  return rc;
}

void fr_results_free_keys(char **keys, int64_t n)
{
  for (int64_t i = 0; keys && i < n; i++)
    free(keys[i]);
}
