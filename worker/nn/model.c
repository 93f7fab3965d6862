/* Model bookkeeping shared by the importers, the model file and the engine:
 * sizes, cost, validation, identity (SHA-256 of the weights). */
#include "faceri/model.h"

#include <math.h>
#include <stdbool.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int64_t fr_layer_weight_count(const fr_layer *l)
{
  int64_t k = (int64_t)l->kernel_h * l->kernel_w;
  if (l->kind == FR_LAYER_DEPTHWISE)
    return k * l->out_c;
  return k * l->out_c * l->in_c;
}

int64_t fr_model_macs(const fr_model *m)
{
  int64_t macs = 0;
  for (int i = 0; i < m->n_layers; i++) {
    const fr_layer *l = &m->layers[i];
    macs += (int64_t)l->out_h * l->out_w * fr_layer_weight_count(l);
  }
  return macs;
}

int64_t fr_model_param_count(const fr_model *m)
{
  int64_t n = 0;
  for (int i = 0; i < m->n_layers; i++) {
    const fr_layer *l = &m->layers[i];
    n += fr_layer_weight_count(l) + l->out_c + (l->activation == FR_ACT_PRELU ? l->out_c : 0);
  }
  return n;
}

void fr_model_free(fr_model *m)
{
  if (!m)
    return;
  for (int i = 0; m->layers && i < m->n_layers; i++) {
    free(m->layers[i].weights);
    free(m->layers[i].bias);
    free(m->layers[i].slope);
  }
  free(m->layers);
  m->layers = NULL;
  m->n_layers = 0;
  free(m->ui_centre);
  m->ui_centre = NULL;
  free(m->ui.inputs);
  m->ui.inputs = NULL;
  for (int i = 0; m->tensors && i < m->n_tensors; i++)
    free(m->tensors[i].data);
  free(m->tensors);
  m->tensors = NULL;
  m->n_tensors = 0;
  fr_model_training_clear(&m->training);
}

void fr_model_training_clear(fr_model_training *t)
{
  free(t->config);
  free(t->optimizer_state);
  free(t->loss);
  free(t->class_names);
  memset(t, 0, sizeof(*t));
}

const fr_model_tensor *fr_model_find_tensor(const fr_model *m, const char *path)
{
  for (int i = 0; m && path && i < m->n_tensors; i++)
    if (!strcmp(m->tensors[i].path, path))
      return &m->tensors[i];
  return NULL;
}

/* "prototypes/..." or "heads/...": names of HDF5 links made of [A-Za-z0-9_.-], no empty part. */
static int tensor_path_ok(const char *p)
{
  size_t n = strlen(p);
  if (n == 0 || n >= FR_MODEL_TENSOR_PATH || (strncmp(p, "prototypes/", 11) && strncmp(p, "heads/", 6)))
    return 0;
  for (size_t i = 0; i < n; i++) {
    char c = p[i];
    int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
             c == '-' || (c == '/' && i + 1 < n && p[i + 1] != '/');
    if (!ok)
      return 0;
    /* "." and ".." parts would name other groups */
    if (c == '.' && (i == 0 || p[i - 1] == '/') &&
        (i + 1 == n || p[i + 1] == '/' || (p[i + 1] == '.' && (i + 2 == n || p[i + 2] == '/'))))
      return 0;
  }
  return 1;
}

int fr_model_set_tensor(fr_model *m, const char *path, int rank, const int64_t *dims, const float *data,
                        fr_error *err)
{
  if (!m || !path || !dims || !data)
    return fr_error_set(err, FR_ERR_INVALID, "model tensor: NULL argument");
  if (!tensor_path_ok(path))
    return fr_error_set(err, FR_ERR_INVALID,
                        "model tensor \"%s\": the path must start with prototypes/ or heads/ and use [A-Za-z0-9_.-/]",
                        path);
  if (rank < 1 || rank > 4)
    return fr_error_set(err, FR_ERR_INVALID, "model tensor %s: rank %d (1..4)", path, rank);
  int64_t count = 1;
  for (int i = 0; i < rank; i++) {
    if (dims[i] < 1 || dims[i] > FR_MODEL_MAX_PARAMS || (count *= dims[i]) > FR_MODEL_MAX_PARAMS)
      return fr_error_set(err, FR_ERR_INVALID, "model tensor %s: dimension %d is %lld (too many elements)", path, i,
                          (long long)dims[i]);
  }
  for (int64_t i = 0; i < count; i++)
    if (!isfinite(data[i]))
      return fr_error_set(err, FR_ERR_INVALID, "model tensor %s: element %lld is not finite", path, (long long)i);
  float *copy = malloc((size_t)count * sizeof(float));
  if (!copy)
    return fr_error_set(err, FR_ERR_NOMEM, "model tensor %s: out of memory", path);
  memcpy(copy, data, (size_t)count * sizeof(float));
  fr_model_tensor *t = (fr_model_tensor *)fr_model_find_tensor(m, path);
  if (!t) {
    if (m->n_tensors >= FR_MODEL_MAX_TENSORS) {
      free(copy);
      return fr_error_set(err, FR_ERR_UNSUPPORTED, "model tensor %s: more than %d optional tensors", path,
                          FR_MODEL_MAX_TENSORS);
    }
    fr_model_tensor *grown = realloc(m->tensors, (size_t)(m->n_tensors + 1) * sizeof(*grown));
    if (!grown) {
      free(copy);
      return fr_error_set(err, FR_ERR_NOMEM, "model tensor %s: out of memory", path);
    }
    m->tensors = grown;
    t = &m->tensors[m->n_tensors++];
    memset(t, 0, sizeof(*t));
    snprintf(t->path, sizeof(t->path), "%s", path);
  }
  free(t->data);
  t->data = copy;
  t->rank = rank;
  for (int i = 0; i < 4; i++)
    t->dims[i] = i < rank ? dims[i] : 0;
  return FR_OK;
}

const char *fr_layer_kind_name(fr_layer_kind kind)
{
  switch (kind) {
  case FR_LAYER_CONV: return "conv";
  case FR_LAYER_DEPTHWISE: return "depthwise";
  }
  return "?";
}

const char *fr_activation_name(fr_activation act)
{
  switch (act) {
  case FR_ACT_NONE: return "none";
  case FR_ACT_PRELU: return "prelu";
  case FR_ACT_RELU: return "relu";
  }
  return "?";
}

int fr_layer_kind_parse(const char *s)
{
  if (strcmp(s, "conv") == 0)
    return FR_LAYER_CONV;
  if (strcmp(s, "depthwise") == 0)
    return FR_LAYER_DEPTHWISE;
  return -1;
}

int fr_activation_parse(const char *s)
{
  if (strcmp(s, "none") == 0)
    return FR_ACT_NONE;
  if (strcmp(s, "prelu") == 0)
    return FR_ACT_PRELU;
  if (strcmp(s, "relu") == 0)
    return FR_ACT_RELU;
  return -1;
}

int fr_model_find_layer(const fr_model *m, const char *name)
{
  for (int i = 0; i < m->n_layers; i++)
    if (strcmp(m->layers[i].name, name) == 0)
      return i;
  return -1;
}

static bool is_terminated(const char *s, size_t cap)
{
  return memchr(s, '\0', cap) != NULL;
}

static bool all_finite(const float *v, int64_t n)
{
  for (int64_t i = 0; i < n; i++)
    if (!isfinite(v[i]))
      return false;
  return true;
}

/* Shape of the tensor a layer reads: the model input or an earlier layer's output. */
static void source_shape(const fr_model *m, int src, int *h, int *w, int *c)
{
  if (src == FR_LAYER_INPUT) {
    *h = m->input_h, *w = m->input_w, *c = m->input_c;
  } else {
    const fr_layer *p = &m->layers[src];
    *h = p->out_h, *w = p->out_w, *c = p->out_c;
  }
}

static int validate_layer(const fr_model *m, int i, int64_t *params, fr_error *err)
{
  const fr_layer *l = &m->layers[i];
#define BAD(...) fr_error_set(err, FR_ERR_FORMAT, "layer %d (%s): " __VA_ARGS__)
  if (!is_terminated(l->name, sizeof(l->name)))
    return fr_error_set(err, FR_ERR_FORMAT, "layer %d: name is not terminated", i);
  if (l->kind != FR_LAYER_CONV && l->kind != FR_LAYER_DEPTHWISE)
    return BAD("unknown kind %d", i, l->name, (int)l->kind);
  if (l->input != FR_LAYER_INPUT && (l->input < 0 || l->input >= i))
    return BAD("input %d is not the network input or an earlier layer", i, l->name, l->input);
  if (l->residual != FR_NO_LAYER && l->residual != FR_LAYER_INPUT &&
      (l->residual < 0 || l->residual >= i))
    return BAD("residual %d is not the input, none, or an earlier layer", i, l->name, l->residual);
  int dims[] = {l->in_h, l->in_w, l->out_h, l->out_w};
  for (int d = 0; d < 4; d++)
    if (dims[d] < 1 || dims[d] > FR_MODEL_MAX_DIM)
      return BAD("spatial size %d outside [1, %d]", i, l->name, dims[d], FR_MODEL_MAX_DIM);
  if (l->in_c < 1 || l->in_c > FR_MODEL_MAX_CHANNELS || l->out_c < 1 || l->out_c > FR_MODEL_MAX_CHANNELS)
    return BAD("channels %d -> %d outside [1, %d]", i, l->name, l->in_c, l->out_c, FR_MODEL_MAX_CHANNELS);
  if (l->kernel_h < 1 || l->kernel_h > FR_MODEL_MAX_KERNEL || l->kernel_w < 1 || l->kernel_w > FR_MODEL_MAX_KERNEL)
    return BAD("kernel %dx%d outside [1, %d]", i, l->name, l->kernel_h, l->kernel_w, FR_MODEL_MAX_KERNEL);
  if (l->stride_h < 1 || l->stride_h > FR_MODEL_MAX_KERNEL || l->stride_w < 1 || l->stride_w > FR_MODEL_MAX_KERNEL)
    return BAD("stride %dx%d outside [1, %d]", i, l->name, l->stride_h, l->stride_w, FR_MODEL_MAX_KERNEL);
  int pads[] = {l->pad_top, l->pad_left, l->pad_bottom, l->pad_right};
  int kdim[] = {l->kernel_h, l->kernel_w, l->kernel_h, l->kernel_w};
  for (int d = 0; d < 4; d++)
    if (pads[d] < 0 || pads[d] >= kdim[d])
      return BAD("padding %d outside [0, kernel)", i, l->name, pads[d]);
  int sh, sw, sc;
  source_shape(m, l->input, &sh, &sw, &sc);
  if (sh != l->in_h || sw != l->in_w || sc != l->in_c)
    return BAD("input shape %dx%dx%d but its source produces %dx%dx%d", i, l->name, l->in_h, l->in_w,
               l->in_c, sh, sw, sc);
  int64_t eh = (int64_t)l->in_h + l->pad_top + l->pad_bottom - l->kernel_h;
  int64_t ew = (int64_t)l->in_w + l->pad_left + l->pad_right - l->kernel_w;
  if (eh < 0 || ew < 0 || eh / l->stride_h + 1 != l->out_h || ew / l->stride_w + 1 != l->out_w)
    return BAD("output %dx%d does not follow from input, kernel, stride and padding", i, l->name, l->out_h,
               l->out_w);
  if (l->kind == FR_LAYER_DEPTHWISE && l->in_c != l->out_c)
    return BAD("depthwise with %d input and %d output channels", i, l->name, l->in_c, l->out_c);
  if ((int64_t)l->out_h * l->out_w * l->out_c > FR_MODEL_MAX_LAYER_ACTIVATION)
    return BAD("output of %dx%dx%d floats is too large", i, l->name, l->out_h, l->out_w, l->out_c);
  if (l->residual != FR_NO_LAYER) {
    source_shape(m, l->residual, &sh, &sw, &sc);
    if (sh != l->out_h || sw != l->out_w || sc != l->out_c)
      return BAD("residual source shape %dx%dx%d differs from the output", i, l->name, sh, sw, sc);
  }
  if (l->activation != FR_ACT_NONE && l->activation != FR_ACT_PRELU && l->activation != FR_ACT_RELU)
    return BAD("unknown activation %d", i, l->name, (int)l->activation);
  if (!l->weights || !l->bias)
    return BAD("missing weights or bias", i, l->name);
  if ((l->activation == FR_ACT_PRELU) != (l->slope != NULL))
    return BAD("slope must be present exactly when the activation is prelu", i, l->name);
  int64_t nw = fr_layer_weight_count(l);
  *params += nw + l->out_c * (l->slope ? 2 : 1);
  if (*params > FR_MODEL_MAX_PARAMS)
    return BAD("the model exceeds %lld parameters", i, l->name, (long long)FR_MODEL_MAX_PARAMS);
  if (!all_finite(l->weights, nw) || !all_finite(l->bias, l->out_c) ||
      (l->slope && !all_finite(l->slope, l->out_c)))
    return BAD("weights, bias or slope contain NaN or infinity", i, l->name);
#undef BAD
  return FR_OK;
}

int fr_model_validate(const fr_model *m, fr_error *err)
{
  if (!m)
    return fr_error_set(err, FR_ERR_INVALID, "model: NULL");
  if (!is_terminated(m->architecture, sizeof(m->architecture)) || !m->architecture[0])
    return fr_error_set(err, FR_ERR_FORMAT, "model: architecture name is empty or not terminated");
  if (!is_terminated(m->channel_order, sizeof(m->channel_order)) ||
      strlen(m->channel_order) != (size_t)m->input_c)
    return fr_error_set(err, FR_ERR_FORMAT, "model: channel order '%.8s' does not have %d letters",
                        m->channel_order, m->input_c);
  if (!is_terminated(m->source_name, sizeof(m->source_name)) ||
      !is_terminated(m->source_sha256, sizeof(m->source_sha256)) ||
      !is_terminated(m->weights_sha256, sizeof(m->weights_sha256)) ||
      !is_terminated(m->file_sha256, sizeof(m->file_sha256)))
    return fr_error_set(err, FR_ERR_FORMAT, "model: a provenance string is not terminated");
  if (m->input_h < 1 || m->input_h > FR_MODEL_MAX_DIM || m->input_w < 1 || m->input_w > FR_MODEL_MAX_DIM)
    return fr_error_set(err, FR_ERR_FORMAT, "model: input size %dx%d outside [1, %d]", m->input_h,
                        m->input_w, FR_MODEL_MAX_DIM);
  if (m->input_c < 1 || m->input_c > 3)
    return fr_error_set(err, FR_ERR_FORMAT, "model: %d input channels (1 to 3 supported)", m->input_c);
  for (int c = 0; c < m->input_c; c++)
    if (!isfinite(m->mean[c]) || !isfinite(m->std[c]) || !(m->std[c] > 0))
      return fr_error_set(err, FR_ERR_FORMAT, "model: normalisation of channel %d (mean %g, std %g) invalid",
                          c, m->mean[c], m->std[c]);
  if (m->n_layers < 1 || m->n_layers > FR_MODEL_MAX_LAYERS || !m->layers)
    return fr_error_set(err, FR_ERR_FORMAT, "model: %d layers (1 to %d supported)", m->n_layers,
                        FR_MODEL_MAX_LAYERS);
  int64_t params = 0;
  for (int i = 0; i < m->n_layers; i++) {
    int rc = validate_layer(m, i, &params, err);
    if (rc)
      return rc;
  }
  if (m->output_layer < 0 || m->output_layer >= m->n_layers)
    return fr_error_set(err, FR_ERR_FORMAT, "model: output layer %d out of range", m->output_layer);
  const fr_layer *o = &m->layers[m->output_layer];
  if ((int64_t)o->out_h * o->out_w * o->out_c != m->embedding_size)
    return fr_error_set(err, FR_ERR_FORMAT, "model: embedding size %d but output layer %d produces %dx%dx%d",
                        m->embedding_size, m->output_layer, o->out_h, o->out_w, o->out_c);
  return FR_OK;
}

/* Feeds floats as little-endian bytes, so the digest is the same on any host. */
static int digest_floats(EVP_MD_CTX *ctx, const float *v, int64_t n)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  for (int64_t i = 0; i < n; i++) {
    uint32_t u;
    memcpy(&u, &v[i], 4);
    u = __builtin_bswap32(u);
    if (EVP_DigestUpdate(ctx, &u, 4) != 1)
      return -1;
  }
  return 0;
#else
  return EVP_DigestUpdate(ctx, v, (size_t)n * sizeof(float)) == 1 ? 0 : -1;
#endif
}

int fr_model_weights_sha256(const fr_model *m, char out[65], fr_error *err)
{
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  if (!ctx)
    return fr_error_set(err, FR_ERR_NOMEM, "weights SHA-256: cannot allocate a digest context");
  int ok = EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1;
  for (int i = 0; ok && i < m->n_layers; i++) {
    const fr_layer *l = &m->layers[i];
    ok = digest_floats(ctx, l->weights, fr_layer_weight_count(l)) == 0 &&
         digest_floats(ctx, l->bias, l->out_c) == 0 &&
         (!l->slope || digest_floats(ctx, l->slope, l->out_c) == 0);
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  ok = ok && EVP_DigestFinal_ex(ctx, md, &len) == 1 && len == 32;
  EVP_MD_CTX_free(ctx);
  if (!ok)
    return fr_error_set(err, FR_ERR_INTERNAL, "weights SHA-256: OpenSSL digest failed");
  for (unsigned i = 0; i < 32; i++)
    snprintf(out + 2 * i, 3, "%02x", md[i]);
  return FR_OK;
}

const char *fr_model_default_path(void)
{
  static char path[4096];
  const char *env = getenv("FACERI_MODEL");
  if (env && *env)
    return env;
  if (access("models/mobilefacenet.h5", R_OK) == 0)
    return "models/mobilefacenet.h5";
  /* The source checkout, found from this file's own path (CMake compiles with
   * absolute paths), so commands work from a build directory too. */
  const char *self = __FILE__;
  const char *tail = strstr(self, "worker/nn/model.c");
  if (tail && self[0] == '/') {
    snprintf(path, sizeof(path), "%.*smodels/mobilefacenet.h5", (int)(tail - self), self);
    return path;
  }
  return "models/mobilefacenet.h5";
}
