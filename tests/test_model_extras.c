/* The model file's optional groups: /prototypes and /heads tensors and the /training
 * checkpoint state survive a save/load round trip exactly, and damaged ones are refused
 * with the file and the group named. */
#include <CUnit/Basic.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "faceri/model.h"
#include "faceri/ri_infer.h"
#include "test_util.h"

static char g_tmp[256];

/* One 3x3 conv from 4x4x3 to 1x1x2 with PReLU: the smallest valid model. */
static void make_model(fr_model *m)
{
  memset(m, 0, sizeof(*m));
  snprintf(m->architecture, sizeof(m->architecture), "tiny");
  m->input_h = m->input_w = 4;
  m->input_c = 3;
  snprintf(m->channel_order, sizeof(m->channel_order), "RGB");
  for (int c = 0; c < 3; c++)
    m->mean[c] = 127.5f, m->std[c] = 128.0f;
  m->n_layers = 1;
  m->output_layer = 0;
  m->embedding_size = 2;
  snprintf(m->source_name, sizeof(m->source_name), "tiny");
  snprintf(m->source_sha256, sizeof(m->source_sha256), "%064d", 0);
  m->layers = calloc(1, sizeof(fr_layer));
  fr_layer *l = &m->layers[0];
  snprintf(l->name, sizeof(l->name), "tiny/conv");
  l->kind = FR_LAYER_CONV;
  l->input = FR_LAYER_INPUT;
  l->residual = FR_NO_LAYER;
  l->in_h = l->in_w = 4, l->in_c = 3;
  l->out_h = l->out_w = 1, l->out_c = 2;
  l->kernel_h = l->kernel_w = 4;
  l->stride_h = l->stride_w = 1;
  l->activation = FR_ACT_PRELU;
  l->weights = malloc(2 * 4 * 4 * 3 * sizeof(float));
  for (int i = 0; i < 96; i++)
    l->weights[i] = (float)i / 96.0f - 0.5f;
  l->bias = calloc(2, sizeof(float));
  l->slope = malloc(2 * sizeof(float));
  l->slope[0] = l->slope[1] = 0.25f;
  CU_ASSERT_EQUAL(fr_model_weights_sha256(m, m->weights_sha256, NULL), FR_OK);
}

static void path_in_tmp(char *out, size_t cap, const char *name) { snprintf(out, cap, "%s/%s", g_tmp, name); }

static void add_training(fr_model *m)
{
  fr_model_training *t = &m->training;
  t->present = 1;
  t->step = 3;
  t->config = strdup("{\"loss\":\"arcface\",\"seed\":7}");
  t->optimizer_state_size = 40;
  t->optimizer_state = malloc(40);
  for (int i = 0; i < 40; i++)
    t->optimizer_state[i] = (uint8_t)(i * 7);
  t->loss = malloc(3 * sizeof(float));
  t->loss[0] = 5.5f, t->loss[1] = 4.25f, t->loss[2] = 3.125f;
  static const char names[] = "alice\0bob\0carol";
  t->n_classes = 3;
  t->class_names_size = sizeof(names);
  t->class_names = malloc(sizeof(names));
  memcpy(t->class_names, names, sizeof(names));
}

static void test_roundtrip(void)
{
  fr_model m, back;
  make_model(&m);
  fr_error err = {0};
  float proto[3 * 2] = {1, 0, 0, 1, 0.6f, 0.8f}, fc[5] = {0.5f, -1, 2, 3, 4};
  int64_t pd[2] = {3, 2}, fd[1] = {5};
  CU_ASSERT_EQUAL_FATAL(fr_model_set_tensor(&m, "prototypes/weights", 2, pd, proto, &err), FR_OK);
  CU_ASSERT_EQUAL_FATAL(fr_model_set_tensor(&m, "heads/regression/fc_weight", 1, fd, fc, &err), FR_OK);
  fc[0] = 9; /* replacing keeps one entry */
  CU_ASSERT_EQUAL_FATAL(fr_model_set_tensor(&m, "heads/regression/fc_weight", 1, fd, fc, &err), FR_OK);
  CU_ASSERT_EQUAL(m.n_tensors, 2);
  add_training(&m);
  char path[512];
  path_in_tmp(path, sizeof(path), "extras.h5");
  CU_ASSERT_EQUAL_FATAL(fr_model_save(&m, path, &err), FR_OK);
  CU_ASSERT_EQUAL_FATAL(fr_model_load(path, &back, &err), FR_OK);
  CU_ASSERT_EQUAL(back.n_tensors, 2);
  const fr_model_tensor *p = fr_model_find_tensor(&back, "prototypes/weights");
  const fr_model_tensor *h = fr_model_find_tensor(&back, "heads/regression/fc_weight");
  CU_ASSERT_PTR_NOT_NULL_FATAL(p);
  CU_ASSERT_PTR_NOT_NULL_FATAL(h);
  CU_ASSERT(p->rank == 2 && p->dims[0] == 3 && p->dims[1] == 2 && !memcmp(p->data, proto, sizeof(proto)));
  CU_ASSERT(h->rank == 1 && h->dims[0] == 5 && h->data[0] == 9.0f && h->data[4] == 4.0f);
  const fr_model_training *t = &back.training;
  CU_ASSERT(t->present && t->step == 3);
  CU_ASSERT_STRING_EQUAL(t->config, m.training.config);
  CU_ASSERT(t->optimizer_state_size == 40 && !memcmp(t->optimizer_state, m.training.optimizer_state, 40));
  CU_ASSERT(t->loss && t->loss[0] == 5.5f && t->loss[2] == 3.125f);
  CU_ASSERT(t->n_classes == 3 && t->class_names_size == m.training.class_names_size &&
            !memcmp(t->class_names, m.training.class_names, t->class_names_size));
  /* a model without the groups loads with none */
  fr_model plain;
  make_model(&plain);
  path_in_tmp(path, sizeof(path), "plain.h5");
  CU_ASSERT_EQUAL_FATAL(fr_model_save(&plain, path, &err), FR_OK);
  fr_model_free(&plain);
  CU_ASSERT_EQUAL_FATAL(fr_model_load(path, &plain, &err), FR_OK);
  CU_ASSERT(plain.n_tensors == 0 && !plain.training.present && !plain.training.config);
  fr_model_free(&plain);
  unlink(path);
  path_in_tmp(path, sizeof(path), "extras.h5");
  unlink(path);
  fr_model_free(&m);
  fr_model_free(&back);
}

/* faceri model info (fr_model_print_info) names the heads and their configuration, the
 * UI centre's provenance (with a fingerprint of its input list) and the training state. */
static void test_info(void)
{
  fr_model m;
  make_model(&m);
  fr_error err = {0};
  fr_ri_heads_config k = fr_ri_heads_defaults(1, 1, 2, 2, 1);
  k.reg_input = FR_RI_REG_EMBEDDING;
  k.tau = 1.5f;
  k.dropout = 0.25f;
  k.ui_terms = FR_RI_TERM_ID;
  float cfg[FR_RI_CONFIG_FLOATS], stats[3] = {40, 1.25f, 0.5f};
  fr_ri_config_encode(&k, 0, cfg);
  int64_t d = FR_RI_CONFIG_FLOATS;
  CU_ASSERT_EQUAL_FATAL(fr_model_set_tensor(&m, FR_RI_TENSOR_ROOT "config", 1, &d, cfg, &err), FR_OK);
  for (int i = 0; i < fr_ri_ref_tensor_count(&k); i++) {
    size_t n = fr_ri_ref_tensor_size(&k, i);
    float *v = calloc(n, sizeof(float));
    char path[FR_MODEL_TENSOR_PATH];
    snprintf(path, sizeof(path), FR_RI_TENSOR_ROOT "%s", fr_ri_ref_tensor_name(&k, i));
    v[0] = 0.5f;
    d = (int64_t)n;
    CU_ASSERT_EQUAL_FATAL(fr_model_set_tensor(&m, path, 1, &d, v, &err), FR_OK);
    free(v);
  }
  d = 3;
  CU_ASSERT_EQUAL_FATAL(fr_model_set_tensor(&m, FR_RI_TENSOR_ROOT "ui_stats", 1, &d, stats, &err), FR_OK);
  m.ui_centre = malloc(2 * sizeof(float));
  m.ui_centre[0] = 0.6f, m.ui_centre[1] = 0.8f;
  m.ui.count = 7;
  m.ui.resultant = 0.9;
  snprintf(m.ui.created, sizeof(m.ui.created), "2025-01-02T03:04:05Z");
  snprintf(m.ui.face_region, sizeof(m.ui.face_region), "head 1,2,3,4 of 5x6");
  static const char inputs[] = "a.jpg\t10\t20\tabc\nb.jpg\t11\t21\tdef\n";
  m.ui.inputs = strdup(inputs);
  add_training(&m);
  free(m.training.config);
  m.training.config = strdup("{\"data\":\"0123456789abcdef0123\",\"images\":12,\"loss\":\"arcface\",\"batch\":4,"
                             "\"seed\":7,\"ri\":{\"alpha\":5,\"reg_input\":\"embedding\",\"ui_per_batch\":2}}");
  char path[512];
  path_in_tmp(path, sizeof(path), "info.h5");
  CU_ASSERT_EQUAL_FATAL(fr_model_save(&m, path, &err), FR_OK);
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  CU_ASSERT_EQUAL(fr_model_print_info(path, f, &err), FR_OK);
  fclose(f);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned mdlen = 0;
  char hex[65] = "", want[200];
  CU_ASSERT_FATAL(EVP_Digest(inputs, strlen(inputs), md, &mdlen, EVP_sha256(), NULL) == 1 && mdlen == 32);
  for (unsigned i = 0; i < 32; i++)
    snprintf(hex + 2 * i, 3, "%02x", md[i]);
  snprintf(want, sizeof(want), "UI inputs       2 listed (path, size, mtime, sha256), fingerprint sha256 %s", hex);
  const char *expect[] = {
      "mean of 7 UI faces (head 1,2,3,4 of 5x6), made 2025-01-02T03:04:05Z",
      want,
      "                b.jpg\t11\t21\tdef\n",
      "RI heads        regression and attention, on layer 0 (tiny/conv, 1x1x2), dim 2",
      "  regression    on the raw embedding (CR-FIQA style) (3 parameters), dropout 0.25",
      "  attention     CBAM (reduction 16, 7x7 spatial conv, BN eps 1e-05 momentum 0.01",
      "alpha 5, beta 2, gamma 1; tau 1.5, smooth-L1 beta 0.75; v' from the raw v, detached; MSE mean over rows x dim; "
      "UI rows in ID\n",
      "  UI xi^        40 samples, mean 1.25, variance 0.5",
      "training        step 3 = 1.00 epochs of 3 steps (12 images, batch 4)\n",
      "  classes       3: alice, bob, carol\n",
      "  loss history  3 values, 5.50000 at the first step, 3.12500 at the last\n",
      "  optimizer     40 bytes of state\n",
      "  config        data 0123456789abcdef, loss arcface, seed 7, alpha 5, reg_input embedding, ui_per_batch 2\n",
      "  config JSON   {\"data\":"};
  for (size_t i = 0; i < sizeof(expect) / sizeof(expect[0]); i++)
    if (!strstr(text, expect[i])) {
      printf("\n    missing: %s", expect[i]);
      CU_FAIL("model info output");
    }
  free(text);
  unlink(path);
  fr_model_free(&m);
}

static void test_bad_tensors(void)
{
  fr_model m;
  make_model(&m);
  fr_error err = {0};
  float v[2] = {1, 2}, nan2[2] = {1, NAN};
  int64_t d[1] = {2}, zero[1] = {0};
  CU_ASSERT_EQUAL(fr_model_set_tensor(&m, "layers/0000/weights", 1, d, v, &err), FR_ERR_INVALID);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "layers/0000/weights"));
  CU_ASSERT_EQUAL(fr_model_set_tensor(&m, "heads/../x", 1, d, v, &err), FR_ERR_INVALID);
  CU_ASSERT_EQUAL(fr_model_set_tensor(&m, "heads//x", 1, d, v, &err), FR_ERR_INVALID);
  CU_ASSERT_EQUAL(fr_model_set_tensor(&m, "heads/x", 5, d, v, &err), FR_ERR_INVALID);
  CU_ASSERT_EQUAL(fr_model_set_tensor(&m, "heads/x", 1, zero, v, &err), FR_ERR_INVALID);
  CU_ASSERT_EQUAL(fr_model_set_tensor(&m, "heads/x", 1, d, nan2, &err), FR_ERR_INVALID);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "not finite"));
  CU_ASSERT_EQUAL(m.n_tensors, 0);
  fr_model_free(&m);
}

/* Edits a saved file with HDF5 (then reseals it, so only the content check can refuse it). */
static void test_damaged_groups(void)
{
  fr_model m, back;
  make_model(&m);
  add_training(&m);
  fr_error err = {0};
  char path[512];
  path_in_tmp(path, sizeof(path), "damaged.h5");
  struct {
    const char *what, *expect;
  } cases[] = {{"loss-length", "/training/loss"}, {"names-count", "/training/class_names"},
               {"int-tensor", "heads/bad"}};
  for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
    CU_ASSERT_EQUAL_FATAL(fr_model_save(&m, path, &err), FR_OK);
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    CU_ASSERT_FATAL(f >= 0);
    if (!strcmp(cases[k].what, "loss-length")) {
      hid_t g = H5Gopen2(f, "training", H5P_DEFAULT);
      hid_t a = H5Aopen(g, "step", H5P_DEFAULT);
      long long step = 2;
      CU_ASSERT(a >= 0 && H5Awrite(a, H5T_NATIVE_LLONG, &step) >= 0);
      H5Aclose(a);
      H5Gclose(g);
    } else if (!strcmp(cases[k].what, "names-count")) {
      hid_t g = H5Gopen2(f, "training", H5P_DEFAULT);
      hid_t a = H5Aopen(g, "n_classes", H5P_DEFAULT);
      int n = 4;
      CU_ASSERT(a >= 0 && H5Awrite(a, H5T_NATIVE_INT, &n) >= 0);
      H5Aclose(a);
      H5Gclose(g);
    } else {
      hsize_t dim = 2;
      int vals[2] = {1, 2};
      hid_t g = H5Gcreate2(f, "heads", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
      hid_t s = H5Screate_simple(1, &dim, NULL);
      hid_t d = H5Dcreate2(g, "bad", H5T_STD_I32LE, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
      CU_ASSERT(d >= 0 && H5Dwrite(d, H5T_NATIVE_INT, H5S_ALL, H5S_ALL, H5P_DEFAULT, vals) >= 0);
      H5Dclose(d);
      H5Sclose(s);
      H5Gclose(g);
    }
    CU_ASSERT(H5Fclose(f) >= 0);
    CU_ASSERT_EQUAL_FATAL(fr_model_file_seal(path, &err), FR_OK);
    CU_ASSERT_EQUAL(fr_model_load(path, &back, &err), FR_ERR_FORMAT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.message, cases[k].expect));
    CU_ASSERT_PTR_NOT_NULL(strstr(err.message, path));
    if (!strstr(err.message, cases[k].expect))
      fprintf(stderr, "case %s: %s\n", cases[k].what, err.message);
  }
  unlink(path);
  fr_model_free(&m);
}

static int suite_init(void)
{
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  snprintf(g_tmp, sizeof(g_tmp), "/tmp/faceri-test-extras-XXXXXX");
  return mkdtemp(g_tmp) ? 0 : 1;
}

static int suite_clean(void)
{
  rmdir(g_tmp);
  return 0;
}

int main(void)
{
  if (CU_initialize_registry() != CUE_SUCCESS)
    return 1;
  CU_pSuite s = CU_add_suite("model extras", suite_init, suite_clean);
  CU_add_test(s, "round trip of tensors and training state", test_roundtrip);
  CU_add_test(s, "bad tensors refused", test_bad_tensors);
  CU_add_test(s, "model info shows the heads, the UI centre and the training", test_info);
  CU_add_test(s, "damaged groups refused", test_damaged_groups);
  return test_run_all();
}
