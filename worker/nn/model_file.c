/* The HDF5 model file, writing side and the user-block seal (schema:
 * docs/MODEL_FORMAT.md; loading is in model_file_load.c). */
#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "faceri/model.h"
#include "model_file_internal.h"


/* ---- SHA-256 helpers ---- */

int fr_mf_sha256_hex(const void *data, size_t size, char out[65])
{
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data, size, md, &len, EVP_sha256(), NULL) != 1 || len != 32)
    return -1;
  for (unsigned i = 0; i < 32; i++)
    snprintf(out + 2 * i, 3, "%02x", md[i]);
  return 0;
}

int fr_mf_read_file(const char *path, uint8_t **data, size_t *size, fr_error *err)
{
  *data = NULL;
  FILE *f = fopen(path, "rb");
  if (!f)
    return fr_error_set(err, errno == ENOENT ? FR_ERR_NOT_FOUND : FR_ERR_IO, "%s: cannot open: %s", path,
                        strerror(errno));
  long n = -1;
  if (fseek(f, 0, SEEK_END) == 0)
    n = ftell(f);
  int rc = FR_OK;
  if (n < 0 || fseek(f, 0, SEEK_SET) != 0)
    rc = fr_error_set(err, FR_ERR_IO, "%s: cannot determine the file size: %s", path, strerror(errno));
  else if ((long long)n > MAX_FILE_BYTES)
    rc = fr_error_set(err, FR_ERR_FORMAT, "%s: %ld bytes is larger than any model file", path, n);
  else if (!(*data = malloc((size_t)n + 1)))
    rc = fr_error_set(err, FR_ERR_NOMEM, "%s: out of memory for %ld bytes", path, n);
  else if (fread(*data, 1, (size_t)n, f) != (size_t)n)
    rc = fr_error_set(err, FR_ERR_IO, "%s: read failed", path);
  fclose(f);
  if (rc) {
    free(*data);
    *data = NULL;
    return rc;
  }
  *size = (size_t)n;
  return FR_OK;
}

/* ---- sealing: the user block ---- */

static void format_userblock(char block[USERBLOCK], const char hex[65])
{
  memset(block, 0, USERBLOCK);
  snprintf(block, USERBLOCK,
           MAGIC "user-block 1\nsha256 %s\n"
           "The SHA-256 covers every byte after this 512-byte block. See docs/MODEL_FORMAT.md.\n",
           hex);
}

int fr_model_file_seal(const char *path, fr_error *err)
{
  uint8_t *data;
  size_t size;
  int rc = fr_mf_read_file(path, &data, &size, err);
  if (rc)
    return rc;
  char hex[65], block[USERBLOCK];
  if (size < USERBLOCK + 8 || memcmp(data + USERBLOCK, "\211HDF\r\n\032\n", 8) != 0) {
    free(data);
    return fr_error_set(err, FR_ERR_FORMAT, "%s: not an HDF5 file with a %d-byte user block", path, USERBLOCK);
  }
  rc = fr_mf_sha256_hex(data + USERBLOCK, size - USERBLOCK, hex);
  free(data);
  if (rc)
    return fr_error_set(err, FR_ERR_INTERNAL, "%s: OpenSSL SHA-256 failed", path);
  format_userblock(block, hex);
  FILE *f = fopen(path, "r+b");
  if (!f)
    return fr_error_set(err, FR_ERR_IO, "%s: cannot open for sealing: %s", path, strerror(errno));
  int ok = fwrite(block, 1, USERBLOCK, f) == USERBLOCK && fflush(f) == 0 && fsync(fileno(f)) == 0;
  if (fclose(f) != 0)
    ok = 0;
  return ok ? FR_OK : fr_error_set(err, FR_ERR_IO, "%s: cannot write the user block: %s", path, strerror(errno));
}

int fr_mf_check_seal(const char *path, const uint8_t *data, size_t size, fr_error *err)
{
  if (size < USERBLOCK || memcmp(data, MAGIC, strlen(MAGIC)) != 0)
    return fr_error_set(err, FR_ERR_FORMAT, "%s: not a faceri model file (no '%.12s' user block; %zu bytes)",
                        path, MAGIC, size);
  const char *line = memchr(data, 0, USERBLOCK) ? strstr((const char *)data, "\nsha256 ") : NULL;
  char want[65] = "", got[65];
  if (line)
    snprintf(want, sizeof(want), "%.64s", line + 8);
  char block[USERBLOCK];
  format_userblock(block, want);
  /* The block must be exactly what save writes, so no byte of the file escapes the check. */
  if (strlen(want) != 64 || memcmp(block, data, USERBLOCK) != 0)
    return fr_error_set(err, FR_ERR_FORMAT, "%s: model file user block is damaged", path);
  if (fr_mf_sha256_hex(data + USERBLOCK, size - USERBLOCK, got))
    return fr_error_set(err, FR_ERR_INTERNAL, "%s: OpenSSL SHA-256 failed", path);
  if (strcmp(want, got) != 0)
    return fr_error_set(err, FR_ERR_FORMAT,
                        "%s: checksum mismatch: the model file is corrupt or truncated, or was edited "
                        "without fr_model_file_seal",
                        path);
  return FR_OK;
}

/* ---- writing ---- */

typedef struct writer {
  const char *path;
  fr_error *err;
  int rc;
} writer;

static void wfail(writer *w, const char *obj, const char *what)
{
  if (!w->rc)
    w->rc = fr_error_set(w->err, FR_ERR_HDF5, "%s: cannot write %s %s", w->path, obj, what);
}

static void put_attr(writer *w, hid_t loc, const char *obj, const char *name, hid_t ftype, hid_t mtype, int n,
                     const void *v)
{
  if (w->rc)
    return;
  hsize_t dim = (hsize_t)n;
  hid_t s = n == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &dim, NULL);
  hid_t a = s < 0 ? -1 : H5Acreate2(loc, name, ftype, s, H5P_DEFAULT, H5P_DEFAULT);
  if (a < 0 || H5Awrite(a, mtype, v) < 0)
    wfail(w, obj, name);
  if (a >= 0)
    H5Aclose(a);
  if (s >= 0)
    H5Sclose(s);
}

static void put_str(writer *w, hid_t loc, const char *obj, const char *name, const char *v)
{
  hid_t t = H5Tcopy(H5T_C_S1);
  if (t < 0 || H5Tset_size(t, strlen(v) + 1) < 0 || H5Tset_strpad(t, H5T_STR_NULLTERM) < 0)
    wfail(w, obj, name);
  else
    put_attr(w, loc, obj, name, t, t, 0, v);
  if (t >= 0)
    H5Tclose(t);
}

static void put_int(writer *w, hid_t loc, const char *obj, const char *name, int v)
{
  put_attr(w, loc, obj, name, H5T_STD_I32LE, H5T_NATIVE_INT, 0, &v);
}

static void put_ints(writer *w, hid_t loc, const char *obj, const char *name, const int *v, int n)
{
  put_attr(w, loc, obj, name, H5T_STD_I32LE, H5T_NATIVE_INT, n, v);
}

static void put_dataset(writer *w, hid_t loc, const char *obj, const char *name, int rank, const hsize_t *dims,
                        const float *v)
{
  if (w->rc)
    return;
  hid_t s = H5Screate_simple(rank, dims, NULL);
  hid_t d = s < 0 ? -1 : H5Dcreate2(loc, name, H5T_IEEE_F32LE, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (d < 0 || H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0)
    wfail(w, obj, name);
  if (d >= 0)
    H5Dclose(d);
  if (s >= 0)
    H5Sclose(s);
}

static void write_layer(writer *w, hid_t layers, int i, const fr_layer *l)
{
  char gname[16], obj[32];
  snprintf(gname, sizeof(gname), "%04d", i);
  snprintf(obj, sizeof(obj), "/layers/%s", gname);
  hid_t g = H5Gcreate2(layers, gname, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (g < 0) {
    wfail(w, "group", obj);
    return;
  }
  int in_shape[3] = {l->in_h, l->in_w, l->in_c}, out_shape[3] = {l->out_h, l->out_w, l->out_c};
  int kernel[2] = {l->kernel_h, l->kernel_w}, stride[2] = {l->stride_h, l->stride_w};
  int pads[4] = {l->pad_top, l->pad_left, l->pad_bottom, l->pad_right};
  put_str(w, g, obj, "name", l->name);
  put_str(w, g, obj, "kind", fr_layer_kind_name(l->kind));
  put_int(w, g, obj, "input", l->input);
  put_int(w, g, obj, "residual", l->residual);
  put_ints(w, g, obj, "in_shape", in_shape, 3);
  put_ints(w, g, obj, "out_shape", out_shape, 3);
  put_ints(w, g, obj, "kernel", kernel, 2);
  put_ints(w, g, obj, "stride", stride, 2);
  put_ints(w, g, obj, "pads", pads, 4);
  put_str(w, g, obj, "activation", fr_activation_name(l->activation));
  hsize_t wd[4] = {(hsize_t)l->out_c, (hsize_t)l->kernel_h, (hsize_t)l->kernel_w, (hsize_t)l->in_c};
  hsize_t dd[3] = {(hsize_t)l->kernel_h, (hsize_t)l->kernel_w, (hsize_t)l->out_c};
  hsize_t cd = (hsize_t)l->out_c;
  if (l->kind == FR_LAYER_DEPTHWISE)
    put_dataset(w, g, obj, "weights", 3, dd, l->weights);
  else
    put_dataset(w, g, obj, "weights", 4, wd, l->weights);
  put_dataset(w, g, obj, "bias", 1, &cd, l->bias);
  if (l->slope)
    put_dataset(w, g, obj, "slope", 1, &cd, l->slope);
  H5Gclose(g);
}

static void utc_now(char out[32])
{
  time_t now = time(NULL);
  struct tm tm;
  if (!gmtime_r(&now, &tm) || !strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm))
    snprintf(out, 32, "unknown");
}

static int check_centre(const char *path, const float *centre, int dim, fr_error *err);

/* The /ui_centre group (docs/MODEL_FORMAT.md §4.1). */
static void write_ui_centre(writer *w, hid_t f, const float *centre, int dim, const fr_ui_provenance *prov)
{
  if (w->rc)
    return;
  const char *obj = "/ui_centre";
  hid_t g = H5Gcreate2(f, "ui_centre", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (g < 0) {
    wfail(w, "group", obj);
    return;
  }
  hsize_t d = (hsize_t)dim;
  char created[32];
  if (prov->created[0])
    snprintf(created, sizeof(created), "%s", prov->created);
  else
    utc_now(created);
  float resultant = (float)prov->resultant;
  put_dataset(w, g, obj, "centre", 1, &d, centre);
  put_int(w, g, obj, "count", prov->count);
  put_str(w, g, obj, "created", created);
  put_str(w, g, obj, "face_region", prov->face_region);
  put_str(w, g, obj, "inputs", prov->inputs ? prov->inputs : "");
  put_attr(w, g, obj, "resultant", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 1, &resultant);
  put_attr(w, g, obj, "d_ui_stats", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 7, prov->d_ui_stats);
  put_str(w, g, obj, "d_ui_stats_fields", "mean std min p5 p50 p95 max");
  H5Gclose(g);
}

static void write_root(writer *w, hid_t f, const fr_model *m)
{
  char created[32];
  utc_now(created);
  put_str(w, f, "/", "format", "faceri-model");
  put_int(w, f, "/", "format_version", FR_MODEL_FORMAT_VERSION);
  put_str(w, f, "/", "architecture", m->architecture);
  put_int(w, f, "/", "input_height", m->input_h);
  put_int(w, f, "/", "input_width", m->input_w);
  put_int(w, f, "/", "input_channels", m->input_c);
  put_str(w, f, "/", "channel_order", m->channel_order);
  put_str(w, f, "/", "layout", "NHWC");
  put_attr(w, f, "/", "norm_mean", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 3, m->mean);
  put_attr(w, f, "/", "norm_std", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 3, m->std);
  put_int(w, f, "/", "embedding_size", m->embedding_size);
  put_int(w, f, "/", "output_layer", m->output_layer);
  put_int(w, f, "/", "n_layers", m->n_layers);
  put_str(w, f, "/", "source_name", m->source_name);
  put_str(w, f, "/", "source_sha256", m->source_sha256);
  put_str(w, f, "/", "weights_sha256", m->weights_sha256);
  put_str(w, f, "/", "created", created);
  put_str(w, f, "/", "faceri_version", FACERI_VERSION);
}

int fr_model_save(const fr_model *model, const char *path, fr_error *err)
{
  if (!model || !path)
    return fr_error_set(err, FR_ERR_INVALID, "save model: NULL argument");
  int rc = fr_model_validate(model, err);
  char sha[65];
  if (!rc && (rc = fr_model_weights_sha256(model, sha, err)) == 0 && strcmp(sha, model->weights_sha256) != 0)
    rc = fr_error_set(err, FR_ERR_INVALID, "weights_sha256 '%s' does not match the weights (%s)",
                      model->weights_sha256, sha);
  if (!rc && model->ui_centre)
    rc = check_centre("the model", model->ui_centre, model->embedding_size, err);
  if (rc) {
    fr_error_prefix(err, "%s: refusing to save", path);
    return rc;
  }
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  /* Not mkstemp: its 0600 mode would make model files private; H5F_ACC_EXCL
   * gives the same no-clobber guarantee with the usual umask-derived mode. */
  static unsigned counter;
  char tmp[4200];
  if (snprintf(tmp, sizeof(tmp), "%s.tmp.%ld.%u", path, (long)getpid(), counter++) >= (int)sizeof(tmp))
    return fr_error_set(err, FR_ERR_INVALID, "%s: path too long", path);
  writer w = {.path = path, .err = err};
  hid_t fcpl = H5Pcreate(H5P_FILE_CREATE);
  if (fcpl < 0 || H5Pset_userblock(fcpl, USERBLOCK) < 0)
    wfail(&w, "the", "file creation properties");
  hid_t f = w.rc ? -1 : H5Fcreate(tmp, H5F_ACC_EXCL, fcpl, H5P_DEFAULT);
  if (!w.rc && f < 0) {
    if (fcpl >= 0)
      H5Pclose(fcpl);
    return fr_error_set(err, FR_ERR_IO, "%s: cannot create the temporary file %s (missing or read-only directory?)",
                        path, tmp);
  }
  if (f >= 0) {
    write_root(&w, f, model);
    hid_t layers = w.rc ? -1 : H5Gcreate2(f, "layers", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (!w.rc && layers < 0)
      wfail(&w, "group", "/layers");
    for (int i = 0; layers >= 0 && i < model->n_layers; i++)
      write_layer(&w, layers, i, &model->layers[i]);
    if (layers >= 0)
      H5Gclose(layers);
    if (model->ui_centre)
      write_ui_centre(&w, f, model->ui_centre, model->embedding_size, &model->ui);
    if (!w.rc)
      w.rc = fr_mf_write_extras(f, model, path, err);
    if (H5Fclose(f) < 0)
      wfail(&w, "the", "file (H5Fclose failed)");
  }
  if (fcpl >= 0)
    H5Pclose(fcpl);
  if (!w.rc)
    w.rc = fr_model_file_seal(tmp, err);
  if (!w.rc && rename(tmp, path) != 0)
    w.rc = fr_error_set(err, FR_ERR_IO, "%s: cannot rename %s into place: %s", path, tmp, strerror(errno));
  if (w.rc && f >= 0)
    unlink(tmp); /* only a file this call created */
  return w.rc;
}


static int check_centre(const char *path, const float *centre, int dim, fr_error *err)
{
  double ss = 0;
  for (int i = 0; i < dim; i++) {
    if (!isfinite(centre[i]))
      return fr_error_set(err, FR_ERR_INVALID, "%s: UI centre element %d is not finite", path, i);
    ss += (double)centre[i] * centre[i];
  }
  if (fabs(sqrt(ss) - 1.0) > 1e-3)
    return fr_error_set(err, FR_ERR_INVALID, "%s: UI centre has length %g, not 1", path, sqrt(ss));
  return FR_OK;
}

int fr_model_file_set_ui_centre(const char *path, const float *centre, int dim, const fr_ui_provenance *prov,
                                fr_error *err)
{
  if (!path || !centre || !prov)
    return fr_error_set(err, FR_ERR_INVALID, "set UI centre: NULL argument");
  /* A full load first: the file must be a valid, sealed model of this embedding size. */
  fr_model m = {0};
  int rc = fr_model_load(path, &m, err);
  if (rc)
    return rc;
  int want = m.embedding_size;
  fr_model_free(&m);
  if (dim != want)
    return fr_error_set(err, FR_ERR_INVALID, "%s: UI centre of %d floats for a model with %d-d embeddings", path,
                        dim, want);
  if ((rc = check_centre(path, centre, dim, err)))
    return rc;
  uint8_t *data;
  size_t size;
  if ((rc = fr_mf_read_file(path, &data, &size, err)))
    return rc;
  static unsigned counter;
  char tmp[4200];
  if (snprintf(tmp, sizeof(tmp), "%s.tmp.%ld.%u", path, (long)getpid(), counter++) >= (int)sizeof(tmp)) {
    free(data);
    return fr_error_set(err, FR_ERR_INVALID, "%s: path too long", path);
  }
  /* Edit a copy, so a crash leaves the original whole; "x": never clobber another file. */
  FILE *fo = fopen(tmp, "wbx");
  if (!fo) {
    free(data);
    return fr_error_set(err, FR_ERR_IO, "%s: cannot create %s: %s", path, tmp, strerror(errno));
  }
  int ok = fwrite(data, 1, size, fo) == size;
  ok = fclose(fo) == 0 && ok;
  free(data);
  writer w = {.path = path, .err = err};
  if (!ok)
    w.rc = fr_error_set(err, FR_ERR_IO, "%s: cannot write %s: %s", path, tmp, strerror(errno));
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  hid_t f = w.rc ? -1 : H5Fopen(tmp, H5F_ACC_RDWR, H5P_DEFAULT);
  if (!w.rc && f < 0)
    w.rc = fr_error_set(err, FR_ERR_HDF5, "%s: HDF5 cannot open the copy %s for writing", path, tmp);
  /* The old group's space is not reclaimed (HDF5 never shrinks a file): a few KiB per replacement. */
  if (f >= 0 && H5Lexists(f, "ui_centre", H5P_DEFAULT) > 0 && H5Ldelete(f, "ui_centre", H5P_DEFAULT) < 0)
    wfail(&w, "group", "/ui_centre (delete the old one)");
  if (f >= 0)
    write_ui_centre(&w, f, centre, dim, prov);
  if (f >= 0 && H5Fclose(f) < 0)
    wfail(&w, "the", "file (H5Fclose failed)");
  if (!w.rc)
    w.rc = fr_model_file_seal(tmp, err);
  if (!w.rc && rename(tmp, path) != 0)
    w.rc = fr_error_set(err, FR_ERR_IO, "%s: cannot rename %s into place: %s", path, tmp, strerror(errno));
  if (w.rc)
    unlink(tmp);
  return w.rc;
}
