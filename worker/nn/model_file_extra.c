/* The model file's optional training groups (docs/MODEL_FORMAT.md §4.2, §4.3): named
 * tensors under /prototypes and /heads, and the /training group a checkpoint needs.
 * Both directions live here so the two stay in step; model_file.c and
 * model_file_load.c call in with an open file. The loader trusts nothing: every type,
 * rank and size is checked before anything is allocated from it. */
#include <hdf5.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "faceri/model.h"
#include "model_file_internal.h"

#define MAX_CONFIG_BYTES (1u << 20)
#define MAX_STATE_BYTES ((size_t)FR_MODEL_MAX_PARAMS * 8 + 4096)
#define MAX_LOSS_STEPS (64LL << 20)
#define MAX_CLASS_NAME_BYTES (64u << 20)

static int hfail(fr_error *err, const char *path, const char *obj, const char *what)
{
  return fr_error_set(err, FR_ERR_HDF5, "%s: %s: cannot %s", path, obj, what);
}

static int bad(fr_error *err, const char *path, const char *obj, const char *what)
{
  return fr_error_set(err, FR_ERR_FORMAT, "%s: %s: %s", path, obj, what);
}

/* ---- writing ---- */

static int write_raw(hid_t loc, const char *name, hid_t ftype, hid_t mtype, int rank, const hsize_t *dims,
                     const void *data, const char *path, fr_error *err)
{
  hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
  hid_t s = H5Screate_simple(rank, dims, NULL);
  hid_t d = -1;
  if (lcpl >= 0 && s >= 0 && H5Pset_create_intermediate_group(lcpl, 1) >= 0)
    d = H5Dcreate2(loc, name, ftype, s, lcpl, H5P_DEFAULT, H5P_DEFAULT);
  int rc = d < 0 || H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0 ? hfail(err, path, name, "write")
                                                                                  : FR_OK;
  if (d >= 0)
    H5Dclose(d);
  if (s >= 0)
    H5Sclose(s);
  if (lcpl >= 0)
    H5Pclose(lcpl);
  return rc;
}

static int write_attr(hid_t loc, const char *name, hid_t ftype, hid_t mtype, const void *v, const char *path,
                      fr_error *err)
{
  hid_t s = H5Screate(H5S_SCALAR);
  hid_t a = s < 0 ? -1 : H5Acreate2(loc, name, ftype, s, H5P_DEFAULT, H5P_DEFAULT);
  int rc = a < 0 || H5Awrite(a, mtype, v) < 0 ? hfail(err, path, name, "write the attribute") : FR_OK;
  if (a >= 0)
    H5Aclose(a);
  if (s >= 0)
    H5Sclose(s);
  return rc;
}

static int write_training(hid_t f, const fr_model_training *t, const char *path, fr_error *err)
{
  hid_t g = H5Gcreate2(f, "training", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (g < 0)
    return hfail(err, path, "/training", "create the group");
  long long step = t->step;
  int rc = write_attr(g, "step", H5T_STD_I64LE, H5T_NATIVE_LLONG, &step, path, err);
  if (!rc) {
    const char *cfg = t->config ? t->config : "{}";
    hsize_t n = strlen(cfg);
    rc = write_raw(g, "config", H5T_STD_U8LE, H5T_NATIVE_UCHAR, 1, &n, cfg, path, err);
  }
  if (!rc && t->optimizer_state_size) {
    hsize_t n = t->optimizer_state_size;
    rc = write_raw(g, "optimizer_state", H5T_STD_U8LE, H5T_NATIVE_UCHAR, 1, &n, t->optimizer_state, path, err);
  }
  if (!rc && t->step > 0 && t->loss) {
    hsize_t n = (hsize_t)t->step;
    rc = write_raw(g, "loss", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 1, &n, t->loss, path, err);
  }
  if (!rc && t->n_classes > 0 && t->class_names_size) {
    int n = t->n_classes;
    rc = write_attr(g, "n_classes", H5T_STD_I32LE, H5T_NATIVE_INT, &n, path, err);
    hsize_t bytes = t->class_names_size;
    if (!rc)
      rc = write_raw(g, "class_names", H5T_STD_U8LE, H5T_NATIVE_UCHAR, 1, &bytes, t->class_names, path, err);
  }
  H5Gclose(g);
  return rc;
}

int fr_mf_write_extras(hid_t f, const fr_model *m, const char *path, fr_error *err)
{
  int rc = FR_OK;
  for (int i = 0; i < m->n_tensors && !rc; i++) {
    const fr_model_tensor *t = &m->tensors[i];
    hsize_t dims[4];
    for (int k = 0; k < t->rank; k++)
      dims[k] = (hsize_t)t->dims[k];
    rc = write_raw(f, t->path, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, t->rank, dims, t->data, path, err);
  }
  if (!rc && m->training.present)
    rc = write_training(f, &m->training, path, err);
  return rc;
}

/* ---- reading ---- */

typedef struct visit_state {
  hid_t file;
  fr_model *m;
  const char *path;
  const char *root;
  fr_error *err;
  int rc;
} visit_state;

static int read_tensor(hid_t f, const char *name, visit_state *v)
{
  hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
  if (d < 0)
    return hfail(v->err, v->path, name, "open the dataset");
  hid_t t = H5Dget_type(d), s = H5Dget_space(d);
  int rank = s < 0 ? -1 : H5Sget_simple_extent_ndims(s);
  hsize_t dims[4] = {0};
  int64_t d64[4] = {0}, count = 1;
  int rc = FR_OK;
  if (t < 0 || H5Tget_class(t) != H5T_FLOAT)
    rc = bad(v->err, v->path, name, "an optional tensor that is not floating point");
  else if (rank < 1 || rank > 4 || H5Sget_simple_extent_dims(s, dims, NULL) != rank)
    rc = bad(v->err, v->path, name, "an optional tensor of rank outside 1..4");
  for (int k = 0; !rc && k < rank; k++) {
    d64[k] = (int64_t)dims[k];
    if (dims[k] < 1 || (count *= d64[k]) > FR_MODEL_MAX_PARAMS)
      rc = bad(v->err, v->path, name, "an optional tensor with too many elements");
  }
  float *data = rc ? NULL : malloc((size_t)count * sizeof(float));
  if (!rc && !data)
    rc = fr_error_set(v->err, FR_ERR_NOMEM, "%s: %s: out of memory", v->path, name);
  if (!rc && H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
    rc = hfail(v->err, v->path, name, "read the dataset");
  if (!rc && (rc = fr_model_set_tensor(v->m, name, rank, d64, data, v->err)))
    fr_error_prefix(v->err, "%s", v->path);
  free(data);
  if (t >= 0)
    H5Tclose(t);
  if (s >= 0)
    H5Sclose(s);
  H5Dclose(d);
  return rc;
}

static herr_t visit_link(hid_t g, const char *name, const H5L_info_t *info, void *data)
{
  visit_state *v = data;
  (void)g;
  (void)info;
  char full[FR_MODEL_TENSOR_PATH + 32];
  if (snprintf(full, sizeof(full), "%s/%s", v->root, name) >= (int)sizeof(full)) {
    v->rc = bad(v->err, v->path, v->root, "an optional tensor path is too long");
    return -1;
  }
  H5O_info_t oi;
  if (H5Oget_info_by_name(v->file, full, &oi, H5P_DEFAULT) < 0) {
    v->rc = hfail(v->err, v->path, full, "inspect the object");
    return -1;
  }
  if (oi.type == H5O_TYPE_GROUP)
    return 0;
  if (oi.type != H5O_TYPE_DATASET) {
    v->rc = bad(v->err, v->path, full, "neither a group nor a dataset");
    return -1;
  }
  v->rc = read_tensor(v->file, full, v);
  return v->rc ? -1 : 0;
}

static int read_tensors_under(hid_t f, const char *root, fr_model *m, const char *path, fr_error *err)
{
  if (H5Lexists(f, root, H5P_DEFAULT) <= 0)
    return FR_OK;
  visit_state v = {f, m, path, root, err, FR_OK};
  if (H5Lvisit_by_name(f, root, H5_INDEX_NAME, H5_ITER_INC, visit_link, &v, H5P_DEFAULT) < 0 && !v.rc)
    v.rc = hfail(err, path, root, "walk the group");
  return v.rc;
}

/* A 1-d dataset of class cls with at most max elements of elem bytes; *out malloc'd (+1 NUL byte). */
static int read_blob(hid_t g, const char *name, H5T_class_t cls, size_t elem, size_t max, void **out, size_t *n,
                     const char *path, fr_error *err)
{
  *out = NULL;
  *n = 0;
  char obj[64];
  snprintf(obj, sizeof(obj), "/training/%s", name);
  hid_t d = H5Dopen2(g, name, H5P_DEFAULT);
  if (d < 0)
    return hfail(err, path, obj, "open the dataset");
  hid_t t = H5Dget_type(d), s = H5Dget_space(d);
  hsize_t dim = 0;
  int rc = FR_OK;
  if (t < 0 || H5Tget_class(t) != cls || H5Tget_size(t) != elem)
    rc = bad(err, path, obj, "has the wrong type");
  else if (s < 0 || H5Sget_simple_extent_ndims(s) != 1 || H5Sget_simple_extent_dims(s, &dim, NULL) != 1 ||
           dim > max)
    rc = bad(err, path, obj, "has the wrong shape or is too large");
  if (!rc && !(*out = calloc((size_t)dim * elem + 1, 1)))
    rc = fr_error_set(err, FR_ERR_NOMEM, "%s: %s: out of memory", path, obj);
  hid_t mtype = cls == H5T_FLOAT ? H5T_NATIVE_FLOAT : H5T_NATIVE_UCHAR;
  if (!rc && dim > 0 && H5Dread(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, *out) < 0)
    rc = hfail(err, path, obj, "read the dataset");
  if (rc) {
    free(*out);
    *out = NULL;
  } else {
    *n = (size_t)dim;
  }
  if (t >= 0)
    H5Tclose(t);
  if (s >= 0)
    H5Sclose(s);
  H5Dclose(d);
  return rc;
}

static int read_int_attr(hid_t g, const char *name, long long lo, long long hi, long long *out, const char *path,
                         fr_error *err)
{
  hid_t a = H5Aexists(g, name) > 0 ? H5Aopen(g, name, H5P_DEFAULT) : -1;
  if (a < 0)
    return bad(err, path, "/training", "missing an integer attribute (step or n_classes)");
  hid_t t = H5Aget_type(a), s = H5Aget_space(a);
  int rc = FR_OK;
  if (t < 0 || H5Tget_class(t) != H5T_INTEGER || s < 0 || H5Sget_simple_extent_npoints(s) != 1 ||
      H5Aread(a, H5T_NATIVE_LLONG, out) < 0 || *out < lo || *out > hi)
    rc = bad(err, path, "/training", "an integer attribute is not a scalar in range");
  if (t >= 0)
    H5Tclose(t);
  if (s >= 0)
    H5Sclose(s);
  H5Aclose(a);
  return rc;
}

static int read_training(hid_t f, fr_model_training *t, const char *path, fr_error *err)
{
  hid_t g = H5Gopen2(f, "training", H5P_DEFAULT);
  if (g < 0)
    return hfail(err, path, "/training", "open the group");
  long long step = 0, classes = 0;
  size_t n = 0;
  void *blob = NULL;
  int rc = read_int_attr(g, "step", 0, MAX_LOSS_STEPS, &step, path, err);
  t->present = 1;
  t->step = step;
  if (!rc && (rc = read_blob(g, "config", H5T_INTEGER, 1, MAX_CONFIG_BYTES, &blob, &n, path, err)) == 0)
    t->config = blob;
  if (!rc && H5Lexists(g, "optimizer_state", H5P_DEFAULT) > 0 &&
      (rc = read_blob(g, "optimizer_state", H5T_INTEGER, 1, MAX_STATE_BYTES, &blob, &n, path, err)) == 0) {
    t->optimizer_state = blob;
    t->optimizer_state_size = n;
  }
  if (!rc && H5Lexists(g, "loss", H5P_DEFAULT) > 0 &&
      (rc = read_blob(g, "loss", H5T_FLOAT, 4, MAX_LOSS_STEPS, &blob, &n, path, err)) == 0) {
    t->loss = blob;
    if ((long long)n != step)
      rc = bad(err, path, "/training/loss", "does not hold one value per step taken");
  }
  if (!rc && H5Lexists(g, "class_names", H5P_DEFAULT) > 0) {
    rc = read_int_attr(g, "n_classes", 1, INT32_MAX, &classes, path, err);
    if (!rc && (rc = read_blob(g, "class_names", H5T_INTEGER, 1, MAX_CLASS_NAME_BYTES, &blob, &n, path, err)) == 0) {
      t->class_names = blob;
      t->class_names_size = n;
      t->n_classes = (int)classes;
      size_t names = 0;
      for (size_t i = 0; i < n; i++)
        names += ((char *)blob)[i] == '\0';
      if (n == 0 || ((char *)blob)[n - 1] != '\0' || names != (size_t)classes)
        rc = bad(err, path, "/training/class_names", "does not hold n_classes NUL-terminated names");
    }
  }
  H5Gclose(g);
  return rc;
}

int fr_mf_read_extras(hid_t f, fr_model *m, const char *path, fr_error *err)
{
  int rc = read_tensors_under(f, "prototypes", m, path, err);
  if (!rc)
    rc = read_tensors_under(f, "heads", m, path, err);
  if (!rc && H5Lexists(f, "training", H5P_DEFAULT) > 0)
    rc = read_training(f, &m->training, path, err);
  return rc;
}
