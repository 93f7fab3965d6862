/* faceri audit on a tiny 2-D results file made here, every figure from the
 * definitions in include/faceri/audit.h worked out in the test; the /audit
 * group read back; rerun replaces it; scopes and options; the CLI. */
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "faceri/audit.h"
#include "faceri/results_reader.h"
#include "results_fixture.h"
#include "test_util.h"

static char dir[] = "/tmp/faceri-test-audit-XXXXXX";
static char path[300], path_noers[300];

/* A: a1 (1,0) a2 (.8,.6) a3 (.6,.8); B: b1 (0,1) b2 (-.6,.8) b3 (.8,.6) = a2 (filed under
 * the wrong name and a duplicate of a2); C: c1 (-1,0) c2 (-.96,-.28); one failed item. */
static const float emb[][2] = {{1, 0}, {0.8f, 0.6f}, {0.6f, 0.8f}, {0, 1}, {-0.6f, 0.8f}, {0.8f, 0.6f}, {-1, 0},
                               {-0.96f, -0.28f}};
static const float ers[] = {1.0f, 0.9f, 0.8f, 1.1f, 0.3f, 0.9f, 1.0f, 0.95f};

static int write_set(const char *p, int with_ers)
{
  const char *keys[] = {"A/1.jpg", "A/2.jpg", "A/3.jpg", "B/1.jpg", "B/2.jpg", "B/3.jpg", "C/1.jpg", "C/2.jpg", "C/x.jpg"};
  const char *labels[] = {"A", "A", "A", "B", "B", "B", "C", "C", "C"};
  fixture_item items[9];
  for (int i = 0; i < 9; i++)
    items[i] = (fixture_item){.key = keys[i], .label = labels[i], .status = i == 8, .embedding = i < 8 ? emb[i] : NULL,
                              .norm = 20, .ers = with_ers && i < 8 ? ers[i] : NAN, .ri = NAN};
  fr_error err = {0};
  int rc = fixture_write(p, items, 9, 2, &err);
  if (rc)
    fprintf(stderr, "fixture: %s\n", err.message);
  return rc;
}

static int setup(void)
{
  if (!mkdtemp(dir))
    return -1;
  snprintf(path, sizeof(path), "%s/r.h5", dir);
  snprintf(path_noers, sizeof(path_noers), "%s/noers.h5", dir);
  return write_set(path, 1) || write_set(path_noers, 0) ? -1 : 0;
}

static int teardown(void)
{
  char cmd[400];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
  return system(cmd) == 0 ? 0 : -1;
}

static double cosine(const double *a, const double *b)
{
  return (a[0] * b[0] + a[1] * b[1]) / (hypot(a[0], a[1]) * hypot(b[0], b[1]));
}

/* Expected d_P, d_N, nearest from the definitions: leave-one-out own prototype. */
static void expected(int i, double *d_p, double *d_n, int *nearest)
{
  static const int label[] = {0, 0, 0, 1, 1, 1, 2, 2};
  double sum[3][2] = {{0}}, v[2] = {emb[i][0], emb[i][1]};
  for (int k = 0; k < 8; k++) {
    sum[label[k]][0] += emb[k][0];
    sum[label[k]][1] += emb[k][1];
  }
  double own[2] = {sum[label[i]][0] - v[0], sum[label[i]][1] - v[1]};
  *d_p = 1 - cosine(v, own);
  double best = -2;
  for (int l = 0; l < 3; l++)
    if (l != label[i] && cosine(v, sum[l]) > best) {
      best = cosine(v, sum[l]);
      *nearest = l;
    }
  *d_n = 1 - best;
}

static void read_u8(const char *p, const char *name, uint8_t *out)
{
  hid_t f = H5Fopen(p, H5F_ACC_RDONLY, H5P_DEFAULT), d = H5Dopen2(f, name, H5P_DEFAULT);
  CU_ASSERT(H5Dread(d, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) >= 0);
  H5Dclose(d);
  H5Fclose(f);
}

static void test_by_hand(void)
{
  fr_results_reader *r = NULL;
  fr_error err = {0};
  CU_ASSERT_EQUAL_FATAL(fr_results_reader_open(path, 1, &r, &err), FR_OK);
  fr_audit_summary s;
  CU_ASSERT_EQUAL_FATAL(fr_audit_run(r, NULL, &s, &err), FR_OK);
  fr_results_reader_close(r);
  CU_ASSERT_EQUAL(s.used, 8);
  CU_ASSERT_EQUAL(s.identities, 3);
  CU_ASSERT_EQUAL(s.duplicate_pairs, 4); /* a2-b3 (1), a2-a3, a3-b3, c1-c2 (.96) */
  CU_ASSERT_EQUAL(s.unrecognizable, 1);  /* b2: d_UI .3 < .6 */
  CU_ASSERT_STRING_EQUAL(s.dup_scope, "all");

  CU_ASSERT_EQUAL_FATAL(fr_results_reader_open(path, 0, &r, &err), FR_OK);
  float dp[9], dn[9], ri[9];
  CU_ASSERT_EQUAL(fr_results_read_column(r, "audit/d_p", 0, 9, dp, &err), FR_OK);
  CU_ASSERT_EQUAL(fr_results_read_column(r, "audit/d_n", 0, 9, dn, &err), FR_OK);
  CU_ASSERT_EQUAL(fr_results_read_column(r, "audit/ri", 0, 9, ri, &err), FR_OK);
  fr_results_reader_close(r);
  uint8_t flags[9];
  read_u8(path, "audit/flags", flags);
  int mislabel = 0;
  for (int i = 0; i < 8; i++) {
    double ep, en;
    int near = -1;
    expected(i, &ep, &en, &near);
    CU_ASSERT_DOUBLE_EQUAL(dp[i], ep, 1e-5);
    CU_ASSERT_DOUBLE_EQUAL(dn[i], en, 1e-5);
    CU_ASSERT_DOUBLE_EQUAL(ri[i], ers[i] * en / (ep + 1e-7), 1e-4 * (1 + ri[i]));
    int want = ep - en > 0.05;
    CU_ASSERT_EQUAL(!!(flags[i] & FR_AUDIT_MISLABEL), want);
    mislabel += want;
  }
  CU_ASSERT_TRUE(flags[5] & FR_AUDIT_MISLABEL); /* b3 sits on A */
  CU_ASSERT_EQUAL(s.mislabel, mislabel);
  CU_ASSERT_TRUE(isnan(dp[8])); /* the failed item */
  CU_ASSERT_EQUAL(flags[8], 0);
}

static void test_rerun_scopes_and_no_ui(void)
{
  fr_results_reader *r = NULL;
  fr_error err = {0};
  fr_audit_options o = {.margin = 0.5, .dup_scope = FR_DUP_LABEL, .unrec_threshold = NAN};
  CU_ASSERT_EQUAL_FATAL(fr_results_reader_open(path, 1, &r, &err), FR_OK);
  fr_audit_summary s;
  CU_ASSERT_EQUAL_FATAL(fr_audit_run(r, &o, &s, &err), FR_OK); /* replaces /audit */
  fr_results_reader_close(r);
  CU_ASSERT_EQUAL(s.duplicate_pairs, 2); /* within identities: a2-a3, c1-c2 */
  CU_ASSERT_STRING_EQUAL(s.dup_scope, "identity");
  CU_ASSERT_EQUAL(s.mislabel, 1);         /* only b3 is off by more than .5 */

  /* No d_UI anywhere: xi = d_N / d_P, and the source says so. */
  CU_ASSERT_EQUAL_FATAL(fr_results_reader_open(path_noers, 1, &r, &err), FR_OK);
  CU_ASSERT_EQUAL_FATAL(fr_audit_run(r, NULL, &s, &err), FR_OK);
  CU_ASSERT_PTR_NOT_NULL(strstr(s.d_ui_source, "taken as 1"));
  CU_ASSERT_EQUAL(s.unrec_column[0], '\0');
  float ri[8], dp[8], dn[8];
  fr_results_read_column(r, "audit/ri", 0, 8, ri, &err);
  fr_results_read_column(r, "audit/d_p", 0, 8, dp, &err);
  fr_results_read_column(r, "audit/d_n", 0, 8, dn, &err);
  CU_ASSERT_DOUBLE_EQUAL(ri[0], dn[0] / (dp[0] + 1e-7), 1e-4);
  o = (fr_audit_options){.margin = -1, .unrec_column = "nonexistent", .unrec_threshold = 1};
  CU_ASSERT_EQUAL(fr_audit_run(r, &o, &s, &err), FR_ERR_INVALID);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "quality/nonexistent"));
  o = (fr_audit_options){.margin = -1, .unrec_column = "norm", .unrec_threshold = 25};
  CU_ASSERT_EQUAL(fr_audit_run(r, &o, &s, &err), FR_OK);
  CU_ASSERT_EQUAL(s.unrecognizable, 8); /* every norm is 20 */
  fr_results_reader_close(r);
}

static void test_cli(void)
{
  char cmd[800], out[4096];
  snprintf(cmd, sizeof(cmd), "%s/faceri audit %s --json --duplicate-threshold 0.99", FACERI_BINARY_DIR, path);
  FILE *p = popen(cmd, "r");
  CU_ASSERT_PTR_NOT_NULL_FATAL(p);
  size_t n = fread(out, 1, sizeof(out) - 1, p);
  out[n] = '\0';
  CU_ASSERT_EQUAL(pclose(p), 0);
  CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"duplicate_pairs\":1"));
  snprintf(cmd, sizeof(cmd), "%s/faceri audit %s --unrecognizable norm 2>/dev/null", FACERI_BINARY_DIR, path);
  CU_ASSERT_EQUAL(WEXITSTATUS(system(cmd)), 2);
  snprintf(cmd, sizeof(cmd), "%s/faceri audit %s/none.h5 2>/dev/null", FACERI_BINARY_DIR, dir);
  CU_ASSERT_EQUAL(WEXITSTATUS(system(cmd)), 1);
}

/* A whole dataset of /audit as raw values (n of `size` bytes; NULL on failure). */
static void *read_ds(const char *p, const char *name, hid_t type, size_t size, hssize_t *n)
{
  hid_t f = H5Fopen(p, H5F_ACC_RDONLY, H5P_DEFAULT), d = f < 0 ? -1 : H5Dopen2(f, name, H5P_DEFAULT);
  hid_t sp = d < 0 ? -1 : H5Dget_space(d);
  *n = sp < 0 ? -1 : H5Sget_simple_extent_npoints(sp);
  void *buf = *n >= 0 ? calloc((size_t)*n + 1, size) : NULL;
  if (buf && *n > 0 && H5Dread(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
    free(buf);
    buf = NULL;
  }
  if (sp >= 0)
    H5Sclose(sp);
  if (d >= 0)
    H5Dclose(d);
  if (f >= 0)
    H5Fclose(f);
  return buf;
}

static int same_ds(const char *p1, const char *p2, const char *name, hid_t type, size_t size)
{
  hssize_t n1, n2;
  void *a = read_ds(p1, name, type, size, &n1), *b = read_ds(p2, name, type, size, &n2);
  int same = a && b && n1 == n2 && !memcmp(a, b, (size_t)n1 * size);
  if (!same)
    printf("\n  %s differs (%lld vs %lld values)\n", name, (long long)n1, (long long)n2);
  free(a);
  free(b);
  return same;
}

static int run_audit(const char *p, fr_audit_path where, double thr, int64_t max_pairs, fr_audit_summary *s)
{
  fr_results_reader *r = NULL;
  fr_error err = {0};
  fr_audit_options o = {.margin = -1, .unrec_threshold = NAN, .dup_scope = FR_DUP_ALL, .dup_threshold = thr,
                        .max_dup_pairs = max_pairs, .dup_device = where, .quiet = 1};
  int rc = fr_results_reader_open(p, 1, &r, &err);
  if (!rc)
    rc = fr_audit_run(r, &o, s, &err);
  fr_results_reader_close(r);
  if (rc)
    printf("\n  audit %s: %s\n", p, err.message);
  return rc;
}

/* The device duplicate search writes what the CPU one writes: the same pairs in the
 * same order (so a truncated record keeps the same ones), flags and counts. 3,000
 * items make two panels and several blocks. */
static void test_device_duplicates(void)
{
  char p1[320], p2[320], t1[320], t2[320];
  snprintf(p1, sizeof(p1), "%s/dup_cpu.h5", dir);
  snprintf(p2, sizeof(p2), "%s/dup_dev.h5", dir);
  snprintf(t1, sizeof(t1), "%s/tiny_cpu.h5", dir);
  snprintf(t2, sizeof(t2), "%s/tiny_dev.h5", dir);
  fr_error err = {0};
  CU_ASSERT_EQUAL_FATAL(fixture_write_synthetic(p1, 50, 60, 8, 7, &err), FR_OK);
  CU_ASSERT_EQUAL_FATAL(fixture_write_synthetic(p2, 50, 60, 8, 7, &err), FR_OK);
  CU_ASSERT_EQUAL_FATAL(write_set(t1, 1), 0);
  CU_ASSERT_EQUAL_FATAL(write_set(t2, 1), 0);
  fr_audit_summary sc, sd;
  CU_ASSERT_EQUAL_FATAL(run_audit(t1, FR_AUDIT_CPU, 0, 0, &sc), FR_OK);
  int rc = run_audit(t2, FR_AUDIT_DEVICE, 0, 0, &sd);
  if (rc == FR_ERR_NOT_FOUND || rc == FR_ERR_UNSUPPORTED)
    TEST_SKIP("no usable Vulkan device");
  CU_ASSERT_EQUAL_FATAL(rc, FR_OK);
  CU_ASSERT_STRING_EQUAL(sc.dup_path, "cpu");
  CU_ASSERT_STRING_NOT_EQUAL(sd.dup_path, "cpu");
  CU_ASSERT_EQUAL(sd.duplicate_pairs, 4);
  CU_ASSERT(same_ds(t1, t2, "audit/duplicates/a", H5T_NATIVE_INT64, 8));
  CU_ASSERT(same_ds(t1, t2, "audit/duplicates/b", H5T_NATIVE_INT64, 8));
  CU_ASSERT(same_ds(t1, t2, "audit/flags", H5T_NATIVE_UINT8, 1));
  const double thr[] = {0.97, 0.5};
  const int64_t max[] = {0, 5000}; /* 5,000 of many more: the same first pairs recorded */
  for (int i = 0; i < 2; i++) {
    CU_ASSERT_EQUAL_FATAL(run_audit(p1, FR_AUDIT_CPU, thr[i], max[i], &sc), FR_OK);
    CU_ASSERT_EQUAL_FATAL(run_audit(p2, FR_AUDIT_DEVICE, thr[i], max[i], &sd), FR_OK);
    CU_ASSERT(sc.duplicate_pairs > 100);
    CU_ASSERT_EQUAL(sc.duplicate_pairs, sd.duplicate_pairs);
    CU_ASSERT_EQUAL(sc.duplicate_items, sd.duplicate_items);
    CU_ASSERT_EQUAL(sc.duplicates_truncated, sd.duplicates_truncated);
    CU_ASSERT_EQUAL(sc.duplicates_truncated, max[i] > 0);
    CU_ASSERT(same_ds(p1, p2, "audit/duplicates/a", H5T_NATIVE_INT64, 8));
    CU_ASSERT(same_ds(p1, p2, "audit/duplicates/b", H5T_NATIVE_INT64, 8));
    CU_ASSERT(same_ds(p1, p2, "audit/duplicates/cosine", H5T_NATIVE_FLOAT, 4));
    CU_ASSERT(same_ds(p1, p2, "audit/flags", H5T_NATIVE_UINT8, 1));
    CU_ASSERT(same_ds(p1, p2, "audit/identity/duplicate", H5T_NATIVE_INT64, 8));
  }
}

int main(void)
{
  if (CU_initialize_registry() != CUE_SUCCESS)
    return 1;
  CU_pSuite s = CU_add_suite("audit", setup, teardown);
  CU_add_test(s, "d_P (leave-one-out), d_N, Eq. 3 RI and flags against the definitions", test_by_hand);
  CU_add_test(s, "rerun replaces /audit; identity scope; margin; no UI centre; bad column", test_rerun_scopes_and_no_ui);
  CU_add_test(s, "faceri audit CLI", test_cli);
  CU_add_test(s, "near-duplicates on the device equal the CPU's", test_device_duplicates);
  return test_run_all();
}
