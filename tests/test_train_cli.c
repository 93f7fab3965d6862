/* faceri train end to end on real faces (a few ORL identities, the last network
 * stages): the loss falls, a run stopped and resumed gives the same losses and weights
 * bit for bit as one that never stopped, and bad requests are refused with the input
 * or option named. The full LFW fine-tune is scripts/train-sanity-lfw (a benchmark). */
#include <CUnit/Basic.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "faceri/align.h"
#include "faceri/model.h"
#include "test_process.h"
#include "test_util.h"

static char g_dir[256];
static char g_orl[512];

static int ready(void)
{
  struct stat st;
  return stat(fr_model_default_path(), &st) == 0 && stat(g_orl, &st) == 0;
}

/* A small, fast run: 4 identities x 10 images, batch 4, layers 45.. trained. */
#define COMMON "--identities 0:4 --batch 4 --train-from 45 --optim adamw --lr 1e-4 --weight-decay 0 --flip --seed 3"

static int train(const char *extra, const char *out_name, char *json, size_t cap)
{
  char cmd[4096];
  snprintf(cmd, sizeof(cmd), "%s/faceri train " COMMON " %s -o %s/%s %s 2>%s/%s.log", FACERI_BINARY_DIR, extra, g_dir,
           out_name, g_orl, g_dir, out_name);
  return test_run_command(cmd, json, cap);
}

static void test_loss_falls(void)
{
  if (!ready())
    TEST_SKIP("model or %s missing", g_orl);
  if (getenv("FACERI_SANITIZER_RUN")) /* the optimised pass trains; the sanitizer pass checks the refusals */
    TEST_SKIP("training runs are slow under the sanitizers; the optimised pass runs them");
  char json[4096];
  CU_ASSERT_EQUAL_FATAL(train("--epochs 3", "falls.h5", json, sizeof(json)), 0);
  CU_ASSERT_PTR_NOT_NULL(strstr(json, "\"status\":\"complete\""));
  CU_ASSERT_PTR_NOT_NULL(strstr(json, "\"images\":40,\"classes\":4"));
  CU_ASSERT_PTR_NOT_NULL(strstr(json, "\"epochs_done\":3"));
  char path[512];
  snprintf(path, sizeof(path), "%s/falls.h5", g_dir);
  fr_model m;
  fr_error err = {0};
  CU_ASSERT_EQUAL_FATAL(fr_model_load(path, &m, &err), FR_OK);
  CU_ASSERT_FATAL(m.training.present && m.training.step == 30 && m.training.loss);
  double e1 = 0, e3 = 0;
  for (int i = 0; i < 10; i++)
    e1 += m.training.loss[i] / 10, e3 += m.training.loss[20 + i] / 10;
  printf("\n    mean loss epoch 1 %.4f, epoch 3 %.4f\n", e1, e3);
  CU_ASSERT(e3 < 0.5 * e1);
  /* the model file carries the head and the class names, and still embeds */
  const fr_model_tensor *p = fr_model_find_tensor(&m, "prototypes/weights");
  CU_ASSERT(p && p->rank == 2 && p->dims[0] == 4 && p->dims[1] == m.embedding_size);
  CU_ASSERT(m.training.n_classes == 4 && !strcmp(m.training.class_names, "s1"));
  fr_model_free(&m);
}

static void test_resume_is_exact(void)
{
  if (!ready())
    TEST_SKIP("model or %s missing", g_orl);
  if (getenv("FACERI_SANITIZER_RUN")) /* the optimised pass trains; the sanitizer pass checks the refusals */
    TEST_SKIP("training runs are slow under the sanitizers; the optimised pass runs them");
  char json[4096];
  CU_ASSERT_EQUAL_FATAL(train("--max-steps 5", "whole.h5", json, sizeof(json)), 0);
  CU_ASSERT_EQUAL_FATAL(train("--max-steps 2", "cut.h5", json, sizeof(json)), 0);
  CU_ASSERT_EQUAL_FATAL(train("--max-steps 5 --resume", "cut.h5", json, sizeof(json)), 0);
  CU_ASSERT_PTR_NOT_NULL(strstr(json, "\"start_step\":2,\"end_step\":5"));
  char a_path[512], b_path[512];
  snprintf(a_path, sizeof(a_path), "%s/whole.h5", g_dir);
  snprintf(b_path, sizeof(b_path), "%s/cut.h5", g_dir);
  fr_model a, b;
  fr_error err = {0};
  CU_ASSERT_EQUAL_FATAL(fr_model_load(a_path, &a, &err), FR_OK);
  CU_ASSERT_EQUAL_FATAL(fr_model_load(b_path, &b, &err), FR_OK);
  CU_ASSERT_STRING_EQUAL(a.weights_sha256, b.weights_sha256);
  CU_ASSERT_FATAL(a.training.step == 5 && b.training.step == 5);
  CU_ASSERT_EQUAL(memcmp(a.training.loss, b.training.loss, 5 * sizeof(float)), 0);
  CU_ASSERT_EQUAL(a.training.optimizer_state_size, b.training.optimizer_state_size);
  CU_ASSERT_EQUAL(memcmp(a.training.optimizer_state, b.training.optimizer_state, a.training.optimizer_state_size), 0);
  const fr_model_tensor *pa = fr_model_find_tensor(&a, "prototypes/weights");
  const fr_model_tensor *pb = fr_model_find_tensor(&b, "prototypes/weights");
  CU_ASSERT(pa && pb && !memcmp(pa->data, pb->data, (size_t)(pa->dims[0] * pa->dims[1]) * sizeof(float)));
  /* the losses really changed the model: it differs from the initial one */
  fr_model init;
  CU_ASSERT_EQUAL_FATAL(fr_model_load(fr_model_default_path(), &init, &err), FR_OK);
  CU_ASSERT(strcmp(init.weights_sha256, a.weights_sha256) != 0);
  fr_model_free(&init);
  fr_model_free(&a);
  fr_model_free(&b);
}

/* --degrade is the very-low-resolution augmentation of any fine-tune, not only of --ri runs:
 * it changes what the network sees from the first step, is part of the checkpointed config,
 * and stays exact across --resume (its draws are seeded by seed, step and row). */
static void test_degrade_without_heads(void)
{
  if (!ready())
    TEST_SKIP("model or %s missing", g_orl);
  if (getenv("FACERI_SANITIZER_RUN"))
    TEST_SKIP("training runs are slow under the sanitizers; the optimised pass runs them");
  char json[4096], plain[4096];
  CU_ASSERT_EQUAL_FATAL(train("--max-steps 1", "plain1.h5", plain, sizeof(plain)), 0);
  CU_ASSERT_EQUAL_FATAL(train("--max-steps 3 --degrade --degrade-prob 1 --degrade-sizes 8:12", "deg.h5", json,
                              sizeof(json)), 0);
  const char *a = strstr(plain, "\"first_loss\":"), *b = strstr(json, "\"first_loss\":");
  CU_ASSERT_FATAL(a && b);
  printf("\n    first loss plain %.6g, degraded to 8-12 px %.6g\n", atof(a + 13), atof(b + 13));
  CU_ASSERT(atof(b + 13) > atof(a + 13)); /* 8-12 px faces are harder for the pretrained network */
  CU_ASSERT_EQUAL_FATAL(train("--max-steps 1 --degrade --degrade-prob 1 --degrade-sizes 8:12", "degcut.h5", json,
                              sizeof(json)), 0);
  CU_ASSERT_EQUAL_FATAL(train("--max-steps 3 --degrade --degrade-prob 1 --degrade-sizes 8:12 --resume", "degcut.h5",
                              json, sizeof(json)), 0);
  char p1[512], p2[512];
  snprintf(p1, sizeof(p1), "%s/deg.h5", g_dir);
  snprintf(p2, sizeof(p2), "%s/degcut.h5", g_dir);
  fr_model m1, m2;
  fr_error err = {0};
  CU_ASSERT_EQUAL_FATAL(fr_model_load(p1, &m1, &err), FR_OK);
  CU_ASSERT_EQUAL_FATAL(fr_model_load(p2, &m2, &err), FR_OK);
  CU_ASSERT_STRING_EQUAL(m1.weights_sha256, m2.weights_sha256);
  CU_ASSERT(m1.training.config && strstr(m1.training.config, "\"degrade\":{\"prob\":1,\"sizes\":\"8:12\"}"));
  fr_model_free(&m1);
  fr_model_free(&m2);
  /* resuming the degraded run without --degrade is a changed config, named */
  CU_ASSERT_EQUAL(train("--max-steps 4 --resume", "degcut.h5", json, sizeof(json)), 2);
  char log[512], text[4096] = "";
  snprintf(log, sizeof(log), "%s/degcut.h5.log", g_dir);
  FILE *f = fopen(log, "r");
  if (f) {
    text[fread(text, 1, sizeof(text) - 1, f)] = '\0';
    fclose(f);
  }
  CU_ASSERT_PTR_NOT_NULL(strstr(text, "degrade"));
}

/* --epochs 0 writes the initialised model (class-means head, no step); --head-init model
 * starts from that head: the same run as one that computes the means itself, and a data
 * set with other classes is refused. */
static void test_shared_head_init(void)
{
  if (!ready())
    TEST_SKIP("model or %s missing", g_orl);
  if (getenv("FACERI_SANITIZER_RUN"))
    TEST_SKIP("training runs are slow under the sanitizers; the optimised pass runs them");
  char json[4096], a[4096], b[4096], extra[1024];
  CU_ASSERT_EQUAL_FATAL(train("--epochs 0", "init0.h5", json, sizeof(json)), 0);
  CU_ASSERT_PTR_NOT_NULL(strstr(json, "\"end_step\":0"));
  CU_ASSERT_EQUAL_FATAL(train("--max-steps 2", "means.h5", a, sizeof(a)), 0);
  snprintf(extra, sizeof(extra), "--max-steps 2 --head-init model --init %s/init0.h5", g_dir);
  CU_ASSERT_EQUAL_FATAL(train(extra, "shared.h5", b, sizeof(b)), 0);
  const char *la = strstr(a, "\"last_loss\":"), *lb = strstr(b, "\"last_loss\":");
  CU_ASSERT_FATAL(la && lb);
  CU_ASSERT_EQUAL(atof(la + 12), atof(lb + 12));
  char p1[512], p2[512];
  snprintf(p1, sizeof(p1), "%s/means.h5", g_dir);
  snprintf(p2, sizeof(p2), "%s/shared.h5", g_dir);
  fr_model m1, m2;
  fr_error err = {0};
  CU_ASSERT_EQUAL_FATAL(fr_model_load(p1, &m1, &err), FR_OK);
  CU_ASSERT_EQUAL_FATAL(fr_model_load(p2, &m2, &err), FR_OK);
  CU_ASSERT_STRING_EQUAL(m1.weights_sha256, m2.weights_sha256);
  fr_model_free(&m1);
  fr_model_free(&m2);
  char cmd[2048], out[4096];
  snprintf(cmd, sizeof(cmd),
           "%s/faceri train --identities 0:5 --batch 4 --max-steps 1 --head-init model --init %s/init0.h5 -o "
           "%s/other.h5 %s 2>&1",
           FACERI_BINARY_DIR, g_dir, g_dir, g_orl);
  CU_ASSERT_EQUAL(test_run_command(cmd, out, sizeof(out)), 2);
  CU_ASSERT_PTR_NOT_NULL(strstr(out, "--head-init model"));
  CU_ASSERT_PTR_NOT_NULL(strstr(out, "init0.h5"));
}

static void test_refusals(void)
{
  if (!ready())
    TEST_SKIP("model or %s missing", g_orl);
  char out[8192], cmd[2048];
  /* an existing output without --resume */
  CU_ASSERT_EQUAL(train("--max-steps 1", "refuse.h5", out, sizeof(out)), 0);
  CU_ASSERT_EQUAL(train("--max-steps 1", "refuse.h5", out, sizeof(out)), 2);
  /* --resume with another learning rate names the field */
  snprintf(cmd, sizeof(cmd), "%s/faceri train " COMMON " --lr 2e-4 --resume --max-steps 2 -o %s/refuse.h5 %s 2>&1",
           FACERI_BINARY_DIR, g_dir, g_orl);
  CU_ASSERT_EQUAL(test_run_command(cmd, out, sizeof(out)), 2);
  CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"lr\":0.000199999995"));
  /* a missing input is named */
  snprintf(cmd, sizeof(cmd), "%s/faceri train -o %s/none.h5 %s/no-such.tar 2>&1", FACERI_BINARY_DIR, g_dir, g_dir);
  CU_ASSERT_EQUAL(test_run_command(cmd, out, sizeof(out)), 1);
  CU_ASSERT_PTR_NOT_NULL(strstr(out, "no-such.tar"));
  /* one identity is not a classification problem */
  snprintf(cmd, sizeof(cmd), "%s/faceri train --identities 3:1 -o %s/one.h5 %s 2>&1", FACERI_BINARY_DIR, g_dir, g_orl);
  CU_ASSERT_EQUAL(test_run_command(cmd, out, sizeof(out)), 2);
  CU_ASSERT_PTR_NOT_NULL(strstr(out, "1 identities left"));
  /* usage */
  snprintf(cmd, sizeof(cmd), "%s/faceri train --loss triplet -o x.h5 y 2>&1", FACERI_BINARY_DIR);
  CU_ASSERT_EQUAL(test_run_command(cmd, out, sizeof(out)), 2);
  CU_ASSERT_PTR_NOT_NULL(strstr(out, "--loss \"triplet\""));
  snprintf(cmd, sizeof(cmd), "%s/faceri train --help", FACERI_BINARY_DIR);
  CU_ASSERT_EQUAL(test_run_command(cmd, out, sizeof(out)), 0);
  CU_ASSERT_PTR_NOT_NULL(strstr(out, "--resume"));
}

/* --align: the kept images (4 identities x 10) are aligned once before the epochs and
 * the fallbacks counted; the run trains and its config records the align settings. */
static void test_align(void)
{
  char mtcnn[1024], probe[1100];
  snprintf(mtcnn, sizeof(mtcnn), "%s/%s", FACERI_SOURCE_DIR, FR_MTCNN_DEFAULT_DIR);
  snprintf(probe, sizeof(probe), "%s/onet.tflite", mtcnn);
  if (!ready() || access(probe, R_OK) != 0)
    TEST_SKIP("model, %s or the MTCNN models missing", g_orl);
  if (getenv("FACERI_SANITIZER_RUN"))
    TEST_SKIP("training runs are slow under the sanitizers; the optimised pass runs them");
  char json[4096], extra[1200], log[600];
  snprintf(extra, sizeof(extra), "--align --mtcnn %s --max-steps 2", mtcnn);
  CU_ASSERT_EQUAL_FATAL(train(extra, "align.h5", json, sizeof(json)), 0);
  CU_ASSERT_PTR_NOT_NULL(strstr(json, "\"status\":\"complete\""));
  CU_ASSERT_PTR_NOT_NULL(strstr(json, "\"images\":40,\"classes\":4"));
  CU_ASSERT_PTR_NOT_NULL(strstr(json, "\"end_step\":2"));
  const char *a = strstr(json, "\"align\":1,\"aligned\":");
  CU_ASSERT_PTR_NOT_NULL_FATAL(a);
  long aligned = -1, fallbacks = -1;
  CU_ASSERT_EQUAL(sscanf(a, "\"align\":1,\"aligned\":%ld,\"fallbacks\":%ld", &aligned, &fallbacks), 2);
  printf("\n    ORL, 40 images kept: %ld aligned, %ld fallbacks", aligned, fallbacks);
  CU_ASSERT_EQUAL(aligned + fallbacks, 40); /* only the kept images, each once */
  CU_ASSERT(aligned >= 36);
  snprintf(log, sizeof(log), "%s/align.h5.log", g_dir);
  FILE *f = fopen(log, "r");
  char text[8192] = "";
  if (f) {
    text[fread(text, 1, sizeof(text) - 1, f)] = '\0';
    fclose(f);
  }
  char want[128];
  snprintf(want, sizeof(want), "aligned %ld images, %ld fallbacks", aligned, fallbacks);
  CU_ASSERT_PTR_NOT_NULL(strstr(text, want));
  /* the checkpoint's config names the settings, so --resume can hold a run to them */
  char path[512];
  snprintf(path, sizeof(path), "%s/align.h5", g_dir);
  fr_model m;
  fr_error err = {0};
  CU_ASSERT_EQUAL_FATAL(fr_model_load(path, &m, &err), FR_OK);
  CU_ASSERT(m.training.config && strstr(m.training.config, "\"align\":{\"min_score\":0.899999976"));
  fr_model_free(&m);
}

static int suite_init(void)
{
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  snprintf(g_dir, sizeof(g_dir), "/tmp/faceri-test-train-XXXXXX");
  if (!mkdtemp(g_dir))
    return 1;
  snprintf(g_orl, sizeof(g_orl), "%s/orl.tar", test_data_dir());
  return 0;
}

static int suite_clean(void)
{
  char cmd[600];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_dir);
  return system(cmd) == 0 ? 0 : 1;
}

int main(void)
{
  if (CU_initialize_registry() != CUE_SUCCESS)
    return 1;
  CU_pSuite s = CU_add_suite("faceri train", suite_init, suite_clean);
  CU_add_test(s, "loss falls on real faces", test_loss_falls);
  CU_add_test(s, "resume is exact", test_resume_is_exact);
  CU_add_test(s, "--degrade without the heads", test_degrade_without_heads);
  CU_add_test(s, "--epochs 0 and --head-init model", test_shared_head_init);
  CU_add_test(s, "refusals name the cause", test_refusals);
  CU_add_test(s, "--align aligns the kept images once and counts fallbacks", test_align);
  return test_run_all();
}
