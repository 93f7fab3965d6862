/* --align end to end on real faces: `faceri embed --align` and `faceri run --align
 * --workers 2` on 12 LFW images of 3 identities plus a faceless grey image, a corrupt
 * JPEG and a non-image give the same embeddings and /items/aligned; every LFW face is
 * aligned and its embedding differs from the unaligned run's; the grey image falls
 * back and is still embedded; the corrupt one is not attempted (-1) and names its
 * cause; a run killed after one shard and resumed gives the same file; a worker
 * whose --align settings differ from the coordinator's is refused. */
#include <CUnit/Basic.h>
#include <archive.h>
#include <archive_entry.h>
#include <hdf5.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "faceri/align.h"
#include "faceri/results_reader.h"
#include "support/pipeline.h"
#include "test_util.h"

#define N_IDS 3
#define PER_ID 4
#define N_LFW (N_IDS * PER_ID)
#define N_ROWS (N_LFW + 3) /* + grey.ppm, corrupt.jpg, notes.txt */

static char g_tar[400];
static int g_ready;
static char g_mtcnn[1024];

/* The first PER_ID JPEGs of each of the first N_IDS identities, then the fixtures. */
static int make_fixture(const char *src, const char *dst)
{
  struct archive *in = archive_read_new();
  archive_read_support_format_all(in);
  archive_read_support_filter_all(in);
  if (archive_read_open_filename(in, src, 1 << 16) != ARCHIVE_OK) {
    archive_read_free(in);
    return -1;
  }
  struct archive *out = tar_open(dst, 0);
  char dir[256] = "";
  int ids = 0, in_id = 0, taken = 0;
  uint8_t *first_jpeg = NULL;
  size_t first_size = 0;
  struct archive_entry *e;
  while (taken < N_LFW && archive_read_next_header(in, &e) == ARCHIVE_OK) {
    const char *name = archive_entry_pathname(e);
    const char *slash = strrchr(name, '/');
    if (archive_entry_filetype(e) != AE_IFREG || !strstr(name, ".jpg") || !slash)
      continue;
    if (strncmp(name, dir, (size_t)(slash - name)) != 0 || dir[slash - name] != '\0') {
      if (ids == N_IDS)
        break;
      snprintf(dir, sizeof(dir), "%.*s", (int)(slash - name), name);
      ids++;
      in_id = 0;
    }
    if (in_id >= PER_ID)
      continue;
    size_t size = (size_t)archive_entry_size(e);
    uint8_t *b = malloc(size ? size : 1);
    if (!b || archive_read_data(in, b, size) != (la_ssize_t)size) {
      free(b);
      break;
    }
    tar_add(out, name, b, size);
    if (!first_jpeg) {
      first_jpeg = b;
      first_size = size;
    } else {
      free(b);
    }
    in_id++;
    taken++;
  }
  archive_read_free(in);
  /* a flat grey image: no face anywhere */
  size_t px = 120 * 140 * 3;
  char *grey = malloc(px + 32);
  int head = snprintf(grey, 32, "P6 120 140 255\n");
  memset(grey + head, 128, px);
  tar_add(out, "fixtures/grey.ppm", grey, (size_t)head + px);
  free(grey);
  /* a real JPEG cut short: it fails to decode */
  if (first_jpeg)
    tar_add(out, "fixtures/corrupt.jpg", first_jpeg, first_size / 3);
  free(first_jpeg);
  tar_add(out, "fixtures/notes.txt", "not an image\n", 13);
  tar_close(out);
  return taken == N_LFW ? 0 : -1;
}

static int suite_init(void)
{
  if (pl_suite_init(FACERI_BINARY_DIR "/faceri", test_data_dir(), "align-pipeline"))
    return 1;
  snprintf(g_mtcnn, sizeof(g_mtcnn), "%s/%s", FACERI_SOURCE_DIR, FR_MTCNN_DEFAULT_DIR);
  char src[512], probe[1100 + 16];
  snprintf(src, sizeof(src), "%s/lfw-min5.tar", test_data_dir());
  snprintf(g_tar, sizeof(g_tar), "%s/align-fixture.tar", pl_dir);
  snprintf(probe, sizeof(probe), "%s/onet.tflite", g_mtcnn);
  g_ready = access(src, R_OK) == 0 && access(probe, R_OK) == 0 && have_model() ? -1 : 0;
  return 0;
}

/* Built in the first test, not in the suite set-up: the tar helpers assert. */
static int fixture_ready(void)
{
  if (g_ready < 0) {
    char src[512];
    snprintf(src, sizeof(src), "%s/lfw-min5.tar", test_data_dir());
    g_ready = make_fixture(src, g_tar) == 0;
  }
  return g_ready;
}

#define NEED_FIXTURE()                                                                                \
  do {                                                                                                \
    if (!fixture_ready())                                                                             \
      TEST_SKIP("needs the model, lfw-min5.tar and the MTCNN models (scripts/setup)");                \
  } while (0)

typedef struct align_cols {
  int n;
  int8_t aligned[64];
  float score[64];
  int64_t align_attr;
  double min_score_attr;
} align_cols;

static int read_align(const char *path, align_cols *c)
{
  memset(c, 0, sizeof(*c));
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0)
    return -1;
  hid_t a = H5Dopen2(f, "items/aligned", H5P_DEFAULT), s = H5Dopen2(f, "items/align_score", H5P_DEFAULT);
  int rc = a >= 0 && s >= 0 ? 0 : -1;
  if (!rc) {
    hid_t sp = H5Dget_space(a);
    hsize_t n = 0;
    H5Sget_simple_extent_dims(sp, &n, NULL);
    H5Sclose(sp);
    c->n = (int)n;
    rc = n > 64 || H5Dread(a, H5T_NATIVE_INT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, c->aligned) < 0 ||
                 H5Dread(s, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, c->score) < 0
             ? -1
             : 0;
  }
  hid_t attr = H5Aopen(f, "align", H5P_DEFAULT);
  if (attr >= 0) {
    H5Aread(attr, H5T_NATIVE_INT64, &c->align_attr);
    H5Aclose(attr);
  }
  c->min_score_attr = NAN;
  attr = H5Aopen(f, "align_min_score", H5P_DEFAULT);
  if (attr >= 0) {
    H5Aread(attr, H5T_NATIVE_DOUBLE, &c->min_score_attr);
    H5Aclose(attr);
  }
  if (a >= 0)
    H5Dclose(a);
  if (s >= 0)
    H5Dclose(s);
  H5Fclose(f);
  return rc;
}

static char *h5(const char *name)
{
  static char paths[8][400];
  static int k;
  char *p = paths[k++ % 8];
  snprintf(p, 400, "%s/%s", pl_dir, name);
  return p;
}

static int row_of(const results *r, const char *key_end)
{
  for (int i = 0; i < r->n; i++) {
    size_t n = strlen(r->keys[i]), m = strlen(key_end);
    if (n >= m && !strcmp(r->keys[i] + n - m, key_end))
      return i;
  }
  return -1;
}

/* The aligned rows of one file, checked against what the fixture holds. */
static void check_align_rows(const char *path, const char *what)
{
  results r;
  align_cols c;
  CU_ASSERT_EQUAL_FATAL(read_results(path, &r), N_ROWS);
  CU_ASSERT_EQUAL_FATAL(read_align(path, &c), 0);
  CU_ASSERT_EQUAL(c.n, N_ROWS);
  CU_ASSERT_EQUAL(c.align_attr, 1);
  CU_ASSERT(fabs(c.min_score_attr - 0.9) < 1e-6);
  int faces = 0;
  for (int i = 0; i < r.n; i++)
    if (strstr(r.keys[i], ".jpg") && !strstr(r.keys[i], "corrupt")) {
      faces++;
      CU_ASSERT_EQUAL(r.status[i], 0);
      CU_ASSERT_EQUAL(c.aligned[i], 1);
      CU_ASSERT(c.score[i] >= 0.9f && c.score[i] <= 1.0f);
    }
  CU_ASSERT_EQUAL(faces, N_LFW);
  int grey = row_of(&r, "grey.ppm"), bad = row_of(&r, "corrupt.jpg"), txt = row_of(&r, "notes.txt");
  CU_ASSERT_FATAL(grey >= 0 && bad >= 0 && txt >= 0);
  /* no face: the fallback resize, still embedded */
  CU_ASSERT_EQUAL(r.status[grey], 0);
  CU_ASSERT_EQUAL(c.aligned[grey], 0);
  CU_ASSERT(c.score[grey] < 0.9f);
  CU_ASSERT(isfinite(r.emb[(size_t)grey * r.d]));
  /* not decodable: not attempted, and the error says why */
  CU_ASSERT_EQUAL(r.status[bad], 1);
  CU_ASSERT_EQUAL(c.aligned[bad], -1);
  CU_ASSERT(isnan(c.score[bad]));
  CU_ASSERT_PTR_NOT_NULL(strstr(r.errors[bad], "corrupt.jpg"));
  CU_ASSERT_EQUAL(r.status[txt], 2);
  CU_ASSERT_EQUAL(c.aligned[txt], -1);
  printf("\n    %s: %d faces aligned, grey image fell back (score %.3f)", what, faces, (double)c.score[grey]);
  free_results(&r);
}

static int g_embed_done, g_run_done;

static void test_embed_align(void)
{
  NEED_FIXTURE();
  char *out = NULL;
  const char *args[] = {"embed", "--align", "--mtcnn", g_mtcnn, "--batch", "5", "--json", "-o", h5("embed-align.h5"),
                        g_tar, NULL};
  CU_ASSERT_EQUAL_FATAL(run_faceri(args, &out, "embed-align"), 3); /* the corrupt JPEG */
  CU_ASSERT_EQUAL(json_int(out, "aligned"), N_LFW);
  CU_ASSERT_EQUAL(json_int(out, "fallbacks"), 1);
  free(out);
  check_align_rows(h5("embed-align.h5"), "embed --align");
  g_embed_done = 1;
}

static void test_run_align_matches_embed(void)
{
  NEED_FIXTURE();
  if (!g_embed_done)
    TEST_SKIP("needs the embed --align test");
  char *out = NULL;
  const char *args[] = {"run", "--align", "--mtcnn", g_mtcnn, "--workers", "2", "--shard-size", "4", "--batch", "4",
                        "--json", "-o", h5("run-align.h5"), g_tar, NULL};
  CU_ASSERT_EQUAL_FATAL(run_faceri(args, &out, "run-align"), 3);
  CU_ASSERT_EQUAL(json_int(out, "aligned"), N_LFW);
  CU_ASSERT_EQUAL(json_int(out, "fallbacks"), 1);
  free(out);
  check_align_rows(h5("run-align.h5"), "run --align --workers 2");
  results a, b;
  align_cols ca, cb;
  CU_ASSERT_EQUAL_FATAL(read_results(h5("embed-align.h5"), &a), N_ROWS);
  CU_ASSERT_EQUAL_FATAL(read_results(h5("run-align.h5"), &b), N_ROWS);
  expect_same(&a, &b, "embed --align vs run --align");
  read_align(h5("embed-align.h5"), &ca);
  read_align(h5("run-align.h5"), &cb);
  CU_ASSERT_EQUAL(memcmp(ca.aligned, cb.aligned, sizeof(ca.aligned)), 0);
  free_results(&a);
  free_results(&b);
  g_run_done = 1;
}

static void test_aligned_differs_from_plain(void)
{
  NEED_FIXTURE();
  if (!g_embed_done)
    TEST_SKIP("needs the embed --align test");
  char *out = NULL;
  const char *args[] = {"embed", "--json", "-o", h5("embed-plain.h5"), g_tar, NULL};
  CU_ASSERT_EQUAL_FATAL(run_faceri(args, &out, "embed-plain"), 3);
  CU_ASSERT_EQUAL(json_int(out, "aligned"), 0);
  CU_ASSERT_EQUAL(json_int(out, "fallbacks"), 0);
  free(out);
  results a, p;
  align_cols cp;
  CU_ASSERT_EQUAL_FATAL(read_results(h5("embed-align.h5"), &a), N_ROWS);
  CU_ASSERT_EQUAL_FATAL(read_results(h5("embed-plain.h5"), &p), N_ROWS);
  CU_ASSERT_EQUAL_FATAL(read_align(h5("embed-plain.h5"), &cp), 0);
  CU_ASSERT_EQUAL(cp.align_attr, 0);
  CU_ASSERT(isnan(cp.min_score_attr));
  double highest = -1, sum = 0;
  int grey = row_of(&a, "grey.ppm");
  for (int i = 0; i < a.n; i++) {
    CU_ASSERT_EQUAL(cp.aligned[i], -1); /* without --align: never attempted */
    CU_ASSERT(isnan(cp.score[i]));
    if (a.status[i] != 0 || i == grey)
      continue;
    double dot = 0;
    for (int j = 0; j < a.d; j++)
      dot += (double)a.emb[(size_t)i * a.d + j] * p.emb[(size_t)i * p.d + j];
    highest = dot > highest ? dot : highest;
    sum += dot;
  }
  /* The grey image's fallback is the same plain resize: the same embedding. */
  double g = 0;
  for (int j = 0; j < a.d; j++)
    g += (double)a.emb[(size_t)grey * a.d + j] * p.emb[(size_t)grey * p.d + j];
  printf("\n    aligned vs whole-image embeddings of the faces: mean cosine %.4f, highest %.4f; grey %.7f",
         sum / N_LFW, highest, g);
  CU_ASSERT(highest < 0.99);
  CU_ASSERT(g >= 0.99999);
  free_results(&a);
  free_results(&p);

  /* the readers (eval, audit, report) read the columns, and still read a schema-2
   * file (made before --align) whose rows then read as not attempted (NaN) */
  fr_results_reader *rr = NULL;
  fr_error err = {0};
  float col[N_ROWS];
  CU_ASSERT_EQUAL_FATAL(fr_results_reader_open(h5("embed-align.h5"), 0, &rr, &err), FR_OK);
  CU_ASSERT(fr_results_reader_has_column(rr, "items/aligned"));
  CU_ASSERT_EQUAL(fr_results_read_column(rr, "items/aligned", 0, N_ROWS, col, &err), FR_OK);
  CU_ASSERT_EQUAL(col[0], 1.0f);
  fr_results_reader_close(rr);
  char cmd[1000];
  snprintf(cmd, sizeof(cmd), "cp %s %s", h5("embed-plain.h5"), h5("schema2.h5"));
  CU_ASSERT_EQUAL_FATAL(system(cmd), 0);
  hid_t f = H5Fopen(h5("schema2.h5"), H5F_ACC_RDWR, H5P_DEFAULT);
  CU_ASSERT_FATAL(f >= 0);
  int64_t two = 2;
  hid_t attr = H5Aopen(f, "schema_version", H5P_DEFAULT);
  CU_ASSERT(attr >= 0 && H5Awrite(attr, H5T_NATIVE_INT64, &two) >= 0);
  H5Aclose(attr);
  CU_ASSERT(H5Ldelete(f, "items/aligned", H5P_DEFAULT) >= 0 && H5Ldelete(f, "items/align_score", H5P_DEFAULT) >= 0);
  CU_ASSERT(H5Adelete(f, "align") >= 0 && H5Adelete(f, "align_min_score") >= 0 && H5Adelete(f, "face_size") >= 0);
  H5Fclose(f);
  CU_ASSERT_EQUAL_FATAL(fr_results_reader_open(h5("schema2.h5"), 0, &rr, &err), FR_OK);
  CU_ASSERT(!fr_results_reader_has_column(rr, "items/aligned"));
  CU_ASSERT_EQUAL(fr_results_read_column(rr, "items/aligned", 0, N_ROWS, col, &err), FR_OK);
  CU_ASSERT(isnan(col[0]) && isnan(col[N_ROWS - 1]));
  fr_results_reader_close(rr);
  /* --resume of a schema-2 file is refused (its layout lacks the new datasets), with the reason */
  const char *res[] = {"embed", "--json", "--resume", "-o", h5("schema2.h5"), g_tar, NULL};
  CU_ASSERT_EQUAL(run_faceri(res, &out, "resume-schema2"), 1);
  free(out);
  char *msg = slurp(h5("resume-schema2.err"));
  CU_ASSERT_PTR_NOT_NULL(strstr(msg, "schema"));
  free(msg);
}

static void test_resume_align(void)
{
  NEED_FIXTURE();
  if (!g_run_done)
    TEST_SKIP("needs the run --align test");
  const char *h = h5("resumed-align.h5");
  const char *args[] = {"run", "--align", "--mtcnn", g_mtcnn, "--workers", "1", "--shard-size", "4", "--batch", "4",
                        "--json", "-o", h, g_tar, NULL};
  char o[400], e[400];
  snprintf(o, sizeof(o), "%s/killed.out", pl_dir);
  snprintf(e, sizeof(e), "%s/killed.err", pl_dir);
  int code = wait_exit(spawn(args, o, e, "FACERI_FAULT_KILL_AFTER_SHARDS=1"), 600);
  CU_ASSERT_EQUAL(code, 128 + 9); /* SIGKILL right after the first commit */
  const char *resume[] = {"run", "--align", "--mtcnn", g_mtcnn, "--workers", "1", "--shard-size", "4", "--batch", "4",
                          "--json", "--resume", "-o", h, g_tar, NULL};
  char *out = NULL;
  CU_ASSERT_EQUAL_FATAL(run_faceri(resume, &out, "resume-align"), 3);
  CU_ASSERT_EQUAL(json_int(out, "resumed"), 4);
  free(out);
  check_align_rows(h, "run --align killed and resumed");
  results a, b;
  align_cols ca, cb;
  CU_ASSERT_EQUAL_FATAL(read_results(h5("run-align.h5"), &a), N_ROWS);
  CU_ASSERT_EQUAL_FATAL(read_results(h, &b), N_ROWS);
  expect_same(&a, &b, "run --align vs killed and resumed");
  read_align(h5("run-align.h5"), &ca);
  read_align(h, &cb);
  CU_ASSERT_EQUAL(memcmp(ca.aligned, cb.aligned, sizeof(ca.aligned)), 0);
  free_results(&a);
  free_results(&b);
  /* other align settings on --resume: refused, the file untouched */
  const char *other[] = {"run", "--align", "--align-min-score", "0.5", "--mtcnn", g_mtcnn, "--workers", "1",
                         "--json", "--resume", "-o", h, g_tar, NULL};
  CU_ASSERT_EQUAL(run_faceri(other, &out, "resume-other"), 1);
  free(out);
  char *err = slurp(h5("resume-other.err"));
  CU_ASSERT_PTR_NOT_NULL(strstr(err, "not resumable"));
  free(err);
}

/* The wire carries the worker's --align settings; the coordinator refuses a mismatch. */
static void test_worker_settings_refused(void)
{
  NEED_FIXTURE();
  char endpoint[64];
  snprintf(endpoint, sizeof(endpoint), "tcp://127.0.0.1:%d", free_port());
  const char *co[] = {"coordinate", "--bind", endpoint, "--align", "--face-size", "70:150", "--json", "-o",
                      h5("refused.h5"), g_tar, NULL};
  char o[400], e[400], wo[400], we[400];
  snprintf(o, sizeof(o), "%s/co.out", pl_dir);
  snprintf(e, sizeof(e), "%s/co.err", pl_dir);
  snprintf(wo, sizeof(wo), "%s/w.out", pl_dir);
  snprintf(we, sizeof(we), "%s/w.err", pl_dir);
  pid_t cpid = spawn(co, o, e, NULL);
  const char *wk[] = {"worker", "--connect", endpoint, "--align", "--mtcnn", g_mtcnn, "--max-reconnect-s", "20", NULL};
  int wcode = wait_exit(spawn(wk, wo, we, NULL), 120);
  CU_ASSERT_EQUAL(wcode, 1);
  char *werr = slurp(we);
  CU_ASSERT_PTR_NOT_NULL(strstr(werr, "refused"));
  CU_ASSERT_PTR_NOT_NULL(strstr(werr, "--align"));
  free(werr);
  kill(cpid, SIGTERM);
  wait_exit(cpid, 60);
}

int main(void)
{
  signal(SIGPIPE, SIG_IGN);
  if (CU_initialize_registry() != CUE_SUCCESS)
    return 1;
  CU_pSuite s = CU_add_suite("align_pipeline", suite_init, pl_suite_clean);
  CU_add_test(s, "embed --align", test_embed_align);
  CU_add_test(s, "run --align --workers 2 = embed --align", test_run_align_matches_embed);
  CU_add_test(s, "aligned embeddings differ from the plain resize", test_aligned_differs_from_plain);
  CU_add_test(s, "run --align killed and resumed = uninterrupted", test_resume_align);
  CU_add_test(s, "a worker with other --align settings is refused", test_worker_settings_refused);
  return test_run_all();
}
