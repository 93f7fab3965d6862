/* HDF5 results writer: extensible chunked datasets, flushed per batch. */
#include "faceri/results_file.h"

#include <hdf5.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CHUNK_ROWS 1024

struct fr_results_file {
  char path[1024];
  hid_t file;
  hid_t str_type;
  hid_t embedding, norm, key, label, status, error, width, height;
  int dim;
  int64_t rows, n_ok, n_failed, n_skipped;
};

static void iso_time_now(char *buf, size_t n)
{
  time_t t = time(NULL);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int hdf5_fail(const fr_results_file *rf, const char *what, fr_error *err)
{
  return fr_error_set(err, FR_ERR_HDF5, "%s: HDF5 failed to %s", rf->path, what);
}

static int set_string_attr(hid_t obj, const char *name, const char *value)
{
  hid_t type = H5Tcopy(H5T_C_S1);
  if (type < 0)
    return -1;
  H5Tset_size(type, H5T_VARIABLE);
  H5Tset_cset(type, H5T_CSET_UTF8);
  hid_t space = H5Screate(H5S_SCALAR);
  int rc = -1;
  if (space >= 0) {
    if (H5Aexists(obj, name) > 0)
      H5Adelete(obj, name);
    hid_t attr = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    if (attr >= 0) {
      const char *v = value ? value : "";
      rc = H5Awrite(attr, type, &v) < 0 ? -1 : 0;
      H5Aclose(attr);
    }
    H5Sclose(space);
  }
  H5Tclose(type);
  return rc;
}

static int set_int_attr(hid_t obj, const char *name, int64_t value)
{
  hid_t space = H5Screate(H5S_SCALAR);
  if (space < 0)
    return -1;
  if (H5Aexists(obj, name) > 0)
    H5Adelete(obj, name);
  hid_t attr = H5Acreate2(obj, name, H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT);
  int rc = attr >= 0 && H5Awrite(attr, H5T_NATIVE_INT64, &value) >= 0 ? 0 : -1;
  if (attr >= 0)
    H5Aclose(attr);
  H5Sclose(space);
  return rc;
}

static hid_t create_extensible(hid_t file, const char *name, hid_t type, int rank, hsize_t cols, const char *doc)
{
  hsize_t dims[2] = {0, cols}, maxdims[2] = {H5S_UNLIMITED, cols}, chunk[2] = {CHUNK_ROWS, cols};
  hid_t space = H5Screate_simple(rank, dims, maxdims);
  hid_t plist = H5Pcreate(H5P_DATASET_CREATE);
  hid_t ds = -1;
  if (space >= 0 && plist >= 0 && H5Pset_chunk(plist, rank, chunk) >= 0) {
    ds = H5Dcreate2(file, name, type, space, H5P_DEFAULT, plist, H5P_DEFAULT);
    if (ds >= 0 && set_string_attr(ds, "description", doc) < 0) {
      H5Dclose(ds);
      ds = -1;
    }
  }
  if (plist >= 0)
    H5Pclose(plist);
  if (space >= 0)
    H5Sclose(space);
  return ds;
}

int fr_results_create(const char *path, const fr_results_meta *meta, fr_results_file **out, fr_error *err)
{
  *out = NULL;
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  fr_results_file *rf = calloc(1, sizeof(*rf));
  if (!rf)
    return fr_error_set(err, FR_ERR_NOMEM, "%s: out of memory", path);
  snprintf(rf->path, sizeof(rf->path), "%s", path);
  rf->dim = meta->embedding_size;
  rf->file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (rf->file < 0) {
    free(rf);
    return fr_error_set(err, FR_ERR_IO, "%s: cannot create the results file (does the folder exist and is it writable?)",
                        path);
  }
  rf->str_type = H5Tcopy(H5T_C_S1);
  H5Tset_size(rf->str_type, H5T_VARIABLE);
  H5Tset_cset(rf->str_type, H5T_CSET_UTF8);
  char now[32];
  iso_time_now(now, sizeof(now));
  int bad = 0;
  bad |= set_string_attr(rf->file, "format", "faceri-results");
  bad |= set_int_attr(rf->file, "schema_version", FR_RESULTS_SCHEMA_VERSION);
  bad |= set_string_attr(rf->file, "faceri_version", FACERI_VERSION);
  bad |= set_string_attr(rf->file, "command_line", meta->command_line);
  bad |= set_string_attr(rf->file, "model_path", meta->model_path);
  bad |= set_string_attr(rf->file, "model_sha256", meta->model_sha256);
  bad |= set_string_attr(rf->file, "model_architecture", meta->architecture);
  bad |= set_string_attr(rf->file, "device", meta->device);
  bad |= set_int_attr(rf->file, "embedding_size", meta->embedding_size);
  bad |= set_string_attr(rf->file, "start_time", now);
  bad |= set_string_attr(rf->file, "state", "running");
  rf->embedding = create_extensible(rf->file, "embedding", H5T_IEEE_F32LE, 2, (hsize_t)rf->dim,
                                    "L2-normalised embedding per item (NaN rows where status != 0)");
  rf->norm = create_extensible(rf->file, "norm", H5T_IEEE_F32LE, 1, 1, "L2 norm of the raw embedding (NaN if none)");
  rf->key = create_extensible(rf->file, "key", rf->str_type, 1, 1, "input path, or archive:member");
  rf->label = create_extensible(rf->file, "label", rf->str_type, 1, 1, "parent folder name of the item");
  rf->status = create_extensible(rf->file, "status", H5T_STD_I8LE, 1, 1, "0 ok, 1 failed, 2 skipped (not an image)");
  rf->error = create_extensible(rf->file, "error", rf->str_type, 1, 1, "why the item failed or was skipped");
  rf->width = create_extensible(rf->file, "width", H5T_STD_I32LE, 1, 1, "original image width (0 if unknown)");
  rf->height = create_extensible(rf->file, "height", H5T_STD_I32LE, 1, 1, "original image height (0 if unknown)");
  if (bad || rf->embedding < 0 || rf->norm < 0 || rf->key < 0 || rf->label < 0 || rf->status < 0 || rf->error < 0 ||
      rf->width < 0 || rf->height < 0) {
    int rc = hdf5_fail(rf, "create the datasets", err);
    fr_results_close(rf, 0, NULL);
    return rc;
  }
  *out = rf;
  return FR_OK;
}

/* Grows a dataset by n rows and writes them. */
static int append_rows(hid_t ds, hid_t mem_type, int64_t start, int n, hsize_t cols, int rank, const void *data)
{
  hsize_t new_dims[2] = {(hsize_t)start + (hsize_t)n, cols};
  if (H5Dset_extent(ds, new_dims) < 0)
    return -1;
  hid_t fspace = H5Dget_space(ds);
  hsize_t offset[2] = {(hsize_t)start, 0}, count[2] = {(hsize_t)n, cols};
  hid_t mspace = H5Screate_simple(rank, count, NULL);
  int rc = -1;
  if (fspace >= 0 && mspace >= 0 && H5Sselect_hyperslab(fspace, H5S_SELECT_SET, offset, NULL, count, NULL) >= 0)
    rc = H5Dwrite(ds, mem_type, mspace, fspace, H5P_DEFAULT, data) < 0 ? -1 : 0;
  if (mspace >= 0)
    H5Sclose(mspace);
  if (fspace >= 0)
    H5Sclose(fspace);
  return rc;
}

int fr_results_append(fr_results_file *rf, const fr_result_row *rows, int n, fr_error *err)
{
  if (n <= 0)
    return FR_OK;
  size_t d = (size_t)rf->dim;
  float *emb = malloc((size_t)n * d * sizeof(float));
  float *norm = malloc((size_t)n * sizeof(float));
  const char **key = malloc((size_t)n * sizeof(char *)), **label = malloc((size_t)n * sizeof(char *));
  const char **error = malloc((size_t)n * sizeof(char *));
  int8_t *status = malloc((size_t)n);
  int32_t *width = malloc((size_t)n * sizeof(int32_t)), *height = malloc((size_t)n * sizeof(int32_t));
  int rc = FR_OK;
  if (!emb || !norm || !key || !label || !error || !status || !width || !height) {
    rc = fr_error_set(err, FR_ERR_NOMEM, "%s: out of memory appending %d rows", rf->path, n);
    goto done;
  }
  for (int i = 0; i < n; i++) {
    const fr_result_row *r = &rows[i];
    if (r->embedding)
      memcpy(emb + (size_t)i * d, r->embedding, d * sizeof(float));
    else
      for (size_t j = 0; j < d; j++)
        emb[(size_t)i * d + j] = NAN;
    norm[i] = r->norm;
    key[i] = r->key ? r->key : "";
    label[i] = r->label ? r->label : "";
    error[i] = r->error ? r->error : "";
    status[i] = (int8_t)r->status;
    width[i] = r->width;
    height[i] = r->height;
    rf->n_ok += r->status == FR_ITEM_OK;
    rf->n_failed += r->status == FR_ITEM_FAILED;
    rf->n_skipped += r->status == FR_ITEM_SKIPPED;
  }
  if (append_rows(rf->embedding, H5T_NATIVE_FLOAT, rf->rows, n, d, 2, emb) < 0 ||
      append_rows(rf->norm, H5T_NATIVE_FLOAT, rf->rows, n, 1, 1, norm) < 0 ||
      append_rows(rf->key, rf->str_type, rf->rows, n, 1, 1, key) < 0 ||
      append_rows(rf->label, rf->str_type, rf->rows, n, 1, 1, label) < 0 ||
      append_rows(rf->status, H5T_NATIVE_INT8, rf->rows, n, 1, 1, status) < 0 ||
      append_rows(rf->error, rf->str_type, rf->rows, n, 1, 1, error) < 0 ||
      append_rows(rf->width, H5T_NATIVE_INT32, rf->rows, n, 1, 1, width) < 0 ||
      append_rows(rf->height, H5T_NATIVE_INT32, rf->rows, n, 1, 1, height) < 0) {
    rc = hdf5_fail(rf, "append rows", err);
    goto done;
  }
  rf->rows += n;
  /* Flushed per batch: a crash after this point keeps every row written so far. */
  if (set_int_attr(rf->file, "items", rf->rows) < 0 || H5Fflush(rf->file, H5F_SCOPE_GLOBAL) < 0)
    rc = hdf5_fail(rf, "flush", err);
done:
  free(emb), free(norm), free(key), free(label), free(error), free(status), free(width), free(height);
  return rc;
}

int64_t fr_results_count(const fr_results_file *rf) { return rf->rows; }

int fr_results_close(fr_results_file *rf, int complete, fr_error *err)
{
  if (!rf)
    return FR_OK;
  int rc = FR_OK;
  if (rf->file >= 0) {
    char now[32];
    iso_time_now(now, sizeof(now));
    int bad = set_string_attr(rf->file, "end_time", now);
    bad |= set_int_attr(rf->file, "items", rf->rows);
    bad |= set_int_attr(rf->file, "items_ok", rf->n_ok);
    bad |= set_int_attr(rf->file, "items_failed", rf->n_failed);
    bad |= set_int_attr(rf->file, "items_skipped", rf->n_skipped);
    bad |= set_string_attr(rf->file, "state", complete ? "complete" : "running");
    if (bad)
      rc = hdf5_fail(rf, "write the closing attributes", err);
  }
  hid_t ids[] = {rf->embedding, rf->norm, rf->key, rf->label, rf->status, rf->error, rf->width, rf->height};
  for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++)
    if (ids[i] > 0)
      H5Dclose(ids[i]);
  if (rf->str_type > 0)
    H5Tclose(rf->str_type);
  if (rf->file >= 0 && H5Fclose(rf->file) < 0 && !rc)
    rc = hdf5_fail(rf, "close the file", err);
  free(rf);
  return rc;
}
