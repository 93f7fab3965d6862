/* The HDF5 model file, reading side (schema: docs/MODEL_FORMAT.md).
 *
 * Loading trusts nothing: the user block's SHA-256 of the HDF5 part is checked
 * on an in-memory copy before HDF5 parses a byte (HDF5's parser is not hardened
 * against hostile files), HDF5 then opens that same copy through the core
 * driver (so the file cannot change in between), and every attribute and
 * dataset is checked for type, shape and range before anything is allocated
 * from it. */
#include <hdf5.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "faceri/model.h"
#include "model_file_internal.h"

typedef struct reader {
  const char *path;
  fr_error *err;
} reader;

static int rfail(reader *r, const char *obj, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int rfail(reader *r, const char *obj, const char *fmt, ...)
{
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  return fr_error_set(r->err, FR_ERR_FORMAT, "%s: %s: %s", r->path, obj, msg);
}

/* Opens attribute name of loc, which must be of class cls with n elements
 * (n == 0: a scalar or a one-element vector). */
static int open_attr(reader *r, hid_t loc, const char *obj, const char *name, H5T_class_t cls, int n, hid_t *out)
{
  *out = -1;
  if (H5Aexists(loc, name) <= 0)
    return rfail(r, obj, "missing attribute '%s'", name);
  hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
  if (a < 0)
    return rfail(r, obj, "cannot open attribute '%s'", name);
  hid_t t = H5Aget_type(a), s = H5Aget_space(a);
  H5T_class_t c = t < 0 ? H5T_NO_CLASS : H5Tget_class(t);
  hssize_t np = s < 0 ? -1 : H5Sget_simple_extent_npoints(s);
  int nd = s < 0 ? -1 : H5Sget_simple_extent_ndims(s);
  if (t >= 0)
    H5Tclose(t);
  if (s >= 0)
    H5Sclose(s);
  int rc = FR_OK;
  if (c != cls)
    rc = rfail(r, obj, "attribute '%s' has the wrong type (HDF5 class %d, expected %d)", name, (int)c, (int)cls);
  else if (n == 0 ? (np != 1 || nd > 1) : (np != n || nd != 1))
    rc = rfail(r, obj, "attribute '%s' has %lld elements, expected %d", name, (long long)np, n ? n : 1);
  if (rc) {
    H5Aclose(a);
    return rc;
  }
  *out = a;
  return FR_OK;
}

static int get_str(reader *r, hid_t loc, const char *obj, const char *name, char *out, size_t cap)
{
  hid_t a;
  int rc = open_attr(r, loc, obj, name, H5T_STRING, 0, &a);
  if (rc)
    return rc;
  hid_t ft = H5Aget_type(a), mt = -1;
  htri_t vlen = ft < 0 ? -1 : H5Tis_variable_str(ft);
  size_t size = ft < 0 ? 0 : H5Tget_size(ft);
  if (vlen > 0) { /* h5py writes variable-length strings by default */
    char *s = NULL;
    mt = H5Tcopy(H5T_C_S1);
    if (mt < 0 || H5Tset_size(mt, H5T_VARIABLE) < 0 || H5Aread(a, mt, &s) < 0 || !s)
      rc = rfail(r, obj, "cannot read string attribute '%s'", name);
    else if (strlen(s) >= cap)
      rc = rfail(r, obj, "attribute '%s' is longer than %zu bytes", name, cap - 1);
    else
      memcpy(out, s, strlen(s) + 1);
    if (s)
      H5free_memory(s);
  } else if (vlen == 0 && size > 0 && size <= 65536) {
    char *buf = calloc(1, size + 1);
    mt = H5Tcopy(ft);
    if (!buf || mt < 0 || H5Aread(a, mt, buf) < 0)
      rc = rfail(r, obj, "cannot read string attribute '%s'", name);
    else if (strlen(buf) >= cap)
      rc = rfail(r, obj, "attribute '%s' is longer than %zu bytes", name, cap - 1);
    else
      memcpy(out, buf, strlen(buf) + 1);
    free(buf);
  } else {
    rc = rfail(r, obj, "attribute '%s' is not a readable string", name);
  }
  if (mt >= 0)
    H5Tclose(mt);
  if (ft >= 0)
    H5Tclose(ft);
  H5Aclose(a);
  return rc;
}

/* Integers are read as long long (HDF5 converts from any stored width) and then range-checked. */
static int get_ints(reader *r, hid_t loc, const char *obj, const char *name, int n, long long lo, long long hi,
                    int *out)
{
  hid_t a;
  long long v[8];
  int rc = open_attr(r, loc, obj, name, H5T_INTEGER, n, &a);
  if (rc)
    return rc;
  if (H5Aread(a, H5T_NATIVE_LLONG, v) < 0)
    rc = rfail(r, obj, "cannot read attribute '%s'", name);
  H5Aclose(a);
  for (int i = 0; !rc && i < (n ? n : 1); i++) {
    if (v[i] < lo || v[i] > hi)
      return rfail(r, obj, "attribute '%s' = %lld outside [%lld, %lld]", name, v[i], lo, hi);
    out[i] = (int)v[i];
  }
  return rc;
}

static int get_floats(reader *r, hid_t loc, const char *obj, const char *name, int n, float *out)
{
  hid_t a;
  double v[8];
  int rc = open_attr(r, loc, obj, name, H5T_FLOAT, n, &a);
  if (rc)
    return rc;
  if (H5Aread(a, H5T_NATIVE_DOUBLE, v) < 0)
    rc = rfail(r, obj, "cannot read attribute '%s'", name);
  H5Aclose(a);
  for (int i = 0; !rc && i < n; i++)
    out[i] = (float)v[i]; /* finiteness and sign are fr_model_validate's job */
  return rc;
}

/* A float dataset whose shape must be exactly dims; allocation happens only after the check. */
static int get_dataset(reader *r, hid_t g, const char *obj, const char *name, int rank, const hsize_t *dims,
                       float **out)
{
  *out = NULL;
  if (H5Lexists(g, name, H5P_DEFAULT) <= 0)
    return rfail(r, obj, "missing dataset '%s'", name);
  hid_t d = H5Dopen2(g, name, H5P_DEFAULT);
  if (d < 0)
    return rfail(r, obj, "cannot open dataset '%s'", name);
  hid_t t = H5Dget_type(d), s = H5Dget_space(d);
  hsize_t got[8] = {0};
  int nd = s < 0 ? -1 : H5Sget_simple_extent_ndims(s);
  int rc = FR_OK;
  if (t < 0 || H5Tget_class(t) != H5T_FLOAT)
    rc = rfail(r, obj, "dataset '%s' is not floating point", name);
  else if (nd != rank || H5Sget_simple_extent_dims(s, got, NULL) != rank)
    rc = rfail(r, obj, "dataset '%s' has rank %d, expected %d", name, nd, rank);
  size_t count = 1;
  for (int i = 0; !rc && i < rank; i++) {
    if (got[i] != dims[i])
      rc = rfail(r, obj, "dataset '%s' dimension %d is %llu, the layer attributes say %llu", name, i,
                 (unsigned long long)got[i], (unsigned long long)dims[i]);
    count *= (size_t)dims[i];
  }
  if (!rc && !(*out = malloc(count * sizeof(float))))
    rc = fr_error_set(r->err, FR_ERR_NOMEM, "%s: %s: out of memory for '%s'", r->path, obj, name);
  if (!rc && H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, *out) < 0)
    rc = rfail(r, obj, "cannot read dataset '%s'", name);
  if (rc) {
    free(*out);
    *out = NULL;
  }
  if (t >= 0)
    H5Tclose(t);
  if (s >= 0)
    H5Sclose(s);
  H5Dclose(d);
  return rc;
}

static int read_layer(reader *r, hid_t layers, int i, fr_layer *l, int64_t *params)
{
  char gname[16], obj[32], kind[16], act[16];
  snprintf(gname, sizeof(gname), "%04d", i);
  snprintf(obj, sizeof(obj), "/layers/%s", gname);
  if (H5Lexists(layers, gname, H5P_DEFAULT) <= 0)
    return rfail(r, obj, "missing layer group");
  hid_t g = H5Gopen2(layers, gname, H5P_DEFAULT);
  if (g < 0)
    return rfail(r, obj, "cannot open the layer group");
  int in_shape[3], out_shape[3], kernel[2], stride[2], pads[4];
  int rc = get_str(r, g, obj, "name", l->name, sizeof(l->name));
  if (!rc)
    rc = get_str(r, g, obj, "kind", kind, sizeof(kind));
  if (!rc)
    rc = get_str(r, g, obj, "activation", act, sizeof(act));
  if (!rc)
    rc = get_ints(r, g, obj, "input", 0, FR_LAYER_INPUT, i - 1, &l->input);
  if (!rc)
    rc = get_ints(r, g, obj, "residual", 0, FR_NO_LAYER, i - 1, &l->residual);
  if (!rc)
    rc = get_ints(r, g, obj, "in_shape", 3, 1, FR_MODEL_MAX_CHANNELS, in_shape);
  if (!rc)
    rc = get_ints(r, g, obj, "out_shape", 3, 1, FR_MODEL_MAX_CHANNELS, out_shape);
  if (!rc)
    rc = get_ints(r, g, obj, "kernel", 2, 1, FR_MODEL_MAX_KERNEL, kernel);
  if (!rc)
    rc = get_ints(r, g, obj, "stride", 2, 1, FR_MODEL_MAX_KERNEL, stride);
  if (!rc)
    rc = get_ints(r, g, obj, "pads", 4, 0, FR_MODEL_MAX_KERNEL, pads);
  int k = rc ? -1 : fr_layer_kind_parse(kind), a = rc ? -1 : fr_activation_parse(act);
  if (!rc && k < 0)
    rc = rfail(r, obj, "unknown kind '%s'", kind);
  if (!rc && a < 0)
    rc = rfail(r, obj, "unknown activation '%s'", act);
  if (!rc) {
    l->kind = (fr_layer_kind)k;
    l->activation = (fr_activation)a;
    l->in_h = in_shape[0], l->in_w = in_shape[1], l->in_c = in_shape[2];
    l->out_h = out_shape[0], l->out_w = out_shape[1], l->out_c = out_shape[2];
    l->kernel_h = kernel[0], l->kernel_w = kernel[1];
    l->stride_h = stride[0], l->stride_w = stride[1];
    l->pad_top = pads[0], l->pad_left = pads[1], l->pad_bottom = pads[2], l->pad_right = pads[3];
    /* Bound the allocation before making it: every dim is already below 2^16. */
    *params += fr_layer_weight_count(l) + 2LL * l->out_c;
    if (l->kind == FR_LAYER_DEPTHWISE && l->in_c != l->out_c)
      rc = rfail(r, obj, "depthwise layer with %d input and %d output channels", l->in_c, l->out_c);
    else if (*params > FR_MODEL_MAX_PARAMS)
      rc = rfail(r, obj, "the model would exceed %lld parameters", (long long)FR_MODEL_MAX_PARAMS);
  }
  hsize_t wd[4] = {(hsize_t)l->out_c, (hsize_t)l->kernel_h, (hsize_t)l->kernel_w, (hsize_t)l->in_c};
  hsize_t dd[3] = {(hsize_t)l->kernel_h, (hsize_t)l->kernel_w, (hsize_t)l->out_c};
  hsize_t cd = (hsize_t)l->out_c;
  if (!rc)
    rc = l->kind == FR_LAYER_DEPTHWISE ? get_dataset(r, g, obj, "weights", 3, dd, &l->weights)
                                       : get_dataset(r, g, obj, "weights", 4, wd, &l->weights);
  if (!rc)
    rc = get_dataset(r, g, obj, "bias", 1, &cd, &l->bias);
  if (!rc && l->activation == FR_ACT_PRELU)
    rc = get_dataset(r, g, obj, "slope", 1, &cd, &l->slope);
  else if (!rc && H5Lexists(g, "slope", H5P_DEFAULT) > 0)
    rc = rfail(r, obj, "has a slope but activation '%s'", act);
  H5Gclose(g);
  return rc;
}

/* The optional /ui_centre group (docs/MODEL_FORMAT.md §4.1): absent is fine, present
 * must be whole and sane. */
static int read_ui_centre(reader *r, hid_t f, fr_model *m)
{
  if (H5Lexists(f, "ui_centre", H5P_DEFAULT) <= 0)
    return FR_OK;
  const char *obj = "/ui_centre";
  hid_t g = H5Gopen2(f, "ui_centre", H5P_DEFAULT);
  if (g < 0)
    return rfail(r, obj, "cannot open the group");
  hsize_t d = (hsize_t)m->embedding_size;
  fr_ui_provenance *u = &m->ui;
  float resultant = 0;
  const size_t cap = 65536;
  char *inputs = malloc(cap);
  int rc = inputs ? FR_OK : fr_error_set(r->err, FR_ERR_NOMEM, "%s: out of memory", r->path);
  if (!rc)
    rc = get_dataset(r, g, obj, "centre", 1, &d, &m->ui_centre);
  if (!rc)
    rc = get_ints(r, g, obj, "count", 0, 1, INT32_MAX, &u->count);
  if (!rc)
    rc = get_str(r, g, obj, "created", u->created, sizeof(u->created));
  if (!rc)
    rc = get_str(r, g, obj, "face_region", u->face_region, sizeof(u->face_region));
  if (!rc)
    rc = get_str(r, g, obj, "inputs", inputs, cap);
  if (!rc)
    rc = get_floats(r, g, obj, "resultant", 1, &resultant);
  if (!rc)
    rc = get_floats(r, g, obj, "d_ui_stats", 7, u->d_ui_stats);
  H5Gclose(g);
  double ss = 0;
  for (int i = 0; !rc && i < m->embedding_size; i++) {
    if (!isfinite(m->ui_centre[i]))
      rc = rfail(r, obj, "centre element %d is not finite", i);
    ss += (double)m->ui_centre[i] * m->ui_centre[i];
  }
  if (!rc && fabs(sqrt(ss) - 1.0) > 1e-3)
    rc = rfail(r, obj, "centre has length %g, not 1", sqrt(ss));
  if (!rc && !(u->inputs = strdup(inputs)))
    rc = fr_error_set(r->err, FR_ERR_NOMEM, "%s: out of memory", r->path);
  u->resultant = resultant;
  free(inputs);
  return rc; /* on error the caller's fr_model_free releases the centre */
}

typedef struct file_meta {
  char created[64];
  char faceri_version[64];
  char layout[16];
} file_meta;

static int read_root(reader *r, hid_t f, fr_model *m, file_meta *meta)
{
  char format[32];
  int version;
  int rc = get_str(r, f, "/", "format", format, sizeof(format));
  if (!rc && strcmp(format, "faceri-model") != 0)
    rc = rfail(r, "/", "format is '%s', not 'faceri-model'", format);
  if (!rc && (rc = get_ints(r, f, "/", "format_version", 0, 1, 1 << 20, &version)) == 0 &&
      version > FR_MODEL_FORMAT_VERSION)
    return fr_error_set(r->err, FR_ERR_UNSUPPORTED, "%s: model format version %d is newer than this build (%d)",
                        r->path, version, FR_MODEL_FORMAT_VERSION);
  if (!rc)
    rc = get_str(r, f, "/", "architecture", m->architecture, sizeof(m->architecture));
  if (!rc)
    rc = get_ints(r, f, "/", "input_height", 0, 1, FR_MODEL_MAX_DIM, &m->input_h);
  if (!rc)
    rc = get_ints(r, f, "/", "input_width", 0, 1, FR_MODEL_MAX_DIM, &m->input_w);
  if (!rc)
    rc = get_ints(r, f, "/", "input_channels", 0, 1, 3, &m->input_c);
  if (!rc)
    rc = get_str(r, f, "/", "channel_order", m->channel_order, sizeof(m->channel_order));
  if (!rc)
    rc = get_str(r, f, "/", "layout", meta->layout, sizeof(meta->layout));
  if (!rc && strcmp(meta->layout, "NHWC") != 0)
    rc = rfail(r, "/", "layout '%s' (only NHWC is defined)", meta->layout);
  if (!rc)
    rc = get_floats(r, f, "/", "norm_mean", 3, m->mean);
  if (!rc)
    rc = get_floats(r, f, "/", "norm_std", 3, m->std);
  if (!rc)
    rc = get_ints(r, f, "/", "n_layers", 0, 1, FR_MODEL_MAX_LAYERS, &m->n_layers);
  if (!rc)
    rc = get_ints(r, f, "/", "embedding_size", 0, 1, FR_MODEL_MAX_LAYER_ACTIVATION, &m->embedding_size);
  if (!rc)
    rc = get_ints(r, f, "/", "output_layer", 0, 0, m->n_layers - 1, &m->output_layer);
  if (!rc)
    rc = get_str(r, f, "/", "source_name", m->source_name, sizeof(m->source_name));
  if (!rc)
    rc = get_str(r, f, "/", "source_sha256", m->source_sha256, sizeof(m->source_sha256));
  if (!rc)
    rc = get_str(r, f, "/", "weights_sha256", m->weights_sha256, sizeof(m->weights_sha256));
  if (!rc)
    rc = get_str(r, f, "/", "created", meta->created, sizeof(meta->created));
  if (!rc)
    rc = get_str(r, f, "/", "faceri_version", meta->faceri_version, sizeof(meta->faceri_version));
  return rc;
}

static int load(const char *path, fr_model *out, file_meta *meta, fr_error *err)
{
  if (!path || !out)
    return fr_error_set(err, FR_ERR_INVALID, "load model: NULL argument");
  memset(out, 0, sizeof(*out));
  memset(meta, 0, sizeof(*meta));
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  uint8_t *data;
  size_t size;
  int rc = fr_mf_read_file(path, &data, &size, err);
  if (rc)
    return rc;
  fr_model m = {0};
  rc = fr_mf_check_seal(path, data, size, err);
  if (!rc && fr_mf_sha256_hex(data, size, m.file_sha256))
    rc = fr_error_set(err, FR_ERR_INTERNAL, "%s: OpenSSL SHA-256 failed", path);
  hid_t fapl = -1, f = -1, layers = -1;
  reader r = {.path = path, .err = err};
  if (!rc) {
    /* The core driver copies the verified image: HDF5 reads exactly the bytes we checked. */
    fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0 || H5Pset_fapl_core(fapl, 1 << 16, 0) < 0 || H5Pset_file_image(fapl, data, size) < 0)
      rc = fr_error_set(err, FR_ERR_HDF5, "%s: cannot set up an in-memory HDF5 image", path);
  }
  free(data);
  /* The core driver refuses an image whose name exists on disk; this one never does. */
  if (!rc && (f = H5Fopen("/proc/faceri-model-image", H5F_ACC_RDONLY, fapl)) < 0)
    rc = fr_error_set(err, FR_ERR_FORMAT, "%s: HDF5 cannot open the model file", path);
  if (!rc)
    rc = read_root(&r, f, &m, meta);
  if (!rc && (H5Lexists(f, "layers", H5P_DEFAULT) <= 0 || (layers = H5Gopen2(f, "layers", H5P_DEFAULT)) < 0))
    rc = rfail(&r, "/layers", "missing group");
  if (!rc && !(m.layers = calloc((size_t)m.n_layers, sizeof(fr_layer))))
    rc = fr_error_set(err, FR_ERR_NOMEM, "%s: out of memory", path);
  int64_t params = 0;
  int n = m.n_layers;
  m.n_layers = 0; /* counts the layers whose arrays fr_model_free must release */
  for (int i = 0; !rc && i < n; i++) {
    m.n_layers = i + 1;
    rc = read_layer(&r, layers, i, &m.layers[i], &params);
  }
  if (!rc)
    rc = read_ui_centre(&r, f, &m);
  if (!rc)
    rc = fr_mf_read_extras(f, &m, path, err);
  if (layers >= 0)
    H5Gclose(layers);
  if (f >= 0)
    H5Fclose(f);
  if (fapl >= 0)
    H5Pclose(fapl);
  if (!rc && (rc = fr_model_validate(&m, err)))
    fr_error_prefix(err, "%s", path);
  char sha[65];
  if (!rc && (rc = fr_model_weights_sha256(&m, sha, err)) == 0 && strcmp(sha, m.weights_sha256) != 0)
    rc = rfail(&r, "/", "weights_sha256 %s does not match the stored weights (%s)", m.weights_sha256, sha);
  if (rc) {
    fr_model_free(&m);
    return rc;
  }
  *out = m;
  return FR_OK;
}

int fr_model_load(const char *path, fr_model *out, fr_error *err)
{
  file_meta meta;
  return load(path, out, &meta, err);
}

int fr_model_print_info(const char *path, FILE *out, fr_error *err)
{
  fr_model m;
  file_meta meta;
  int rc = load(path, &m, &meta, err);
  if (rc)
    return rc;
  fprintf(out, "model file      %s\n", path);
  fprintf(out, "file sha256     %s\n", m.file_sha256);
  fprintf(out, "architecture    %s\n", m.architecture);
  fprintf(out, "format          faceri-model version %d, written by faceri %s at %s\n", FR_MODEL_FORMAT_VERSION,
          meta.faceri_version, meta.created);
  fprintf(out, "input           %dx%dx%d %s %s, x = (pixel - mean) / std\n", m.input_h, m.input_w, m.input_c,
          m.channel_order, meta.layout);
  fprintf(out, "mean            %g %g %g\n", m.mean[0], m.mean[1], m.mean[2]);
  fprintf(out, "std             %g %g %g\n", m.std[0], m.std[1], m.std[2]);
  fprintf(out, "embedding       %d floats from layer %d\n", m.embedding_size, m.output_layer);
  fprintf(out, "source          %s (sha256 %s)\n", m.source_name, m.source_sha256);
  fprintf(out, "weights sha256  %s\n\n", m.weights_sha256);
  fprintf(out, "%4s  %-9s  %-15s  %-15s  %-5s  %-3s  %-7s  %-5s  %-4s  %s\n", "#", "kind", "in", "out", "k",
          "s", "t,l,b,r", "act", "res", "name");
  for (int i = 0; i < m.n_layers; i++) {
    const fr_layer *l = &m.layers[i];
    char in[32], o[32], k[16], s[16], p[24], res[8];
    snprintf(in, sizeof(in), "%dx%dx%d", l->in_h, l->in_w, l->in_c);
    snprintf(o, sizeof(o), "%dx%dx%d", l->out_h, l->out_w, l->out_c);
    snprintf(k, sizeof(k), "%dx%d", l->kernel_h, l->kernel_w);
    snprintf(s, sizeof(s), "%dx%d", l->stride_h, l->stride_w);
    snprintf(p, sizeof(p), "%d,%d,%d,%d", l->pad_top, l->pad_left, l->pad_bottom, l->pad_right);
    if (l->residual == FR_NO_LAYER)
      snprintf(res, sizeof(res), "-");
    else if (l->residual == FR_LAYER_INPUT)
      snprintf(res, sizeof(res), "in");
    else
      snprintf(res, sizeof(res), "%d", l->residual);
    fprintf(out, "%4d  %-9s  %-15s  %-15s  %-5s  %-3s  %-7s  %-5s  %-4s  %s\n", i, fr_layer_kind_name(l->kind), in,
            o, k, s, p, fr_activation_name(l->activation), res, l->name);
  }
  fprintf(out, "\nparameters      %lld\nGMAC per image  %.4f\n", (long long)fr_model_param_count(&m),
          (double)fr_model_macs(&m) / 1e9);
  fr_mf_print_ui(&m, out);
  fr_mf_print_extras(&m, out);
  fr_model_free(&m);
  return FR_OK;
}
