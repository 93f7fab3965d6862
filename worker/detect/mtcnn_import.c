/* TFLite flatbuffer -> fr_mtcnn_graph.
 *
 * The MTCNN graphs were converted from TensorFlow 1 with PReLU and softmax spelled
 * out in elementary ops. The walk tags every tensor with what it is in terms of the
 * nodes built so far (a node's output, or a piece of one of the two patterns), and
 * a pattern becomes a node only when its pieces have no reader outside it, so fusing
 * can never change what another operator sees. The reader is the bounds-checked one
 * of the MobileFaceNet importer; that importer stays single-output on purpose. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../nn/tflite_reader.h"
#include "faceri/mtcnn.h"

enum { OP_ADD = 0, OP_CONV_2D = 3, OP_FULLY_CONNECTED = 9, OP_MAX_POOL_2D = 17, OP_MUL = 18, OP_RELU = 19,
       OP_SUB = 41, OP_DIV = 42, OP_EXP = 47, OP_NEG = 59, OP_SUM = 74, OP_REDUCE_MAX = 82 };
enum { TFL_FLOAT32 = 0, TFL_INT32 = 2 };
#define MAX_RANK 6
#define MAX_NODES 64
#define MAX_PARAMS (16 << 20)

typedef struct tensor_info {
  int32_t shape[MAX_RANK];
  int rank;
  uint8_t type;
  char name[160];
  const uint8_t *data;
  size_t data_size;
} tensor_info;

/* What a tensor is. PReLU: RELU(x), NEG(x), RELU(NEG x), NEG(RELU(NEG x)) = min(x,0),
 * MUL(alpha, min(x,0)), then ADD(RELU(x), that). Softmax: MAX(x), SUB(x, MAX), EXP,
 * SUM(EXP), DIV(EXP, SUM). */
typedef enum tag_kind {
  T_NONE = 0, T_NODE, T_RELU, T_NEG, T_RELU_NEG, T_MIN0, T_SCALED, T_MAX, T_SHIFTED, T_EXP, T_SUM
} tag_kind;
typedef struct tag {
  tag_kind kind;
  int node;  /* node (or -1: graph input) the piece derives from */
  int konst; /* T_SCALED: the alpha tensor */
} tag;

typedef struct importer {
  const char *name;
  fb_buf buf;
  fr_error *err;
  int n_tensors;
  tensor_info *tensors;
  tag *tags;
  int *consumers;
  int raw[MAX_NODES]; /* each node's output tensor before a fused PReLU */
  fr_mtcnn_graph *g;
} importer;

static int bad(importer *im, const char *what)
{
  return fr_error_set(im->err, FR_ERR_FORMAT, "%s: corrupt TFLite file: %s lies outside the file or is malformed",
                      im->name, what);
}

static int unsupported(importer *im, int o, int code, const char *why)
{
  return fr_error_set(im->err, FR_ERR_UNSUPPORTED, "%s: operator %d (code %d): %s", im->name, o, code, why);
}

static int read_tensor(importer *im, const fb_table *t, const fb_vector *buffers, int i)
{
  tensor_info *ti = &im->tensors[i];
  fb_vector shape;
  bool present;
  uint32_t buffer;
  if (!fb_vector_field(t, 0, 4, &shape, &present) || !fb_u8(t, 1, 0, &ti->type) || !fb_u32(t, 2, 0, &buffer))
    return bad(im, "a tensor");
  if (present) {
    if (shape.len > MAX_RANK)
      return fr_error_set(im->err, FR_ERR_UNSUPPORTED, "%s: tensor %d has rank %u", im->name, i, shape.len);
    ti->rank = (int)shape.len;
    for (uint32_t d = 0; d < shape.len; d++)
      if (!fb_vector_i32(&shape, d, &ti->shape[d]) || ti->shape[d] < 0 || ti->shape[d] > (1 << 20))
        return fr_error_set(im->err, FR_ERR_FORMAT, "%s: tensor %d has a bad shape", im->name, i);
  }
  const char *s;
  uint32_t len;
  if (!fb_string_field(t, 3, &s, &len, &present))
    return bad(im, "a tensor name");
  if (present)
    snprintf(ti->name, sizeof(ti->name), "%.*s", (int)(len < sizeof(ti->name) ? len : sizeof(ti->name) - 1), s);
  for (char *p = ti->name; *p; p++)
    if (!isprint((unsigned char)*p))
      *p = '?';
  if (buffer >= buffers->len)
    return fr_error_set(im->err, FR_ERR_FORMAT, "%s: tensor %d refers to buffer %u of %u", im->name, i, buffer,
                        buffers->len);
  fb_table b;
  fb_vector data;
  if (!fb_vector_table(buffers, buffer, &b) || !fb_vector_field(&b, 0, 1, &data, &present))
    return bad(im, "a buffer");
  if (present && data.len > 0) {
    ti->data = im->buf.data + data.pos;
    ti->data_size = data.len;
  }
  return FR_OK;
}

static int64_t count_of(const tensor_info *ti)
{
  int64_t n = 1;
  for (int d = 0; d < ti->rank; d++)
    n *= ti->shape[d]; /* each dim <= 2^20, rank <= 6: checked below before any use */
  return n;
}

static int copy_floats(importer *im, int o, int t, int64_t count, float **out)
{
  const tensor_info *ti = &im->tensors[t];
  if (ti->type != TFL_FLOAT32 || !ti->data)
    return unsupported(im, o, -1, "a weight is not a float32 constant");
  if (count < 1 || count > MAX_PARAMS || (uint64_t)count * 4 != ti->data_size)
    return fr_error_set(im->err, FR_ERR_FORMAT, "%s: tensor '%s' holds %zu bytes, its use needs %lld floats",
                        im->name, ti->name, ti->data_size, (long long)count);
  float *v = malloc((size_t)count * sizeof(float));
  if (!v)
    return fr_error_set(im->err, FR_ERR_NOMEM, "%s: out of memory for '%s'", im->name, ti->name);
  for (int64_t i = 0; i < count; i++) {
    const uint8_t *p = ti->data + 4 * i;
    uint32_t u = (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
    memcpy(&v[i], &u, 4);
  }
  *out = v;
  return FR_OK;
}

/* The reduction axis of REDUCE_MAX / SUM must be the last one. */
static bool last_axis(importer *im, int t, int rank)
{
  const tensor_info *ti = &im->tensors[t];
  if (!ti->data || ti->data_size != 4 || ti->type != TFL_INT32)
    return false;
  int32_t a;
  memcpy(&a, ti->data, 4);
  return a == rank - 1 || a == -1;
}

static int new_node(importer *im, int o, fr_mtcnn_op op, int input, int out_tensor, fr_mtcnn_node **out)
{
  fr_mtcnn_graph *g = im->g;
  if (g->n_nodes >= MAX_NODES)
    return unsupported(im, o, -1, "more nodes than an MTCNN graph has");
  fr_mtcnn_node *n = &g->nodes[g->n_nodes];
  memset(n, 0, sizeof(*n));
  n->op = op;
  n->input = input;
  snprintf(n->name, sizeof(n->name), "%s", im->tensors[out_tensor].name);
  im->tags[out_tensor] = (tag){T_NODE, g->n_nodes, -1};
  im->raw[g->n_nodes] = out_tensor;
  g->n_nodes++;
  *out = n;
  return FR_OK;
}

static int node_channels(importer *im, int node)
{
  return node < 0 ? im->g->in_c : im->g->nodes[node].op == FR_MTCNN_CONV || im->g->nodes[node].op == FR_MTCNN_FC
                                      ? im->g->nodes[node].out_c
                                      : node_channels(im, im->g->nodes[node].input);
}

/* One operator; ins/outs are its tensor indices. */
static int walk_op(importer *im, int o, int code, const int32_t *in, int n_in, int out, const fb_table *opt,
                   bool has_opt)
{
  tag *T = im->tags;
  fr_mtcnn_node *n;
  int rc;
  if (n_in < 1 || in[0] < 0)
    return unsupported(im, o, code, "missing input");
  tag a = T[in[0]];
  tag b = n_in > 1 && in[1] >= 0 ? T[in[1]] : (tag){T_NONE, 0, -1};
  switch (code) {
  case OP_CONV_2D:
  case OP_FULLY_CONNECTED: {
    if (a.kind != T_NODE || n_in < 3 || in[1] < 0 || in[2] < 0)
      return unsupported(im, o, code, "input is not a node output, or weights/bias missing");
    const tensor_info *w = &im->tensors[in[1]];
    int32_t pad = 0, sw = 1, sh = 1, dw = 1, dh = 1;
    uint8_t act = 0, padding = 0;
    if (has_opt && code == OP_CONV_2D) {
      if (!fb_u8(opt, 0, 0, &padding) || !fb_i32(opt, 1, 1, &sw) || !fb_i32(opt, 2, 1, &sh) ||
          !fb_u8(opt, 3, 0, &act) || !fb_i32(opt, 4, 1, &dw) || !fb_i32(opt, 5, 1, &dh))
        return bad(im, "conv options");
    } else if (has_opt && !fb_u8(opt, 0, 0, &act)) {
      return bad(im, "fully connected options");
    }
    pad = padding;
    if (act != 0 || dw != 1 || dh != 1 || sw < 1 || sh < 1 || sw > 16 || sh > 16)
      return unsupported(im, o, code, "fused activation, dilation or stride not supported");
    int in_c = node_channels(im, a.node);
    if ((code == OP_CONV_2D && (w->rank != 4 || w->shape[3] != in_c)) || (code != OP_CONV_2D && w->rank != 2))
      return unsupported(im, o, code, "weights do not match the input");
    if ((rc = new_node(im, o, code == OP_CONV_2D ? FR_MTCNN_CONV : FR_MTCNN_FC, a.node, out, &n)))
      return rc;
    n->out_c = w->shape[0];
    n->in_c = code == OP_CONV_2D ? in_c : w->shape[1];
    n->kernel_h = code == OP_CONV_2D ? w->shape[1] : 1;
    n->kernel_w = code == OP_CONV_2D ? w->shape[2] : 1;
    n->stride_h = sh, n->stride_w = sw, n->same = pad == 0 && code == OP_CONV_2D;
    if (n->out_c < 1 || n->kernel_h < 1 || n->kernel_w < 1)
      return unsupported(im, o, code, "empty weights");
    if ((rc = copy_floats(im, o, in[1], count_of(w), &n->weights)))
      return rc;
    return copy_floats(im, o, in[2], n->out_c, &n->bias);
  }
  case OP_MAX_POOL_2D: {
    if (a.kind != T_NODE)
      return unsupported(im, o, code, "input is not a node output");
    uint8_t padding = 0, act = 0;
    int32_t sw = 1, sh = 1, fw = 1, fh = 1;
    if (!has_opt || !fb_u8(opt, 0, 0, &padding) || !fb_i32(opt, 1, 1, &sw) || !fb_i32(opt, 2, 1, &sh) ||
        !fb_i32(opt, 3, 1, &fw) || !fb_i32(opt, 4, 1, &fh) || !fb_u8(opt, 5, 0, &act))
      return bad(im, "pool options");
    if (act || sw < 1 || sh < 1 || fw < 1 || fh < 1 || sw > 16 || sh > 16 || fw > 16 || fh > 16)
      return unsupported(im, o, code, "pool window, stride or fused activation not supported");
    if ((rc = new_node(im, o, FR_MTCNN_MAXPOOL, a.node, out, &n)))
      return rc;
    n->kernel_h = fh, n->kernel_w = fw, n->stride_h = sh, n->stride_w = sw, n->same = padding == 0;
    return FR_OK;
  }
  case OP_RELU:
    if (a.kind == T_NODE)
      T[out] = (tag){T_RELU, a.node, -1};
    else if (a.kind == T_NEG)
      T[out] = (tag){T_RELU_NEG, a.node, -1};
    else
      return unsupported(im, o, code, "RELU outside a PReLU pattern");
    return FR_OK;
  case OP_NEG:
    if (a.kind == T_NODE)
      T[out] = (tag){T_NEG, a.node, -1};
    else if (a.kind == T_RELU_NEG)
      T[out] = (tag){T_MIN0, a.node, -1};
    else
      return unsupported(im, o, code, "NEG outside a PReLU pattern");
    return FR_OK;
  case OP_MUL: {
    /* alpha * min(x, 0), alpha a per-channel constant, in either order */
    int k = a.kind == T_MIN0 ? 1 : 0;
    tag piece = k ? a : b;
    int konst = n_in > 1 ? in[k] : -1;
    if (piece.kind != T_MIN0 || konst < 0 || !im->tensors[konst].data)
      return unsupported(im, o, code, "MUL outside a PReLU pattern");
    T[out] = (tag){T_SCALED, piece.node, konst};
    return FR_OK;
  }
  case OP_ADD: {
    tag r = a.kind == T_RELU ? a : b, s = a.kind == T_RELU ? b : a;
    if (r.kind != T_RELU || s.kind != T_SCALED || r.node != s.node || r.node < 0)
      return unsupported(im, o, code, "ADD outside a PReLU pattern");
    fr_mtcnn_node *x = &im->g->nodes[r.node];
    if ((x->op != FR_MTCNN_CONV && x->op != FR_MTCNN_FC) || x->activation != FR_ACT_NONE)
      return unsupported(im, o, code, "PReLU on something other than a conv or fully connected output");
    if ((rc = copy_floats(im, o, s.konst, x->out_c, &x->slope)))
      return rc;
    x->activation = FR_ACT_PRELU;
    T[out] = (tag){T_NODE, r.node, -1};
    return FR_OK;
  }
  case OP_REDUCE_MAX:
  case OP_SUM: {
    tag_kind want = code == OP_REDUCE_MAX ? T_NODE : T_EXP;
    if (a.kind != want || n_in < 2 || !last_axis(im, in[1], im->tensors[in[0]].rank))
      return unsupported(im, o, code, "reduction outside a softmax over the last axis");
    T[out] = (tag){code == OP_REDUCE_MAX ? T_MAX : T_SUM, a.node, -1};
    return FR_OK;
  }
  case OP_SUB:
    if (a.kind != T_NODE || b.kind != T_MAX || a.node != b.node)
      return unsupported(im, o, code, "SUB outside a softmax");
    T[out] = (tag){T_SHIFTED, a.node, -1};
    return FR_OK;
  case OP_EXP:
    if (a.kind != T_SHIFTED)
      return unsupported(im, o, code, "EXP outside a softmax");
    T[out] = (tag){T_EXP, a.node, -1};
    return FR_OK;
  case OP_DIV:
    if (a.kind != T_EXP || b.kind != T_SUM || a.node != b.node)
      return unsupported(im, o, code, "DIV outside a softmax");
    return new_node(im, o, FR_MTCNN_SOFTMAX, a.node, out, &n);
  default:
    return unsupported(im, o, code, "operator not used by MTCNN");
  }
}

/* Every pattern piece must be read only inside its pattern: a tensor tagged as a
 * piece that the graph outputs, or that more operators read than the pattern does,
 * would have lost its value by fusing. */
static int check_pieces(importer *im)
{
  static const int readers[] = {[T_RELU] = 1, [T_NEG] = 1, [T_RELU_NEG] = 1, [T_MIN0] = 1, [T_SCALED] = 1,
                                [T_MAX] = 1, [T_SHIFTED] = 1, [T_EXP] = 2, [T_SUM] = 1};
  for (int t = 0; t < im->n_tensors; t++) {
    tag_kind k = im->tags[t].kind;
    if (k != T_NONE && k != T_NODE && im->consumers[t] != readers[k])
      return fr_error_set(im->err, FR_ERR_UNSUPPORTED, "%s: tensor '%s' is part of a PReLU or softmax pattern but "
                          "is read %d times", im->name, im->tensors[t].name, im->consumers[t]);
  }
  /* A PReLU replaced its node's output: nothing else may read the value before it. */
  for (int i = 0; i < im->g->n_nodes; i++)
    if (im->g->nodes[i].activation == FR_ACT_PRELU && im->consumers[im->raw[i]] != 2)
      return fr_error_set(im->err, FR_ERR_UNSUPPORTED, "%s: '%s' is read outside its PReLU", im->name,
                          im->tensors[im->raw[i]].name);
  return FR_OK;
}

static int import(importer *im)
{
  if (im->buf.size < 8 || memcmp(im->buf.data + 4, "TFL3", 4) != 0)
    return fr_error_set(im->err, FR_ERR_FORMAT, "%s: not a TFLite model (no TFL3 identifier)", im->name);
  fb_table root, sg;
  fb_vector codes, subgraphs, buffers, tensors, ops, gin, gout;
  bool p1, p2, p3, p4;
  if (!fb_root(&im->buf, &root) || !fb_vector_field(&root, 1, 4, &codes, &p1) ||
      !fb_vector_field(&root, 2, 4, &subgraphs, &p2) || !fb_vector_field(&root, 4, 4, &buffers, &p3))
    return bad(im, "the model table");
  if (!p1 || !p2 || !p3 || subgraphs.len != 1)
    return fr_error_set(im->err, FR_ERR_UNSUPPORTED, "%s: not a single-subgraph TFLite model", im->name);
  if (!fb_vector_table(&subgraphs, 0, &sg) || !fb_vector_field(&sg, 0, 4, &tensors, &p1) ||
      !fb_vector_field(&sg, 1, 4, &gin, &p2) || !fb_vector_field(&sg, 2, 4, &gout, &p3) ||
      !fb_vector_field(&sg, 3, 4, &ops, &p4) || !p1 || !p2 || !p3 || !p4)
    return bad(im, "the subgraph");
  im->n_tensors = (int)tensors.len;
  im->tensors = calloc(tensors.len + 1, sizeof(*im->tensors));
  im->tags = calloc(tensors.len + 1, sizeof(*im->tags));
  im->consumers = calloc(tensors.len + 1, sizeof(int));
  im->g->nodes = calloc(MAX_NODES, sizeof(fr_mtcnn_node));
  if (!im->tensors || !im->tags || !im->consumers || !im->g->nodes)
    return fr_error_set(im->err, FR_ERR_NOMEM, "%s: out of memory for %u tensors", im->name, tensors.len);
  int rc;
  for (uint32_t i = 0; i < tensors.len; i++) {
    fb_table t;
    if (!fb_vector_table(&tensors, i, &t))
      return bad(im, "a tensor");
    if ((rc = read_tensor(im, &t, &buffers, (int)i)))
      return rc;
  }
  int32_t input;
  if (gin.len != 1 || !fb_vector_i32(&gin, 0, &input) || input < 0 || input >= im->n_tensors)
    return fr_error_set(im->err, FR_ERR_UNSUPPORTED, "%s: the graph must have exactly one input", im->name);
  const tensor_info *ti = &im->tensors[input];
  if (ti->rank != 4 || ti->type != TFL_FLOAT32 || ti->shape[3] < 1 || ti->shape[3] > 4)
    return fr_error_set(im->err, FR_ERR_UNSUPPORTED, "%s: input '%s' is not a float32 NHWC image", im->name,
                        ti->name);
  im->g->in_h = ti->shape[1], im->g->in_w = ti->shape[2], im->g->in_c = ti->shape[3];
  im->tags[input] = (tag){T_NODE, -1, -1};
  for (uint32_t i = 0; i < ops.len; i++) {
    fb_table t, opt;
    fb_vector vin, vout;
    uint32_t opcode;
    bool has_opt;
    if (!fb_vector_table(&ops, i, &t) || !fb_u32(&t, 0, 0, &opcode) || !fb_vector_field(&t, 1, 4, &vin, &p1) ||
        !fb_vector_field(&t, 2, 4, &vout, &p2) || !fb_table_field(&t, 4, &opt, &has_opt) || !p1 || !p2)
      return bad(im, "an operator");
    fb_table oc;
    uint8_t dep;
    int32_t code, out, in[4] = {-1, -1, -1, -1};
    if (opcode >= codes.len || !fb_vector_table(&codes, opcode, &oc) || !fb_u8(&oc, 0, 0, &dep) ||
        !fb_i32(&oc, 3, 0, &code))
      return bad(im, "an operator code");
    code = code > (int8_t)dep ? code : (int8_t)dep;
    if (vin.len > 4 || vout.len != 1 || !fb_vector_i32(&vout, 0, &out) || out < 0 || out >= im->n_tensors)
      return unsupported(im, (int)i, code, "not one output and at most 4 inputs");
    for (uint32_t k = 0; k < vin.len; k++) {
      if (!fb_vector_i32(&vin, k, &in[k]) || in[k] < -1 || in[k] >= im->n_tensors)
        return fr_error_set(im->err, FR_ERR_FORMAT, "%s: operator %u input %u is not a tensor", im->name, i, k);
      if (in[k] >= 0)
        im->consumers[in[k]]++;
    }
    if (im->tags[out].kind != T_NONE || out == input)
      return fr_error_set(im->err, FR_ERR_FORMAT, "%s: operator %u writes tensor %d twice", im->name, i, out);
    if ((rc = walk_op(im, (int)i, code, in, (int)vin.len, out, &opt, has_opt)))
      return rc;
  }
  if (gout.len < 1 || gout.len > FR_MTCNN_MAX_OUTPUTS)
    return fr_error_set(im->err, FR_ERR_UNSUPPORTED, "%s: %u graph outputs (1 to %d supported)", im->name, gout.len,
                        FR_MTCNN_MAX_OUTPUTS);
  for (uint32_t k = 0; k < gout.len; k++) {
    int32_t t;
    if (!fb_vector_i32(&gout, k, &t) || t < 0 || t >= im->n_tensors)
      return fr_error_set(im->err, FR_ERR_FORMAT, "%s: graph output %u is not a tensor", im->name, k);
    if (im->tags[t].kind != T_NODE || im->tags[t].node < 0)
      return fr_error_set(im->err, FR_ERR_UNSUPPORTED, "%s: graph output '%s' is not a finished node", im->name,
                          im->tensors[t].name);
    im->consumers[t]++;
    im->g->outputs[k] = im->tags[t].node;
    snprintf(im->g->output_names[k], sizeof(im->g->output_names[k]), "%s", im->tensors[t].name);
  }
  im->g->n_outputs = (int)gout.len;
  im->g->any_size = 1;
  for (int k = 0; k < im->g->n_nodes; k++)
    if (im->g->nodes[k].op == FR_MTCNN_FC)
      im->g->any_size = 0;
  if ((rc = check_pieces(im)))
    return rc;
  int *h = malloc(3 * sizeof(int) * (size_t)im->g->n_nodes + 1);
  if (!h)
    return fr_error_set(im->err, FR_ERR_NOMEM, "%s: out of memory", im->name);
  rc = fr_mtcnn_shapes(im->g, im->g->in_h, im->g->in_w, h, h + im->g->n_nodes, h + 2 * im->g->n_nodes, im->err);
  free(h);
  if (rc)
    fr_error_prefix(im->err, "%s: the stored input size does not fit the graph", im->name);
  return rc;
}

int fr_mtcnn_import_tflite_buffer(const void *bytes, size_t size, const char *name, fr_mtcnn_graph *out,
                                  fr_error *err)
{
  memset(out, 0, sizeof(*out));
  const char *base = strrchr(name, '/');
  snprintf(out->source, sizeof(out->source), "%s", base ? base + 1 : name);
  importer im = {.name = name, .buf = {bytes, size}, .err = err, .g = out};
  int rc = import(&im);
  free(im.tensors);
  free(im.tags);
  free(im.consumers);
  if (rc)
    fr_mtcnn_graph_free(out);
  return rc;
}

int fr_mtcnn_import_tflite(const char *path, fr_mtcnn_graph *out, fr_error *err)
{
  memset(out, 0, sizeof(*out));
  FILE *f = fopen(path, "rb");
  if (!f)
    return fr_error_set(err, errno == ENOENT ? FR_ERR_NOT_FOUND : FR_ERR_IO, "%s: %s", path, strerror(errno));
  uint8_t *data = NULL;
  long size = -1;
  if (fseek(f, 0, SEEK_END) == 0)
    size = ftell(f);
  int rc = FR_OK;
  if (size < 0 || size > (64L << 20) || fseek(f, 0, SEEK_SET) != 0)
    rc = fr_error_set(err, FR_ERR_IO, "%s: cannot size the file, or it is over 64 MiB", path);
  else if (!(data = malloc((size_t)size + 1)))
    rc = fr_error_set(err, FR_ERR_NOMEM, "%s: out of memory for %ld bytes", path, size);
  else if (fread(data, 1, (size_t)size, f) != (size_t)size)
    rc = fr_error_set(err, FR_ERR_IO, "%s: short read", path);
  fclose(f);
  if (!rc)
    rc = fr_mtcnn_import_tflite_buffer(data, (size_t)size, path, out, err);
  free(data);
  return rc;
}

void fr_mtcnn_graph_free(fr_mtcnn_graph *g)
{
  if (!g)
    return;
  for (int i = 0; g->nodes && i < MAX_NODES; i++) {
    free(g->nodes[i].weights);
    free(g->nodes[i].bias);
    free(g->nodes[i].slope);
  }
  free(g->nodes);
  memset(g, 0, sizeof(*g));
}

void fr_tf_padding(int in, int kernel, int stride, int same, int *out, int *pad_before)
{
  if (same) {
    *out = (in + stride - 1) / stride;
    int total = (*out - 1) * stride + kernel - in;
    *pad_before = total > 0 ? total / 2 : 0;
  } else {
    *out = in >= kernel ? (in - kernel) / stride + 1 : 0;
    *pad_before = 0;
  }
}

int fr_mtcnn_shapes(const fr_mtcnn_graph *g, int h, int w, int *oh, int *ow, int *oc, fr_error *err)
{
  if (h < 1 || w < 1 || h > 16384 || w > 16384)
    return fr_error_set(err, FR_ERR_INVALID, "%s: input %dx%d out of range", g->source, w, h);
  for (int i = 0; i < g->n_nodes; i++) {
    const fr_mtcnn_node *n = &g->nodes[i];
    int ih = n->input < 0 ? h : oh[n->input], iw = n->input < 0 ? w : ow[n->input];
    int ic = n->input < 0 ? g->in_c : oc[n->input], pad;
    switch (n->op) {
    case FR_MTCNN_CONV:
    case FR_MTCNN_MAXPOOL:
      if (n->op == FR_MTCNN_CONV && ic != n->in_c)
        return fr_error_set(err, FR_ERR_INVALID, "%s: node '%s' reads %d channels, not %d", g->source, n->name, ic,
                            n->in_c);
      fr_tf_padding(ih, n->kernel_h, n->stride_h, n->same, &oh[i], &pad);
      fr_tf_padding(iw, n->kernel_w, n->stride_w, n->same, &ow[i], &pad);
      oc[i] = n->op == FR_MTCNN_CONV ? n->out_c : ic;
      if (oh[i] < 1 || ow[i] < 1)
        return fr_error_set(err, FR_ERR_INVALID, "%s: input %dx%d is too small for node '%s'", g->source, w, h,
                            n->name);
      break;
    case FR_MTCNN_FC:
      if ((int64_t)ih * iw * ic != n->in_c)
        return fr_error_set(err, FR_ERR_INVALID, "%s: node '%s' needs %d inputs, a %dx%d input gives %lld",
                            g->source, n->name, n->in_c, w, h, (long long)ih * iw * ic);
      oh[i] = ow[i] = 1;
      oc[i] = n->out_c;
      break;
    case FR_MTCNN_SOFTMAX:
      oh[i] = ih, ow[i] = iw, oc[i] = ic;
      break;
    }
  }
  return FR_OK;
}
