/* TFLite flatbuffer -> fr_model.
 *
 * The graph is walked once in operator order (TFLite stores operators
 * topologically sorted) while every tensor carries a tag saying what it is in
 * terms of the fused layers built so far: a layer's output, or a piece of the
 * spelled-out PReLU relu(x) + m*(x - |x|) on a layer's output. A pattern is
 * fused only when its intermediate tensors have no other consumer, so fusing
 * can never change what another operator reads. Anything the walk cannot
 * express as fused conv layers is refused with FR_ERR_UNSUPPORTED naming the
 * operator; anything structurally broken is FR_ERR_FORMAT. */
#include <ctype.h>
#include <errno.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "faceri/model.h"
#include "tflite_reader.h"

#define MAX_RANK 8

enum { OP_ADD = 0, OP_CONV_2D = 3, OP_DEPTHWISE_CONV_2D = 4, OP_MUL = 18, OP_RELU = 19, OP_RESHAPE = 22,
       OP_SUB = 41, OP_ABS = 101 };
enum { OPT_CONV2D = 1, OPT_DEPTHWISE = 2 };
enum { TFL_FLOAT32 = 0 };

typedef struct tensor_info {
  int32_t shape[MAX_RANK];
  int rank;
  uint8_t type;
  char name[160];
  const uint8_t *data; /* constant contents, NULL for activations */
  size_t data_size;
} tensor_info;

typedef struct op_info {
  int code;
  fb_vector inputs, outputs;
  fb_table options;
  bool has_options;
  uint8_t options_type;
} op_info;

/* What a tensor is, in terms of the layers fused so far. */
typedef enum tag_kind { TAG_NONE = 0, TAG_LAYER, TAG_RELU, TAG_ABS, TAG_NEGPART, TAG_SCALED } tag_kind;
typedef struct tag {
  tag_kind kind;
  int layer; /* layer index or FR_LAYER_INPUT */
  int src;   /* for PReLU pieces: the layer output tensor they derive from */
  int konst; /* TAG_SCALED: the constant m */
} tag;

typedef struct importer {
  const char *name;
  fb_buf buf;
  fr_error *err;
  int n_tensors, n_ops, n_codes;
  tensor_info *tensors;
  op_info *ops;
  int *codes;
  int *consumers; /* reads of each tensor by operators and graph outputs */
  tag *tags;
  fr_layer *layers;
  int *layer_tensor; /* current output tensor of each layer */
  int n_layers;
  int input_tensor, output_tensor;
  int in_h, in_w, in_c;
} importer;

static const char *op_name(int code)
{
  switch (code) {
  case OP_ADD: return "ADD";
  case 1: return "AVERAGE_POOL_2D";
  case 2: return "CONCATENATION";
  case OP_CONV_2D: return "CONV_2D";
  case OP_DEPTHWISE_CONV_2D: return "DEPTHWISE_CONV_2D";
  case 6: return "DEQUANTIZE";
  case 9: return "FULLY_CONNECTED";
  case 11: return "L2_NORMALIZATION";
  case 14: return "LOGISTIC";
  case 17: return "MAX_POOL_2D";
  case OP_MUL: return "MUL";
  case OP_RELU: return "RELU";
  case 21: return "RELU6";
  case OP_RESHAPE: return "RESHAPE";
  case 25: return "SOFTMAX";
  case 28: return "TANH";
  case 32: return "CUSTOM";
  case 34: return "PAD";
  case 39: return "TRANSPOSE";
  case 40: return "MEAN";
  case OP_SUB: return "SUB";
  case 42: return "DIV";
  case 54: return "PRELU";
  case 98: return "LEAKY_RELU";
  case OP_ABS: return "ABS";
  }
  return "builtin op";
}

#define FORMAT(imp, ...) fr_error_set((imp)->err, FR_ERR_FORMAT, __VA_ARGS__)

static int bad(importer *imp, const char *what)
{
  return FORMAT(imp, "%s: corrupt TFLite file: %s lies outside the file or is malformed", imp->name, what);
}

static int unsupported_op(importer *imp, int o, const char *why)
{
  return fr_error_set(imp->err, FR_ERR_UNSUPPORTED, "%s: operator %d (%s, code %d): %s", imp->name, o,
                      op_name(imp->ops[o].code), imp->ops[o].code, why);
}

/* ---- reading the flatbuffer into plain arrays ---- */

static int read_tensor(importer *imp, const fb_table *t, const fb_vector *buffers, int i)
{
  tensor_info *ti = &imp->tensors[i];
  fb_vector shape;
  bool present;
  uint32_t buffer;
  if (!fb_vector_field(t, 0, 4, &shape, &present) || !fb_u8(t, 1, 0, &ti->type) || !fb_u32(t, 2, 0, &buffer))
    return bad(imp, "a tensor");
  if (present) {
    if (shape.len > MAX_RANK)
      return fr_error_set(imp->err, FR_ERR_UNSUPPORTED, "%s: tensor %d has rank %u (at most %d supported)",
                          imp->name, i, shape.len, MAX_RANK);
    ti->rank = (int)shape.len;
    for (uint32_t d = 0; d < shape.len; d++)
      if (!fb_vector_i32(&shape, d, &ti->shape[d]) || ti->shape[d] < 0)
        return FORMAT(imp, "%s: tensor %d has a bad shape", imp->name, i);
  }
  const char *s;
  uint32_t len;
  if (!fb_string_field(t, 3, &s, &len, &present))
    return bad(imp, "a tensor name");
  if (present)
    snprintf(ti->name, sizeof(ti->name), "%.*s", (int)(len < sizeof(ti->name) ? len : sizeof(ti->name) - 1), s);
  for (char *p = ti->name; *p; p++)
    if (!isprint((unsigned char)*p))
      *p = '?'; /* names end up in messages and HDF5 attributes */
  if (buffer >= buffers->len)
    return FORMAT(imp, "%s: tensor %d refers to buffer %u of %u", imp->name, i, buffer, buffers->len);
  fb_table b;
  fb_vector data;
  uint64_t off, size;
  if (!fb_vector_table(buffers, buffer, &b) || !fb_vector_field(&b, 0, 1, &data, &present) ||
      !fb_u64(&b, 1, 0, &off) || !fb_u64(&b, 2, 0, &size))
    return bad(imp, "a buffer");
  if (present && data.len > 0) {
    ti->data = imp->buf.data + data.pos;
    ti->data_size = data.len;
  } else if (off > 1) { /* large-model layout: data after the flatbuffer, offset from file start */
    if (off > imp->buf.size || size > imp->buf.size - off)
      return bad(imp, "an external buffer");
    ti->data = imp->buf.data + off;
    ti->data_size = (size_t)size;
  }
  return FR_OK;
}

static int read_graph(importer *imp)
{
  if (imp->buf.size < 8 || memcmp(imp->buf.data + 4, "TFL3", 4) != 0)
    return FORMAT(imp, "%s: not a TFLite model (no TFL3 identifier in the first 8 bytes)", imp->name);
  fb_table root, sg;
  fb_vector codes, subgraphs, buffers, tensors, ops, gin, gout;
  bool p1, p2, p3;
  uint32_t version;
  if (!fb_root(&imp->buf, &root) || !fb_u32(&root, 0, 0, &version))
    return bad(imp, "the root table");
  if (version != 3)
    return fr_error_set(imp->err, FR_ERR_UNSUPPORTED, "%s: TFLite schema version %u (3 supported)", imp->name,
                        version);
  if (!fb_vector_field(&root, 1, 4, &codes, &p1) || !fb_vector_field(&root, 2, 4, &subgraphs, &p2) ||
      !fb_vector_field(&root, 4, 4, &buffers, &p3))
    return bad(imp, "the model table");
  if (!p1 || !p2 || !p3)
    return FORMAT(imp, "%s: TFLite model lacks operator codes, subgraphs or buffers", imp->name);
  if (subgraphs.len != 1)
    return fr_error_set(imp->err, FR_ERR_UNSUPPORTED, "%s: %u subgraphs (exactly 1 supported)", imp->name,
                        subgraphs.len);
  imp->n_codes = (int)codes.len;
  imp->codes = calloc(codes.len + 1, sizeof(int));
  if (!imp->codes)
    return fr_error_set(imp->err, FR_ERR_NOMEM, "%s: out of memory", imp->name);
  for (uint32_t i = 0; i < codes.len; i++) {
    fb_table oc;
    uint8_t dep;
    int32_t code;
    /* builtin_code (field 3) replaced the byte-wide deprecated one (field 0);
     * old writers fill only the first, new ones both. */
    if (!fb_vector_table(&codes, i, &oc) || !fb_u8(&oc, 0, 0, &dep) || !fb_i32(&oc, 3, 0, &code))
      return bad(imp, "an operator code");
    imp->codes[i] = code > (int8_t)dep ? code : (int8_t)dep;
  }
  if (!fb_vector_table(&subgraphs, 0, &sg) || !fb_vector_field(&sg, 0, 4, &tensors, &p1) ||
      !fb_vector_field(&sg, 1, 4, &gin, &p2) || !fb_vector_field(&sg, 2, 4, &gout, &p3) || !p1 || !p2 || !p3)
    return bad(imp, "the subgraph");
  bool p4;
  if (!fb_vector_field(&sg, 3, 4, &ops, &p4) || !p4)
    return bad(imp, "the operator list");
  /* Element counts are bounded by the file size (4 bytes each), so these allocations are too. */
  imp->n_tensors = (int)tensors.len;
  imp->n_ops = (int)ops.len;
  imp->tensors = calloc(tensors.len + 1, sizeof(*imp->tensors));
  imp->consumers = calloc(tensors.len + 1, sizeof(int));
  imp->tags = calloc(tensors.len + 1, sizeof(tag));
  imp->ops = calloc(ops.len + 1, sizeof(*imp->ops));
  if (!imp->tensors || !imp->consumers || !imp->tags || !imp->ops)
    return fr_error_set(imp->err, FR_ERR_NOMEM, "%s: out of memory for %u tensors", imp->name, tensors.len);
  for (uint32_t i = 0; i < tensors.len; i++) {
    fb_table t;
    if (!fb_vector_table(&tensors, i, &t))
      return bad(imp, "a tensor");
    int rc = read_tensor(imp, &t, &buffers, (int)i);
    if (rc)
      return rc;
  }
  for (uint32_t i = 0; i < ops.len; i++) {
    fb_table t;
    op_info *op = &imp->ops[i];
    uint32_t opcode;
    if (!fb_vector_table(&ops, i, &t) || !fb_u32(&t, 0, 0, &opcode) ||
        !fb_vector_field(&t, 1, 4, &op->inputs, &p1) || !fb_vector_field(&t, 2, 4, &op->outputs, &p2) ||
        !fb_u8(&t, 3, 0, &op->options_type) || !fb_table_field(&t, 4, &op->options, &op->has_options))
      return bad(imp, "an operator");
    if (opcode >= codes.len || !p1 || !p2)
      return FORMAT(imp, "%s: operator %u has a bad opcode index or no inputs/outputs", imp->name, i);
    op->code = imp->codes[opcode];
    for (uint32_t k = 0; k < op->inputs.len; k++) {
      int32_t ti;
      if (!fb_vector_i32(&op->inputs, k, &ti) || ti < -1 || ti >= imp->n_tensors)
        return FORMAT(imp, "%s: operator %u input %u is not a tensor index", imp->name, i, k);
      if (ti >= 0)
        imp->consumers[ti]++;
    }
  }
  int32_t in, out;
  if (gin.len != 1 || gout.len != 1)
    return fr_error_set(imp->err, FR_ERR_UNSUPPORTED, "%s: %u inputs and %u outputs (1 and 1 supported)",
                        imp->name, gin.len, gout.len);
  if (!fb_vector_i32(&gin, 0, &in) || !fb_vector_i32(&gout, 0, &out) || in < 0 || in >= imp->n_tensors ||
      out < 0 || out >= imp->n_tensors)
    return FORMAT(imp, "%s: graph input or output is not a tensor index", imp->name);
  imp->input_tensor = in;
  imp->output_tensor = out;
  imp->consumers[out]++;
  return FR_OK;
}

/* ---- helpers for the walk ---- */

static int tensor_arg(importer *imp, int o, uint32_t k, int *t)
{
  int32_t v = -1;
  if (k >= imp->ops[o].inputs.len || !fb_vector_i32(&imp->ops[o].inputs, k, &v) || v < 0)
    return unsupported_op(imp, o, "missing input tensor");
  *t = v;
  return FR_OK;
}

/* An activation tensor of shape [batch, h, w, c], float32, with no constant data. */
static int check_activation(importer *imp, int o, int t, int h, int w, int c)
{
  const tensor_info *ti = &imp->tensors[t];
  if (ti->type != TFL_FLOAT32 || ti->data)
    return unsupported_op(imp, o, "activation tensor is not float32 or is constant");
  if (ti->rank != 4 || ti->shape[0] < 1 || ti->shape[1] != h || ti->shape[2] != w || ti->shape[3] != c) {
    char why[256];
    snprintf(why, sizeof(why), "tensor '%s' does not have the expected shape [N,%d,%d,%d]", ti->name, h, w, c);
    return unsupported_op(imp, o, why);
  }
  return FR_OK;
}

static int64_t element_count(const tensor_info *ti)
{
  /* Saturates: eight dims below 2^31 could overflow int64; callers bound the result anyway. */
  int64_t n = 1;
  for (int d = 0; d < ti->rank; d++) {
    n *= ti->shape[d];
    if (n > ((int64_t)1 << 40))
      return (int64_t)1 << 40;
  }
  return n;
}

/* Copies a float32 constant; count is what the shape says and must match the buffer. */
static int copy_constant(importer *imp, int o, int t, int64_t count, float **out)
{
  const tensor_info *ti = &imp->tensors[t];
  if (ti->type != TFL_FLOAT32 || !ti->data)
    return unsupported_op(imp, o, "weight tensor is not a float32 constant");
  if (count < 1 || count > FR_MODEL_MAX_PARAMS || (uint64_t)count * 4 != ti->data_size)
    return FORMAT(imp, "%s: tensor '%s' holds %zu bytes but its shape needs %lld floats", imp->name, ti->name,
                  ti->data_size, (long long)count);
  float *v = malloc((size_t)count * sizeof(float));
  if (!v)
    return fr_error_set(imp->err, FR_ERR_NOMEM, "%s: out of memory for tensor '%s'", imp->name, ti->name);
  for (int64_t i = 0; i < count; i++) {
    const uint8_t *p = ti->data + 4 * i;
    uint32_t u = (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
    memcpy(&v[i], &u, 4);
  }
  *out = v;
  return FR_OK;
}

/* The layer whose current output tensor t is (FR_LAYER_INPUT for the graph input). */
static int layer_of(importer *imp, int o, int t, int *layer)
{
  const tag *g = &imp->tags[t];
  if (g->kind != TAG_LAYER)
    return unsupported_op(imp, o, "reads a tensor that is not a conv output or the graph input "
                                  "(an unfinished activation pattern?)");
  if (g->layer >= 0 && imp->layer_tensor[g->layer] != t)
    return unsupported_op(imp, o, "reads a conv output from before its fused activation");
  *layer = g->layer;
  return FR_OK;
}

static void layer_shape(importer *imp, int layer, int *h, int *w, int *c)
{
  if (layer == FR_LAYER_INPUT) {
    *h = imp->in_h, *w = imp->in_w, *c = imp->in_c;
  } else {
    *h = imp->layers[layer].out_h, *w = imp->layers[layer].out_w, *c = imp->layers[layer].out_c;
  }
}

static int output_of(importer *imp, int o, int *t)
{
  int32_t v;
  if (imp->ops[o].outputs.len != 1 || !fb_vector_i32(&imp->ops[o].outputs, 0, &v) || v < 0 ||
      v >= imp->n_tensors)
    return unsupported_op(imp, o, "must have exactly one output tensor");
  if (imp->tags[v].kind != TAG_NONE || v == imp->input_tensor)
    return FORMAT(imp, "%s: operator %d writes tensor %d, which already has a producer", imp->name, o, (int)v);
  if (imp->consumers[v] == 0)
    return unsupported_op(imp, o, "its output is never used");
  *t = v;
  return FR_OK;
}

/* Marks layer l's output as tensor t (after a fusion) and names the layer after it. */
static void set_layer_output(importer *imp, int l, int t)
{
  imp->layer_tensor[l] = t;
  imp->tags[t] = (tag){.kind = TAG_LAYER, .layer = l};
  snprintf(imp->layers[l].name, sizeof(imp->layers[l].name), "%s", imp->tensors[t].name);
}

/* Fused activation of an elementwise op's options (field 0 for ADD/SUB/MUL). */
static int require_no_fused_activation(importer *imp, int o)
{
  uint8_t act = 0;
  if (imp->ops[o].has_options && !fb_u8(&imp->ops[o].options, 0, 0, &act))
    return bad(imp, "operator options");
  return act == 0 ? FR_OK : unsupported_op(imp, o, "fused activation on an elementwise op");
}

/* ---- operators ---- */

/* TensorFlow SAME/VALID: explicit pads and output size for one dimension. */
static int pad_dim(int padding, int in, int k, int stride, int *out, int *before, int *after)
{
  if (padding == 0) { /* SAME */
    *out = (in + stride - 1) / stride;
    int total = (*out - 1) * stride + k - in;
    if (total < 0)
      total = 0;
    *before = total / 2;
    *after = total - total / 2;
  } else if (padding == 1) { /* VALID */
    if (in < k)
      return -1;
    *out = (in - k) / stride + 1;
    *before = *after = 0;
  } else {
    return -1;
  }
  return 0;
}

static int do_conv(importer *imp, int o, bool depthwise)
{
  op_info *op = &imp->ops[o];
  int rc, x, w, out, src;
  if ((rc = tensor_arg(imp, o, 0, &x)) || (rc = tensor_arg(imp, o, 1, &w)) || (rc = layer_of(imp, o, x, &src)))
    return rc;
  if (imp->n_layers >= FR_MODEL_MAX_LAYERS)
    return unsupported_op(imp, o, "too many layers");
  if (!op->has_options || op->options_type != (depthwise ? OPT_DEPTHWISE : OPT_CONV2D))
    return unsupported_op(imp, o, "missing or mismatched options");
  uint8_t padding, act;
  int32_t sw, sh, mult = 1, dw, dh;
  const fb_table *t = &op->options;
  int f = depthwise ? 1 : 0; /* depthwise options have depth_multiplier at field 3 */
  if (!fb_u8(t, 0, 0, &padding) || !fb_i32(t, 1, 0, &sw) || !fb_i32(t, 2, 0, &sh) ||
      (depthwise && !fb_i32(t, 3, 1, &mult)) || !fb_u8(t, 3 + f, 0, &act) || !fb_i32(t, 4 + f, 1, &dw) ||
      !fb_i32(t, 5 + f, 1, &dh))
    return bad(imp, "convolution options");
  if (dw != 1 || dh != 1)
    return unsupported_op(imp, o, "dilation other than 1");
  if (act != 0 && act != 1)
    return unsupported_op(imp, o, "fused activation other than NONE or RELU");
  if (sw < 1 || sh < 1 || sw > FR_MODEL_MAX_KERNEL || sh > FR_MODEL_MAX_KERNEL)
    return unsupported_op(imp, o, "stride outside [1, 64]");
  fr_layer *l = &imp->layers[imp->n_layers];
  memset(l, 0, sizeof(*l));
  layer_shape(imp, src, &l->in_h, &l->in_w, &l->in_c);
  const tensor_info *wt = &imp->tensors[w];
  if (wt->rank != 4 || wt->shape[1] < 1 || wt->shape[1] > FR_MODEL_MAX_KERNEL || wt->shape[2] < 1 ||
      wt->shape[2] > FR_MODEL_MAX_KERNEL)
    return unsupported_op(imp, o, "weights are not a 4-d tensor with a kernel of at most 64x64");
  if (depthwise) {
    if (mult != 1 || wt->shape[0] != 1 || wt->shape[3] != l->in_c)
      return unsupported_op(imp, o, "depthwise weights are not [1,kh,kw,channels] with multiplier 1");
    l->kind = FR_LAYER_DEPTHWISE;
    l->out_c = l->in_c;
  } else {
    if (wt->shape[3] != l->in_c || wt->shape[0] < 1 || wt->shape[0] > FR_MODEL_MAX_CHANNELS)
      return unsupported_op(imp, o, "weights are not [out_c,kh,kw,in_c] matching the input");
    l->kind = FR_LAYER_CONV;
    l->out_c = wt->shape[0];
  }
  l->kernel_h = wt->shape[1];
  l->kernel_w = wt->shape[2];
  l->stride_h = sh;
  l->stride_w = sw;
  if (pad_dim(padding, l->in_h, l->kernel_h, sh, &l->out_h, &l->pad_top, &l->pad_bottom) ||
      pad_dim(padding, l->in_w, l->kernel_w, sw, &l->out_w, &l->pad_left, &l->pad_right))
    return unsupported_op(imp, o, "unknown padding or kernel larger than the input");
  l->input = src;
  l->residual = FR_NO_LAYER;
  l->activation = act == 1 ? FR_ACT_RELU : FR_ACT_NONE;
  if ((rc = output_of(imp, o, &out)) || (rc = check_activation(imp, o, out, l->out_h, l->out_w, l->out_c)))
    return rc;
  if ((rc = copy_constant(imp, o, w, element_count(wt), &l->weights)))
    return rc;
  imp->n_layers++; /* from here on fr_model_free releases the arrays */
  int32_t b = -1;
  if (op->inputs.len >= 3 && !fb_vector_i32(&op->inputs, 2, &b))
    return bad(imp, "a bias index");
  if (b >= 0) {
    const tensor_info *bt = &imp->tensors[b];
    if (bt->rank != 1 || bt->shape[0] != l->out_c)
      return unsupported_op(imp, o, "bias is not [out_c]");
    if ((rc = copy_constant(imp, o, b, l->out_c, &l->bias)))
      return rc;
  } else if (!(l->bias = calloc((size_t)l->out_c, sizeof(float)))) {
    return fr_error_set(imp->err, FR_ERR_NOMEM, "%s: out of memory", imp->name);
  }
  set_layer_output(imp, imp->n_layers - 1, out);
  return FR_OK;
}

/* A layer that can still take a fused activation or residual: nothing fused yet. */
static bool is_open(importer *imp, int layer)
{
  return layer >= 0 && imp->layers[layer].activation == FR_ACT_NONE && imp->layers[layer].residual == FR_NO_LAYER;
}

static int do_relu_or_abs(importer *imp, int o, bool relu)
{
  int rc, x, l, out;
  if ((rc = tensor_arg(imp, o, 0, &x)) || (rc = layer_of(imp, o, x, &l)) || (rc = output_of(imp, o, &out)))
    return rc;
  if (!is_open(imp, l))
    return unsupported_op(imp, o, "does not follow a conv without activation or residual");
  int h, w, c;
  layer_shape(imp, l, &h, &w, &c);
  if ((rc = check_activation(imp, o, out, h, w, c)))
    return rc;
  if (relu && imp->consumers[x] == 1) { /* a plain ReLU: the conv output has no other reader */
    imp->layers[l].activation = FR_ACT_RELU;
    set_layer_output(imp, l, out);
    return FR_OK;
  }
  imp->tags[out] = (tag){.kind = relu ? TAG_RELU : TAG_ABS, .layer = l, .src = x};
  return FR_OK;
}

static int do_sub(importer *imp, int o)
{
  int rc, a, b, l, out;
  if ((rc = tensor_arg(imp, o, 0, &a)) || (rc = tensor_arg(imp, o, 1, &b)) || (rc = layer_of(imp, o, a, &l)) ||
      (rc = require_no_fused_activation(imp, o)) || (rc = output_of(imp, o, &out)))
    return rc;
  const tag *tb = &imp->tags[b];
  if (tb->kind != TAG_ABS || tb->src != a || imp->consumers[b] != 1)
    return unsupported_op(imp, o, "is not x - |x| of a conv output (the PReLU pattern)");
  imp->tags[out] = (tag){.kind = TAG_NEGPART, .layer = l, .src = a};
  return FR_OK;
}

static int do_mul(importer *imp, int o)
{
  int rc, a, b, out;
  if ((rc = tensor_arg(imp, o, 0, &a)) || (rc = tensor_arg(imp, o, 1, &b)) ||
      (rc = require_no_fused_activation(imp, o)) || (rc = output_of(imp, o, &out)))
    return rc;
  if (imp->tags[a].kind != TAG_NEGPART) { /* the constant may come first or second */
    int t = a;
    a = b;
    b = t;
  }
  const tag *ta = &imp->tags[a];
  if (ta->kind != TAG_NEGPART || imp->consumers[a] != 1)
    return unsupported_op(imp, o, "is not m * (x - |x|) (the PReLU pattern)");
  const tensor_info *m = &imp->tensors[b];
  const fr_layer *l = &imp->layers[ta->layer];
  /* per channel: [C] or [1,...,1,C], broadcast along the last (channel) axis */
  bool per_channel = m->rank >= 1 && m->shape[m->rank - 1] == l->out_c;
  for (int d = 0; d + 1 < m->rank; d++)
    per_channel = per_channel && m->shape[d] == 1;
  if (!per_channel || m->type != TFL_FLOAT32 || !m->data)
    return unsupported_op(imp, o, "PReLU constant is not a float32 per-channel vector");
  imp->tags[out] = (tag){.kind = TAG_SCALED, .layer = ta->layer, .src = ta->src, .konst = b};
  return FR_OK;
}

static int fuse_prelu(importer *imp, int o, int relu_t, int scaled_t, int out)
{
  const tag *r = &imp->tags[relu_t], *s = &imp->tags[scaled_t];
  int l = r->layer;
  /* relu, abs and sub are the three readers of the conv output; nothing else sees it */
  if (s->layer != l || s->src != r->src || imp->consumers[r->src] != 3 || imp->consumers[relu_t] != 1 ||
      imp->consumers[scaled_t] != 1 || !is_open(imp, l))
    return unsupported_op(imp, o, "PReLU pattern whose pieces are shared with other operators");
  fr_layer *L = &imp->layers[l];
  float *m;
  int rc = copy_constant(imp, o, s->konst, L->out_c, &m);
  if (rc)
    return rc;
  for (int c = 0; c < L->out_c; c++)
    m[c] *= 2.0f; /* relu(x) + m(x - |x|) = 2m x for x < 0 */
  L->slope = m;
  L->activation = FR_ACT_PRELU;
  set_layer_output(imp, l, out);
  return FR_OK;
}

static int fuse_residual(importer *imp, int o, int a, int b, int out)
{
  int rc, la, lb;
  if ((rc = layer_of(imp, o, a, &la)) || (rc = layer_of(imp, o, b, &lb)))
    return rc;
  /* The later operand must be a linear conv read only by this ADD; the other is the skip. */
  int l = la > lb ? la : lb, skip = la > lb ? lb : la, lt = la > lb ? a : b;
  if (la == lb || !is_open(imp, l) || imp->consumers[lt] != 1)
    return unsupported_op(imp, o, "ADD is neither a PReLU nor a residual on a linear conv");
  int h, w, c, sh, sw, sc;
  layer_shape(imp, l, &h, &w, &c);
  layer_shape(imp, skip, &sh, &sw, &sc);
  if (h != sh || w != sw || c != sc || (rc = check_activation(imp, o, out, h, w, c)))
    return rc ? rc : unsupported_op(imp, o, "residual ADD of tensors with different shapes");
  imp->layers[l].residual = skip;
  set_layer_output(imp, l, out);
  return FR_OK;
}

static int do_add(importer *imp, int o)
{
  int rc, a, b, out;
  if ((rc = tensor_arg(imp, o, 0, &a)) || (rc = tensor_arg(imp, o, 1, &b)) ||
      (rc = require_no_fused_activation(imp, o)) || (rc = output_of(imp, o, &out)))
    return rc;
  if (imp->tags[a].kind == TAG_SCALED && imp->tags[b].kind == TAG_RELU)
    return fuse_prelu(imp, o, b, a, out);
  if (imp->tags[a].kind == TAG_RELU && imp->tags[b].kind == TAG_SCALED)
    return fuse_prelu(imp, o, a, b, out);
  return fuse_residual(imp, o, a, b, out);
}

static int do_reshape(importer *imp, int o)
{
  int rc, x, l, out;
  if ((rc = tensor_arg(imp, o, 0, &x)) || (rc = layer_of(imp, o, x, &l)) || (rc = output_of(imp, o, &out)))
    return rc;
  if (out != imp->output_tensor || l < 0 || imp->consumers[x] != 1)
    return unsupported_op(imp, o, "RESHAPE is only supported as the last operator, on a conv output");
  const tensor_info *ti = &imp->tensors[out];
  const fr_layer *L = &imp->layers[l];
  int64_t per_image = (int64_t)L->out_h * L->out_w * L->out_c;
  if (ti->rank < 1 || ti->shape[0] < 1 || element_count(ti) != per_image * ti->shape[0])
    return unsupported_op(imp, o, "RESHAPE changes the number of elements per image");
  /* Flattening NHWC data is a no-op on memory: the reshape output is the conv output. */
  imp->layer_tensor[l] = out;
  imp->tags[out] = (tag){.kind = TAG_LAYER, .layer = l};
  return FR_OK;
}

static int walk(importer *imp)
{
  const tensor_info *in = &imp->tensors[imp->input_tensor];
  if (in->type != TFL_FLOAT32 || in->rank != 4 || in->data)
    return fr_error_set(imp->err, FR_ERR_UNSUPPORTED, "%s: input '%s' is not a float32 NHWC tensor", imp->name,
                        in->name);
  imp->in_h = in->shape[1], imp->in_w = in->shape[2], imp->in_c = in->shape[3];
  if (imp->in_h < 1 || imp->in_h > FR_MODEL_MAX_DIM || imp->in_w < 1 || imp->in_w > FR_MODEL_MAX_DIM ||
      imp->in_c != 3)
    return fr_error_set(imp->err, FR_ERR_UNSUPPORTED, "%s: input shape %dx%dx%d (an RGB image expected)",
                        imp->name, imp->in_h, imp->in_w, imp->in_c);
  imp->tags[imp->input_tensor] = (tag){.kind = TAG_LAYER, .layer = FR_LAYER_INPUT};
  int cap = imp->n_ops < FR_MODEL_MAX_LAYERS ? imp->n_ops : FR_MODEL_MAX_LAYERS;
  imp->layers = calloc((size_t)cap + 1, sizeof(fr_layer));
  imp->layer_tensor = calloc((size_t)cap + 1, sizeof(int));
  if (!imp->layers || !imp->layer_tensor)
    return fr_error_set(imp->err, FR_ERR_NOMEM, "%s: out of memory", imp->name);
  for (int o = 0; o < imp->n_ops; o++) {
    int rc;
    switch (imp->ops[o].code) {
    case OP_CONV_2D: rc = do_conv(imp, o, false); break;
    case OP_DEPTHWISE_CONV_2D: rc = do_conv(imp, o, true); break;
    case OP_RELU: rc = do_relu_or_abs(imp, o, true); break;
    case OP_ABS: rc = do_relu_or_abs(imp, o, false); break;
    case OP_SUB: rc = do_sub(imp, o); break;
    case OP_MUL: rc = do_mul(imp, o); break;
    case OP_ADD: rc = do_add(imp, o); break;
    case OP_RESHAPE: rc = do_reshape(imp, o); break;
    default: rc = unsupported_op(imp, o, "operator not supported by the importer"); break;
    }
    if (rc)
      return rc;
  }
  const tag *g = &imp->tags[imp->output_tensor];
  if (g->kind != TAG_LAYER || g->layer < 0 || imp->layer_tensor[g->layer] != imp->output_tensor)
    return fr_error_set(imp->err, FR_ERR_UNSUPPORTED, "%s: graph output '%s' is not the output of a fused layer",
                        imp->name, imp->tensors[imp->output_tensor].name);
  return FR_OK;
}

/* "MobileFaceNet/..." -> "mobilefacenet": the first path component of the first layer's name. */
static void derive_architecture(const fr_model *m, char *out, size_t cap)
{
  size_t n = 0;
  for (const char *p = m->layers[0].name; *p && *p != '/' && n + 1 < cap; p++)
    if (isalnum((unsigned char)*p) || *p == '_' || *p == '-')
      out[n++] = (char)tolower((unsigned char)*p);
  out[n] = '\0';
  if (n == 0)
    snprintf(out, cap, "tflite-cnn");
}

static int sha256_hex(const uint8_t *data, size_t size, char out[65], fr_error *err, const char *name)
{
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data, size, md, &len, EVP_sha256(), NULL) != 1 || len != 32)
    return fr_error_set(err, FR_ERR_INTERNAL, "%s: OpenSSL SHA-256 failed", name);
  for (unsigned i = 0; i < 32; i++)
    snprintf(out + 2 * i, 3, "%02x", md[i]);
  return FR_OK;
}

int fr_model_import_tflite_buffer(const uint8_t *data, size_t size, const char *name, fr_model *out, fr_error *err)
{
  if (!out || (!data && size))
    return fr_error_set(err, FR_ERR_INVALID, "import TFLite: NULL argument");
  memset(out, 0, sizeof(*out));
  if (!name)
    name = "<buffer>";
  importer imp = {.name = name, .buf = {data, size}, .err = err};
  int rc = read_graph(&imp);
  if (!rc)
    rc = walk(&imp);
  fr_model m = {0};
  m.layers = imp.layers;
  m.n_layers = imp.n_layers;
  imp.layers = NULL;
  if (!rc) {
    derive_architecture(&m, m.architecture, sizeof(m.architecture));
    m.input_h = imp.in_h, m.input_w = imp.in_w, m.input_c = imp.in_c;
    snprintf(m.channel_order, sizeof(m.channel_order), "RGB");
    for (int c = 0; c < 3; c++) { /* the package's preprocessing: (p - 127.5) / 128 */
      m.mean[c] = 127.5f;
      m.std[c] = 128.0f;
    }
    m.output_layer = imp.tags[imp.output_tensor].layer;
    const fr_layer *o = &m.layers[m.output_layer];
    m.embedding_size = o->out_h * o->out_w * o->out_c;
    const char *base = strrchr(name, '/');
    snprintf(m.source_name, sizeof(m.source_name), "%s", base ? base + 1 : name);
    rc = sha256_hex(data, size, m.source_sha256, err, name);
  }
  if (!rc)
    rc = fr_model_weights_sha256(&m, m.weights_sha256, err);
  if (!rc && (rc = fr_model_validate(&m, err)))
    fr_error_prefix(err, "%s: imported model is inconsistent", name);
  free(imp.codes);
  free(imp.tensors);
  free(imp.consumers);
  free(imp.tags);
  free(imp.ops);
  free(imp.layer_tensor);
  if (rc) {
    fr_model_free(&m);
    return rc;
  }
  *out = m;
  return FR_OK;
}

int fr_model_import_tflite(const char *path, fr_model *out, fr_error *err)
{
  if (!path || !out)
    return fr_error_set(err, FR_ERR_INVALID, "import TFLite: NULL argument");
  FILE *f = fopen(path, "rb");
  if (!f)
    return fr_error_set(err, errno == ENOENT ? FR_ERR_NOT_FOUND : FR_ERR_IO, "%s: cannot open: %s", path,
                        strerror(errno));
  uint8_t *data = NULL;
  long size = -1;
  if (fseek(f, 0, SEEK_END) == 0)
    size = ftell(f);
  int rc = FR_OK;
  if (size < 0 || fseek(f, 0, SEEK_SET) != 0) {
    rc = fr_error_set(err, FR_ERR_IO, "%s: cannot determine the file size: %s", path, strerror(errno));
  } else if (size > (1L << 31)) {
    rc = fr_error_set(err, FR_ERR_UNSUPPORTED, "%s: %ld bytes is too large for a TFLite model", path, size);
  } else if (!(data = malloc((size_t)size + 1))) {
    rc = fr_error_set(err, FR_ERR_NOMEM, "%s: out of memory for %ld bytes", path, size);
  } else if (fread(data, 1, (size_t)size, f) != (size_t)size) {
    rc = fr_error_set(err, FR_ERR_IO, "%s: read failed", path);
  }
  fclose(f);
  if (!rc)
    rc = fr_model_import_tflite_buffer(data, (size_t)size, path, out, err);
  free(data);
  return rc;
}
