#include "results_hdf5.h"

#include <stdlib.h>
#include <string.h>

hid_t fr_h5_string_type(H5T_cset_t cset)
{
  hid_t t = H5Tcopy(H5T_C_S1);
  if (t < 0)
    return -1;
  if (H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, cset) < 0) {
    H5Tclose(t);
    return -1;
  }
  return t;
}

int fr_h5_group(hid_t file, const char *name)
{
  hid_t g = H5Gcreate2(file, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (g < 0)
    return -1;
  H5Gclose(g);
  return 0;
}

int fr_h5_set_string_attr(hid_t obj, const char *name, const char *value)
{
  hid_t type = fr_h5_string_type(H5T_CSET_UTF8);
  hid_t space = H5Screate(H5S_SCALAR);
  int rc = -1;
  if (type >= 0 && space >= 0) {
    if (H5Aexists(obj, name) > 0)
      H5Adelete(obj, name);
    hid_t attr = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    if (attr >= 0) {
      const char *v = value ? value : "";
      rc = H5Awrite(attr, type, &v) < 0 ? -1 : 0;
      H5Aclose(attr);
    }
  }
  if (space >= 0)
    H5Sclose(space);
  if (type >= 0)
    H5Tclose(type);
  return rc;
}

/* A scalar attribute of file type `stored` from one value of memory type `mem`, replacing any old one. */
static int set_scalar_attr(hid_t obj, const char *name, hid_t stored, hid_t mem, const void *value)
{
  hid_t space = H5Screate(H5S_SCALAR);
  if (space < 0)
    return -1;
  if (H5Aexists(obj, name) > 0)
    H5Adelete(obj, name);
  hid_t attr = H5Acreate2(obj, name, stored, space, H5P_DEFAULT, H5P_DEFAULT);
  int rc = attr >= 0 && H5Awrite(attr, mem, value) >= 0 ? 0 : -1;
  if (attr >= 0)
    H5Aclose(attr);
  H5Sclose(space);
  return rc;
}

int fr_h5_set_int_attr(hid_t obj, const char *name, int64_t value)
{
  return set_scalar_attr(obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &value);
}

int fr_h5_set_float_attr(hid_t obj, const char *name, float value)
{
  return set_scalar_attr(obj, name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, &value);
}

int fr_h5_get_double_attr(hid_t obj, const char *name, double *out)
{
  if (H5Aexists(obj, name) <= 0)
    return -1;
  hid_t attr = H5Aopen(obj, name, H5P_DEFAULT);
  int rc = attr >= 0 && H5Aread(attr, H5T_NATIVE_DOUBLE, out) >= 0 ? 0 : -1;
  if (attr >= 0)
    H5Aclose(attr);
  return rc;
}

int fr_h5_get_string_attr(hid_t obj, const char *name, char *out, size_t size)
{
  out[0] = '\0';
  if (H5Aexists(obj, name) <= 0)
    return -1;
  hid_t attr = H5Aopen(obj, name, H5P_DEFAULT);
  hid_t type = fr_h5_string_type(H5T_CSET_UTF8);
  char *v = NULL;
  int rc = attr >= 0 && type >= 0 && H5Aread(attr, type, &v) >= 0 ? 0 : -1;
  if (!rc && v)
    snprintf(out, size, "%s", v);
  if (v)
    H5free_memory(v);
  if (type >= 0)
    H5Tclose(type);
  if (attr >= 0)
    H5Aclose(attr);
  return rc;
}

int fr_h5_get_int_attr(hid_t obj, const char *name, int64_t *out)
{
  if (H5Aexists(obj, name) <= 0)
    return -1;
  hid_t attr = H5Aopen(obj, name, H5P_DEFAULT);
  int rc = attr >= 0 && H5Aread(attr, H5T_NATIVE_INT64, out) >= 0 ? 0 : -1;
  if (attr >= 0)
    H5Aclose(attr);
  return rc;
}

hid_t fr_h5_create_rows(hid_t file, const char *name, hid_t type, hsize_t cols, hsize_t chunk, const void *fill,
                        const char *description)
{
  int rank = cols ? 2 : 1;
  hsize_t dims[2] = {0, cols}, maxdims[2] = {H5S_UNLIMITED, cols}, chunks[2] = {chunk, cols};
  hid_t space = H5Screate_simple(rank, dims, maxdims);
  hid_t plist = H5Pcreate(H5P_DATASET_CREATE);
  hid_t ds = -1;
  if (space >= 0 && plist >= 0 && H5Pset_chunk(plist, rank, chunks) >= 0 &&
      (!fill || H5Pset_fill_value(plist, type, fill) >= 0)) {
    ds = H5Dcreate2(file, name, type, space, H5P_DEFAULT, plist, H5P_DEFAULT);
    if (ds >= 0 && fr_h5_set_string_attr(ds, "description", description) < 0) {
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

int64_t fr_h5_rows(hid_t ds)
{
  hid_t space = H5Dget_space(ds);
  if (space < 0)
    return -1;
  hsize_t dims[2] = {0, 0};
  int ok = H5Sget_simple_extent_dims(space, dims, NULL) >= 0;
  H5Sclose(space);
  return ok ? (int64_t)dims[0] : -1;
}

static int rows_io(hid_t ds, hid_t mem_type, int64_t start, int n, hsize_t cols, void *data, int write)
{
  int rank = cols ? 2 : 1;
  if (write) {
    int64_t have = fr_h5_rows(ds);
    if (have < 0)
      return -1;
    if (start + n > have) {
      hsize_t dims[2] = {(hsize_t)(start + n), cols};
      if (H5Dset_extent(ds, dims) < 0)
        return -1;
    }
  }
  hid_t fspace = H5Dget_space(ds);
  hsize_t offset[2] = {(hsize_t)start, 0}, count[2] = {(hsize_t)n, cols};
  hid_t mspace = H5Screate_simple(rank, count, NULL);
  int rc = -1;
  if (fspace >= 0 && mspace >= 0 && H5Sselect_hyperslab(fspace, H5S_SELECT_SET, offset, NULL, count, NULL) >= 0)
    rc = (write ? H5Dwrite(ds, mem_type, mspace, fspace, H5P_DEFAULT, data)
                : H5Dread(ds, mem_type, mspace, fspace, H5P_DEFAULT, data)) < 0
             ? -1
             : 0;
  if (mspace >= 0)
    H5Sclose(mspace);
  if (fspace >= 0)
    H5Sclose(fspace);
  return rc;
}

int fr_h5_write_rows(hid_t ds, hid_t mem_type, int64_t start, int n, hsize_t cols, const void *data)
{
  return n <= 0 ? 0 : rows_io(ds, mem_type, start, n, cols, (void *)data, 1);
}

int fr_h5_read_rows(hid_t ds, hid_t mem_type, int64_t start, int n, hsize_t cols, void *data)
{
  return n <= 0 ? 0 : rows_io(ds, mem_type, start, n, cols, data, 0);
}

int fr_h5_write_vector(hid_t file, const char *name, hid_t file_type, hid_t mem_type, int n, const void *data)
{
  hsize_t dims[1] = {(hsize_t)n};
  hid_t space = H5Screate_simple(1, dims, NULL);
  if (space < 0)
    return -1;
  hid_t ds = H5Dcreate2(file, name, file_type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  int rc = ds >= 0 && (n == 0 || H5Dwrite(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0) ? 0 : -1;
  if (ds >= 0)
    H5Dclose(ds);
  H5Sclose(space);
  return rc;
}

int fr_h5_read_vector(hid_t file, const char *name, hid_t mem_type, int64_t *n, void **data, size_t elem_size)
{
  *data = NULL;
  hid_t ds = H5Dopen2(file, name, H5P_DEFAULT);
  if (ds < 0)
    return -1;
  int64_t rows = fr_h5_rows(ds);
  int rc = -1;
  if (rows >= 0 && rows < (1ll << 31)) {
    *data = calloc((size_t)(rows ? rows : 1), elem_size);
    if (*data && (rows == 0 || H5Dread(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, *data) >= 0)) {
      *n = rows;
      rc = 0;
    } else {
      free(*data);
      *data = NULL;
    }
  }
  H5Dclose(ds);
  return rc;
}

void fr_h5_free_strings(char **strings, int64_t n)
{
  if (!strings)
    return;
  for (int64_t i = 0; i < n; i++)
    if (strings[i])
      H5free_memory(strings[i]);
  free(strings);
}

/* ---- label map ---- */

static uint64_t hash_string(const char *s)
{
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

int fr_label_map_init(fr_label_map *m)
{
  memset(m, 0, sizeof(*m));
  m->n_slots = 1024;
  m->slots = calloc((size_t)m->n_slots, sizeof(int));
  return m->slots ? 0 : -1;
}

static int rehash(fr_label_map *m)
{
  int n_slots = m->n_slots * 2;
  int *slots = calloc((size_t)n_slots, sizeof(int));
  if (!slots)
    return -1;
  for (int i = 0; i < m->n; i++) {
    size_t s = hash_string(m->names[i]) & (size_t)(n_slots - 1);
    while (slots[s])
      s = (s + 1) & (size_t)(n_slots - 1);
    slots[s] = i + 1;
  }
  free(m->slots);
  m->slots = slots;
  m->n_slots = n_slots;
  return 0;
}

int fr_label_map_get(fr_label_map *m, const char *name, int insert)
{
  size_t s = hash_string(name) & (size_t)(m->n_slots - 1);
  while (m->slots[s]) {
    if (strcmp(m->names[m->slots[s] - 1], name) == 0)
      return m->slots[s] - 1;
    s = (s + 1) & (size_t)(m->n_slots - 1);
  }
  if (!insert)
    return -1;
  if (m->n == m->cap) {
    int cap = m->cap ? m->cap * 2 : 256;
    char **grown = realloc(m->names, (size_t)cap * sizeof(char *));
    if (!grown)
      return -1;
    m->names = grown;
    m->cap = cap;
  }
  char *copy = strdup(name);
  if (!copy)
    return -1;
  m->names[m->n] = copy;
  m->slots[s] = m->n + 1;
  m->n++;
  if (m->n * 2 > m->n_slots && rehash(m))
    return -1;
  return m->n - 1;
}

int fr_label_map_size(const fr_label_map *m) { return m->n; }

void fr_label_map_free(fr_label_map *m)
{
  for (int i = 0; i < m->n; i++)
    free(m->names[i]);
  free(m->names);
  free(m->slots);
  memset(m, 0, sizeof(*m));
}
