/* Labels from --labels FILE.csv and --label-regex: the parser against
 * well-formed and broken CSV, the regex rules, and the options end to end
 * through `faceri embed` and `faceri run` (the labels land in /labels/name). */
#include <hdf5.h>
#include <png.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "faceri/labels.h"
#include "faceri/model.h"
#include "faceri/results_file.h"
#include "test_process.h"
#include "test_util.h"

static char dir[256];

static const char *write_text(const char *name, const char *text, size_t n)
{
  static char path[512];
  snprintf(path, sizeof(path), "%s/%s", dir, name);
  FILE *f = fopen(path, "wb");
  CU_ASSERT_PTR_NOT_NULL_FATAL(f);
  CU_ASSERT(fwrite(text, 1, n, f) == n);
  fclose(f);
  return path;
}
#define WRITE_CSV(name, lit) write_text(name, lit, sizeof(lit) - 1)

static void test_csv_well_formed(void)
{
  const char *path = WRITE_CSV("good.csv", "key,label\r\n"
                                           "a.tar:x/1.jpg,alice\r\n"
                                           "\n"
                                           "\"a.tar:x/2,comma.jpg\",\"bob \"\"the\"\" builder\"\n"
                                           "\"a.tar:multi\nline.jpg\",carol\n"
                                           "a.tar:\xff\xfe.jpg,dave\n"
                                           "a.tar:nolabel.jpg,\n"
                                           "a.tar:x/1.jpg,alice\n" /* a repeat with the same label is fine */
                                           "last,eve");           /* no final newline */
  fr_labeler *l = NULL;
  fr_error err = {0};
  CU_ASSERT_EQUAL_FATAL(fr_labeler_create(path, NULL, &l, &err), FR_OK);
  CU_ASSERT_EQUAL(fr_labeler_csv_keys(l), 6);
  CU_ASSERT_STRING_EQUAL(fr_labeler_apply(l, "a.tar:x/1.jpg", "x"), "alice");
  CU_ASSERT_STRING_EQUAL(fr_labeler_apply(l, "a.tar:x/2,comma.jpg", "x"), "bob \"the\" builder");
  CU_ASSERT_STRING_EQUAL(fr_labeler_apply(l, "a.tar:multi\nline.jpg", ""), "carol");
  CU_ASSERT_STRING_EQUAL(fr_labeler_apply(l, "a.tar:\xff\xfe.jpg", ""), "dave");
  CU_ASSERT_STRING_EQUAL(fr_labeler_apply(l, "a.tar:nolabel.jpg", "x"), "");
  CU_ASSERT_STRING_EQUAL(fr_labeler_apply(l, "last", "x"), "eve");
  /* Unknown keys keep the folder label; prefixes do not match. */
  CU_ASSERT_STRING_EQUAL(fr_labeler_apply(l, "a.tar:x/3.jpg", "x"), "x");
  CU_ASSERT_STRING_EQUAL(fr_labeler_apply(l, "a.tar:x/1.jp", "x"), "x");
  CU_ASSERT_STRING_EQUAL(fr_labeler_apply(l, "key", NULL), "");
  fr_labeler_destroy(l);
  /* No options: no labeler, folder labels. */
  CU_ASSERT_EQUAL(fr_labeler_create(NULL, NULL, &l, &err), FR_OK);
  CU_ASSERT_PTR_NULL(l);
  CU_ASSERT_STRING_EQUAL(fr_labeler_apply(NULL, "k", "folder"), "folder");
}

static void test_csv_many_keys(void)
{
  /* Enough keys to grow the table several times. */
  char path[512];
  snprintf(path, sizeof(path), "%s/many.csv", dir);
  FILE *f = fopen(path, "w");
  CU_ASSERT_PTR_NOT_NULL_FATAL(f);
  for (int i = 0; i < 20000; i++)
    fprintf(f, "k%d,id%d\n", i, i % 97);
  fclose(f);
  fr_labeler *l = NULL;
  fr_error err = {0};
  CU_ASSERT_EQUAL_FATAL(fr_labeler_create(path, NULL, &l, &err), FR_OK);
  CU_ASSERT_EQUAL(fr_labeler_csv_keys(l), 20000);
  char key[32], want[32];
  int bad = 0;
  for (int i = 0; i < 20000; i += 7) {
    snprintf(key, sizeof(key), "k%d", i);
    snprintf(want, sizeof(want), "id%d", i % 97);
    bad += strcmp(fr_labeler_apply(l, key, ""), want) != 0;
  }
  CU_ASSERT_EQUAL(bad, 0);
  CU_ASSERT_STRING_EQUAL(fr_labeler_apply(l, "k20000", "f"), "f");
  fr_labeler_destroy(l);
}

/* Each broken file is refused with a message naming the file and the line. */
static void expect_bad(const char *name, const char *text, const char *line_text, const char *why)
{
  const char *path = write_text(name, text, strlen(text));
  fr_labeler *l = NULL;
  fr_error err = {0};
  int rc = fr_labeler_create(path, NULL, &l, &err);
  CU_ASSERT_EQUAL(rc, FR_ERR_FORMAT);
  CU_ASSERT_PTR_NULL(l);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, name));
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, line_text));
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, why));
  if (rc != FR_ERR_FORMAT || !strstr(err.message, line_text) || !strstr(err.message, why))
    printf("\n    %s: got \"%s\"", name, err.message);
  fr_labeler_destroy(l);
}

static void test_csv_malformed(void)
{
  expect_bad("three.csv", "a,b\nc,d,e\n", "line 2", "3 field(s)");
  expect_bad("one.csv", "a,b\n\nc\n", "line 3", "1 field(s)");
  expect_bad("open.csv", "a,b\n\"c,d\ne,f\n", "opens on line 2", "never closed");
  expect_bad("after.csv", "a,b\n\"c\"x,d\n", "line 2", "after the closing quote");
  expect_bad("inner.csv", "a,b\nc\"d,e\n", "line 2", "quote inside");
  expect_bad("emptykey.csv", "a,b\n,e\n", "line 2", "empty key");
  expect_bad("conflict.csv", "a,b\nc,d\na,x\n", "line 3", "already has label \"b\" (line 1)");
  /* Line numbers count the lines inside quoted fields. */
  expect_bad("multiline.csv", "\"a\nb\",c\nd\n", "line 3", "1 field(s)");
  const char nul[] = "a,b\nc,d\0e\n";
  const char *path = write_text("nul.csv", nul, sizeof(nul) - 1);
  fr_labeler *l = NULL;
  fr_error err = {0};
  CU_ASSERT_EQUAL(fr_labeler_create(path, NULL, &l, &err), FR_ERR_FORMAT);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "line 2"));
  char missing[512];
  snprintf(missing, sizeof(missing), "%s/no-such.csv", dir);
  CU_ASSERT_EQUAL(fr_labeler_create(missing, NULL, &l, &err), FR_ERR_NOT_FOUND);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "no-such.csv"));
}

static void test_regex(void)
{
  fr_labeler *l = NULL;
  fr_error err = {0};
  /* WebDataset-style names: the identity is the part before the first underscore. */
  CU_ASSERT_EQUAL_FATAL(fr_labeler_create(NULL, "/([A-Za-z]+)_[0-9]+\\.jpg$", &l, &err), FR_OK);
  CU_ASSERT_STRING_EQUAL(fr_labeler_apply(l, "x.tar:faces/alice_0001.jpg", "faces"), "alice");
  CU_ASSERT_STRING_EQUAL(fr_labeler_apply(l, "x.tar:faces/readme.txt", "faces"), "faces");
  CU_ASSERT_STRING_EQUAL(fr_labeler_apply(l, "x.tar:faces/bob_12.jpg", "faces"), "bob");
  CU_ASSERT_STRING_EQUAL(fr_labeler_apply(l, "x.tar:\xff/carol_3.jpg", ""), "carol"); /* bytes before the match */
  fr_labeler_destroy(l);
  /* An optional group that does not take part, or matches nothing: folder label. */
  CU_ASSERT_EQUAL_FATAL(fr_labeler_create(NULL, "^x(y*)z", &l, &err), FR_OK);
  CU_ASSERT_STRING_EQUAL(fr_labeler_apply(l, "xz", "folder"), "folder");
  CU_ASSERT_STRING_EQUAL(fr_labeler_apply(l, "xyyz", "folder"), "yy");
  fr_labeler_destroy(l);
  CU_ASSERT_EQUAL(fr_labeler_create(NULL, "([a-z", &l, &err), FR_ERR_INVALID);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "--label-regex"));
  CU_ASSERT_EQUAL(fr_labeler_create(NULL, "[a-z]+", &l, &err), FR_ERR_INVALID);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "capture group"));
  CU_ASSERT_PTR_NULL(l);
}

static void test_csv_then_regex_then_folder(void)
{
  const char *path = WRITE_CSV("both.csv", "t:a/alice_1.jpg,override\n");
  fr_labeler *l = NULL;
  fr_error err = {0};
  CU_ASSERT_EQUAL_FATAL(fr_labeler_create(path, "/([a-z]+)_[0-9]+", &l, &err), FR_OK);
  CU_ASSERT_STRING_EQUAL(fr_labeler_apply(l, "t:a/alice_1.jpg", "a"), "override");
  CU_ASSERT_STRING_EQUAL(fr_labeler_apply(l, "t:a/alice_2.jpg", "a"), "alice");
  CU_ASSERT_STRING_EQUAL(fr_labeler_apply(l, "t:a/other.jpg", "a"), "a");
  fr_labeler_destroy(l);
}

/* ---- through the CLI ---- */

static void write_png(const char *path, int w, int h, int seed)
{
  png_image img;
  memset(&img, 0, sizeof(img));
  img.version = PNG_IMAGE_VERSION;
  img.width = (png_uint_32)w;
  img.height = (png_uint_32)h;
  img.format = PNG_FORMAT_RGB;
  unsigned char *px = malloc((size_t)w * h * 3);
  CU_ASSERT_PTR_NOT_NULL_FATAL(px);
  for (int i = 0; i < w * h * 3; i++)
    px[i] = (unsigned char)((i * 31 + seed * 17) % 251);
  CU_ASSERT(png_image_write_to_file(&img, path, 0, px, 0, NULL) != 0);
  free(px);
}

static int have_model(void)
{
  struct stat st;
  return stat(fr_model_default_path(), &st) == 0;
}

/* The label name of every row, "" where the row has none. Returns the row count. */
static int read_labels(const char *path, char names[][64], int max)
{
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0)
    return -1;
  hid_t ds = H5Dopen2(f, "labels/name", H5P_DEFAULT);
  hid_t sp = H5Dget_space(ds);
  hsize_t nl = 0;
  H5Sget_simple_extent_dims(sp, &nl, NULL);
  char *lab[64] = {0};
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, H5T_VARIABLE);
  H5Tset_cset(t, H5T_CSET_UTF8);
  if (nl > 64 || H5Dread(ds, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, lab) < 0)
    nl = 0;
  H5Sclose(sp);
  H5Dclose(ds);
  ds = H5Dopen2(f, "items/label", H5P_DEFAULT);
  sp = H5Dget_space(ds);
  hsize_t n = 0;
  H5Sget_simple_extent_dims(sp, &n, NULL);
  int32_t ids[64];
  if (n > (hsize_t)max || H5Dread(ds, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, ids) < 0)
    n = 0;
  for (hsize_t i = 0; i < n; i++)
    snprintf(names[i], 64, "%s", ids[i] >= 0 && (hsize_t)ids[i] < nl ? lab[ids[i]] : "");
  for (hsize_t i = 0; i < nl; i++)
    H5free_memory(lab[i]);
  H5Sclose(sp);
  H5Dclose(ds);
  H5Tclose(t);
  H5Fclose(f);
  return (int)n;
}

/* The label options are part of a run's identity: recorded in the results
 * file's root attributes, and --resume refuses a different CSV (by content)
 * or regex, naming the option. */
static void test_label_options_recorded_and_checked(void)
{
  fr_labeler *a, *a2, *b, *re;
  fr_error err = {0};
  char pa[512], pa2[512], pb[512];
  snprintf(pa, sizeof(pa), "%s", WRITE_CSV("id-a.csv", "k1,alice\nk2,bob\n"));
  snprintf(pa2, sizeof(pa2), "%s", WRITE_CSV("id-a-copy.csv", "k1,alice\nk2,bob\n"));
  snprintf(pb, sizeof(pb), "%s", WRITE_CSV("id-b.csv", "k1,alice\nk2,carol\n"));
  CU_ASSERT_EQUAL_FATAL(fr_labeler_create(pa, NULL, &a, &err), 0);
  CU_ASSERT_EQUAL_FATAL(fr_labeler_create(pa2, NULL, &a2, &err), 0);
  CU_ASSERT_EQUAL_FATAL(fr_labeler_create(pb, NULL, &b, &err), 0);
  CU_ASSERT_EQUAL_FATAL(fr_labeler_create(NULL, "/([a-z]+)_", &re, &err), 0);
  CU_ASSERT_EQUAL(strlen(fr_labeler_csv_sha256(a)), 64);
  CU_ASSERT_STRING_EQUAL(fr_labeler_csv_sha256(a), fr_labeler_csv_sha256(a2));
  CU_ASSERT_STRING_NOT_EQUAL(fr_labeler_csv_sha256(a), fr_labeler_csv_sha256(b));
  CU_ASSERT_STRING_EQUAL(fr_labeler_csv_path(a), pa);
  CU_ASSERT_STRING_EQUAL(fr_labeler_csv_sha256(re), "");
  CU_ASSERT_STRING_EQUAL(fr_labeler_regex(re), "/([a-z]+)_");
  CU_ASSERT_STRING_EQUAL(fr_labeler_regex(NULL), "");

  char h5[512];
  snprintf(h5, sizeof(h5), "%s/opts.h5", dir);
  const char sha[] = "0000000000000000000000000000000000000000000000000000000000000000";
  fr_results_meta meta = {.command_line = "test", .model_path = "m.h5", .model_sha256 = sha, .architecture = "x",
                          .device = "none", .embedding_size = 4, .labels_csv = fr_labeler_csv_path(a),
                          .labels_csv_sha256 = fr_labeler_csv_sha256(a), .label_regex = fr_labeler_regex(a)};
  fr_results_file *rf;
  CU_ASSERT_EQUAL_FATAL(fr_results_create(h5, &meta, &rf, &err), 0);
  CU_ASSERT_EQUAL(fr_results_close(rf, 0, &err), 0);
  hid_t f = H5Fopen(h5, H5F_ACC_RDONLY, H5P_DEFAULT);
  CU_ASSERT_FATAL(f >= 0);
  CU_ASSERT(H5Aexists(f, "labels_csv") > 0 && H5Aexists(f, "labels_csv_sha256") > 0 && H5Aexists(f, "label_regex") > 0);
  H5Fclose(f);
  /* Same content under another name: resumable. */
  meta.labels_csv = fr_labeler_csv_path(a2);
  meta.labels_csv_sha256 = fr_labeler_csv_sha256(a2);
  CU_ASSERT_EQUAL(fr_results_open_resume(h5, &meta, &rf, &err), 0);
  fr_results_close(rf, 0, &err);
  struct {
    fr_labeler *l;
    const char *names;
  } others[] = {{b, "id-b.csv"}, {NULL, "id-a.csv"}, {re, "--label"}};
  for (int i = 0; i < 3; i++) {
    meta.labels_csv = fr_labeler_csv_path(others[i].l);
    meta.labels_csv_sha256 = fr_labeler_csv_sha256(others[i].l);
    meta.label_regex = fr_labeler_regex(others[i].l);
    memset(&err, 0, sizeof(err));
    rf = NULL;
    CU_ASSERT_EQUAL(fr_results_open_resume(h5, &meta, &rf, &err), FR_ERR_INVALID);
    CU_ASSERT_PTR_NULL(rf);
    printf("\n    %s", err.message);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.message, others[i].names));
    CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "not resumable"));
  }
  fr_labeler_destroy(a);
  fr_labeler_destroy(a2);
  fr_labeler_destroy(b);
  fr_labeler_destroy(re);
}

static void test_cli(void)
{
  char path[512], cmd[2048], out[4096], names[8][64];
  snprintf(path, sizeof(path), "%s/faces", dir);
  mkdir(path, 0755);
  snprintf(path, sizeof(path), "%s/faces/alice_1.png", dir);
  write_png(path, 40, 40, 1);
  snprintf(path, sizeof(path), "%s/faces/bob_2.png", dir);
  write_png(path, 40, 40, 2);
  snprintf(path, sizeof(path), "%s/faces/zed.png", dir);
  write_png(path, 40, 40, 3);
  char csv[600];
  snprintf(csv, sizeof(csv), "key,label\n\"%s/faces/zed.png\",\"Zed, Z.\"\n", dir);
  write_text("cli.csv", csv, strlen(csv));
  const char *bin = FACERI_BINARY_DIR "/faceri";
  /* Option errors come before any work: a bad regex is usage (2), a broken CSV a failure (1). */
  snprintf(cmd, sizeof(cmd), "%s run --label-regex '([a-' -o %s/x.h5 %s/faces 2>&1", bin, dir, dir);
  CU_ASSERT_EQUAL(test_run_command(cmd, out, sizeof(out)), 2);
  CU_ASSERT_PTR_NOT_NULL(strstr(out, "--label-regex"));
  WRITE_CSV("broken.csv", "a,b\nc,d,e\n");
  snprintf(cmd, sizeof(cmd), "%s coordinate --bind tcp://127.0.0.1:1 --labels %s/broken.csv -o %s/x.h5 %s/faces 2>&1",
           bin, dir, dir, dir);
  CU_ASSERT_EQUAL(test_run_command(cmd, out, sizeof(out)), 1);
  CU_ASSERT_PTR_NOT_NULL(strstr(out, "broken.csv: line 2"));
  snprintf(cmd, sizeof(cmd), "%s embed --labels %s/broken.csv -o %s/x.h5 %s/faces 2>&1", bin, dir, dir, dir);
  CU_ASSERT_EQUAL(test_run_command(cmd, out, sizeof(out)), 1);
  CU_ASSERT_PTR_NOT_NULL(strstr(out, "broken.csv: line 2"));
  if (!have_model())
    TEST_SKIP("no model file (run scripts/setup)");
  /* CSV first, then the regex, then the folder. */
  for (int which = 0; which < 2; which++) {
    snprintf(cmd, sizeof(cmd),
             "%s %s --json --labels %s/cli.csv --label-regex '/([a-z]+)_[0-9]+\\.png$' -o %s/l%d.h5 %s/faces "
             "2>/dev/null",
             bin, which ? "run --workers 1" : "embed", dir, dir, which, dir);
    CU_ASSERT_EQUAL(test_run_command(cmd, out, sizeof(out)), 0);
    snprintf(path, sizeof(path), "%s/l%d.h5", dir, which);
    CU_ASSERT_EQUAL_FATAL(read_labels(path, names, 8), 3);
    CU_ASSERT_STRING_EQUAL(names[0], "alice");
    CU_ASSERT_STRING_EQUAL(names[1], "bob");
    CU_ASSERT_STRING_EQUAL(names[2], "Zed, Z.");
  }
  /* Without options: the folder. */
  snprintf(cmd, sizeof(cmd), "%s run --workers 1 --json -o %s/l2.h5 %s/faces 2>/dev/null", bin, dir, dir);
  CU_ASSERT_EQUAL(test_run_command(cmd, out, sizeof(out)), 0);
  snprintf(path, sizeof(path), "%s/l2.h5", dir);
  CU_ASSERT_EQUAL_FATAL(read_labels(path, names, 8), 3);
  for (int i = 0; i < 3; i++)
    CU_ASSERT_STRING_EQUAL(names[i], "faces");
  /* --resume with other label options is refused, as a failure naming the option. */
  WRITE_CSV("other.csv", "nobody,none\n");
  snprintf(cmd, sizeof(cmd), "%s embed --resume --labels %s/other.csv -o %s/l2.h5 %s/faces 2>&1", bin, dir, dir, dir);
  CU_ASSERT_EQUAL(test_run_command(cmd, out, sizeof(out)), 1);
  CU_ASSERT_PTR_NOT_NULL(strstr(out, "not resumable"));
  snprintf(cmd, sizeof(cmd), "%s run --workers 1 --resume --label-regex '(x)' -o %s/l2.h5 %s/faces 2>&1", bin, dir,
           dir);
  CU_ASSERT_EQUAL(test_run_command(cmd, out, sizeof(out)), 1);
  CU_ASSERT_PTR_NOT_NULL(strstr(out, "--label-regex"));
}

int main(void)
{
  snprintf(dir, sizeof(dir), "/tmp/faceri-labels-XXXXXX");
  if (!mkdtemp(dir))
    return 1;
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  CU_initialize_registry();
  CU_pSuite s = CU_add_suite("labels", NULL, NULL);
  CU_add_test(s, "CSV: header, quotes, commas, newlines in fields, CRLF, blank lines, bytes", test_csv_well_formed);
  CU_add_test(s, "CSV: 20000 keys", test_csv_many_keys);
  CU_add_test(s, "CSV: each malformed file names the file and the line", test_csv_malformed);
  CU_add_test(s, "regex: first capture group, folder label when it does not match", test_regex);
  CU_add_test(s, "CSV wins over the regex, the regex over the folder", test_csv_then_regex_then_folder);
  CU_add_test(s, "label options in the results file; --resume refuses others", test_label_options_recorded_and_checked);
  CU_add_test(s, "--labels / --label-regex through embed, run and coordinate", test_cli);
  int rc = test_run_all();
  char cmd[512];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
  if (system(cmd) != 0)
    fprintf(stderr, "could not remove %s\n", dir);
  return rc;
}
