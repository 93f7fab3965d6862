/* `faceri embed` end to end as a user runs it: a folder with real PNGs, a corrupt
 * JPEG and a README; the exit code, the JSON summary and the HDF5 rows. */
#include <hdf5.h>
#include <math.h>
#include <png.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "faceri/model.h"
#include "test_process.h"
#include "test_util.h"

static char dir[256];

static void write_png(const char *path, int w, int h, int seed)
{
  png_image img;
  memset(&img, 0, sizeof(img));
  img.version = PNG_IMAGE_VERSION;
  img.width = (png_uint_32)w;
  img.height = (png_uint_32)h;
  img.format = PNG_FORMAT_RGB;
  unsigned char *px = malloc((size_t)w * h * 3);
  for (int i = 0; i < w * h * 3; i++)
    px[i] = (unsigned char)((i * 31 + seed * 17) % 251);
  CU_ASSERT(png_image_write_to_file(&img, path, 0, px, 0, NULL) != 0);
  free(px);
}

static void write_bytes(const char *path, const char *bytes, size_t n)
{
  FILE *f = fopen(path, "wb");
  CU_ASSERT_PTR_NOT_NULL_FATAL(f);
  fwrite(bytes, 1, n, f);
  fclose(f);
}

/* Runs a shell command, returns its exit code and (first line of) stdout. */
static int have_model(void)
{
  struct stat st;
  return stat(fr_model_default_path(), &st) == 0;
}

static void read_strings(hid_t f, const char *name, char **out, int n)
{
  hid_t ds = H5Dopen2(f, name, H5P_DEFAULT);
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, H5T_VARIABLE);
  H5Tset_cset(t, H5Tget_cset(H5Dget_type(ds)));
  if (H5Dread(ds, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0) {
    CU_FAIL("reading a string dataset");
    for (int i = 0; i < n; i++)
      out[i] = strdup("");
  }
  H5Tclose(t);
  H5Dclose(ds);
}

static void test_embed_folder(void)
{
  if (!have_model())
    TEST_SKIP("no model file (run scripts/setup)");
  char path[512], cmd[2048], out[4096];
  snprintf(path, sizeof(path), "%s/alice", dir);
  mkdir(path, 0755);
  snprintf(path, sizeof(path), "%s/alice/a1.png", dir);
  write_png(path, 150, 150, 1);
  snprintf(path, sizeof(path), "%s/alice/a2.png", dir);
  write_png(path, 20, 16, 2); /* very low resolution: upscaled */
  snprintf(path, sizeof(path), "%s/alice/broken.jpg", dir);
  write_bytes(path, "\xff\xd8\xff\xe0garbage", 11);
  snprintf(path, sizeof(path), "%s/alice/README", dir);
  write_bytes(path, "not a face\n", 11);

  snprintf(cmd, sizeof(cmd), "%s/faceri embed --json -b 2 -o %s/out.h5 %s/alice", FACERI_BINARY_DIR, dir, dir);
  int rc = test_run_command(cmd, out, sizeof(out));
  printf("\n    %s", out);
  CU_ASSERT_EQUAL(rc, 3); /* finished, some items failed */
  CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"ok\":2"));
  CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"failed\":1"));
  CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"skipped\":1"));

  snprintf(path, sizeof(path), "%s/out.h5", dir);
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  CU_ASSERT_FATAL(f >= 0);
  hid_t ds = H5Dopen2(f, "embedding", H5P_DEFAULT);
  hid_t sp = H5Dget_space(ds);
  hsize_t dims[2];
  H5Sget_simple_extent_dims(sp, dims, NULL);
  CU_ASSERT_EQUAL(dims[0], 4);
  CU_ASSERT_EQUAL(dims[1], 192);
  float emb[4 * 192];
  CU_ASSERT(H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, emb) >= 0);
  H5Sclose(sp);
  H5Dclose(ds);
  char *keys[4], *errors[4];
  read_strings(f, "items/key", keys, 4);
  read_strings(f, "items/error", errors, 4);
  int8_t status[4];
  ds = H5Dopen2(f, "items/status", H5P_DEFAULT);
  CU_ASSERT(H5Dread(ds, H5T_NATIVE_INT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, status) >= 0);
  H5Dclose(ds);
  /* Sorted folder order: README, a1.png, a2.png, broken.jpg. */
  for (int i = 0; i < 4; i++) {
    double s = 0;
    for (int j = 0; j < 192; j++)
      s += (double)emb[i * 192 + j] * emb[i * 192 + j];
    if (strstr(keys[i], ".png")) {
      CU_ASSERT_EQUAL(status[i], 0);
      CU_ASSERT(fabs(s - 1.0) < 1e-4);
    } else if (strstr(keys[i], "broken")) {
      CU_ASSERT_EQUAL(status[i], 1);
      CU_ASSERT(isnan(emb[i * 192]));
      CU_ASSERT_PTR_NOT_NULL(strstr(errors[i], "broken.jpg"));
    } else {
      CU_ASSERT_EQUAL(status[i], 2);
      CU_ASSERT_PTR_NOT_NULL(strstr(keys[i], "README"));
    }
  }
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, H5T_VARIABLE);
  H5Tset_cset(t, H5T_CSET_UTF8);
  hsize_t four = 4;
  hid_t space4 = H5Screate_simple(1, &four, NULL);
  H5Dvlen_reclaim(t, space4, H5P_DEFAULT, keys);
  H5Dvlen_reclaim(t, space4, H5P_DEFAULT, errors);
  H5Sclose(space4);
  char *state = NULL;
  hid_t a = H5Aopen(f, "state", H5P_DEFAULT);
  CU_ASSERT(H5Aread(a, t, &state) >= 0);
  CU_ASSERT_STRING_EQUAL(state, "complete");
  H5free_memory(state);
  H5Aclose(a);
  H5Tclose(t);
  H5Fclose(f);
}

static void test_crop_outside_fails_that_image_only(void)
{
  if (!have_model())
    TEST_SKIP("no model file (run scripts/setup)");
  char path[512], cmd[2048], out[4096];
  snprintf(path, sizeof(path), "%s/crop", dir);
  mkdir(path, 0755);
  snprintf(path, sizeof(path), "%s/crop/big.png", dir);
  write_png(path, 250, 250, 3);
  snprintf(path, sizeof(path), "%s/crop/small.png", dir);
  write_png(path, 100, 100, 4);
  snprintf(cmd, sizeof(cmd), "%s/faceri embed --json --crop 55,47,140,140 -o %s/crop.h5 %s/crop 2>%s/crop.err",
           FACERI_BINARY_DIR, dir, dir, dir);
  CU_ASSERT_EQUAL(test_run_command(cmd, out, sizeof(out)), 3);
  CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"ok\":1"));
  CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"failed\":1"));
}

/* Reads /embedding and /items/status of a results file. */
static int read_results(const char *path, float *emb, int8_t *status, int max_rows)
{
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0)
    return -1;
  hid_t ds = H5Dopen2(f, "items/status", H5P_DEFAULT);
  hid_t sp = H5Dget_space(ds);
  hsize_t dims[1];
  H5Sget_simple_extent_dims(sp, dims, NULL);
  int n = (int)dims[0];
  if (n <= max_rows) {
    H5Dread(ds, H5T_NATIVE_INT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, status);
    hid_t de = H5Dopen2(f, "embedding", H5P_DEFAULT);
    H5Dread(de, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, emb);
    H5Dclose(de);
  }
  H5Sclose(sp);
  H5Dclose(ds);
  H5Fclose(f);
  return n;
}

static void test_kill_and_resume(void)
{
  if (!have_model())
    TEST_SKIP("no model file (run scripts/setup)");
  char path[512], cmd[2048], out[4096];
  snprintf(path, sizeof(path), "%s/many", dir);
  mkdir(path, 0755);
  for (int i = 0; i < 7; i++) {
    snprintf(path, sizeof(path), "%s/many/img%d.png", dir, i);
    write_png(path, 40 + i, 50, 10 + i);
  }
  snprintf(cmd, sizeof(cmd), "%s/faceri embed --json -b 2 -o %s/whole.h5 %s/many 2>/dev/null", FACERI_BINARY_DIR, dir,
           dir);
  CU_ASSERT_EQUAL(test_run_command(cmd, out, sizeof(out)), 0);
  /* Killed with SIGKILL right after the 2nd shard is committed (4 of 7 images). */
  snprintf(cmd, sizeof(cmd),
           "FACERI_FAULT_KILL_AFTER_SHARDS=2 %s/faceri embed --json -b 2 -o %s/cut.h5 %s/many 2>/dev/null",
           FACERI_BINARY_DIR, dir, dir);
  int killed = test_run_command(cmd, out, sizeof(out));
  CU_ASSERT(killed == -1 || killed == 128 + 9); /* died by the signal (the shell reports 137) */
  static float whole[8 * 192], cut[8 * 192];
  int8_t s_whole[8], s_cut[8];
  snprintf(path, sizeof(path), "%s/cut.h5", dir);
  CU_ASSERT_EQUAL(read_results(path, cut, s_cut, 8), 4);
  snprintf(cmd, sizeof(cmd), "%s/faceri embed --json --resume -b 2 -o %s/cut.h5 %s/many 2>/dev/null",
           FACERI_BINARY_DIR, dir, dir);
  CU_ASSERT_EQUAL(test_run_command(cmd, out, sizeof(out)), 0);
  CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"ok\":3")); /* only the 3 missing images were computed */
  CU_ASSERT_EQUAL(read_results(path, cut, s_cut, 8), 7);
  snprintf(path, sizeof(path), "%s/whole.h5", dir);
  CU_ASSERT_EQUAL(read_results(path, whole, s_whole, 8), 7);
  CU_ASSERT_EQUAL(memcmp(s_whole, s_cut, 7), 0);
  CU_ASSERT_EQUAL(memcmp(whole, cut, 7 * 192 * sizeof(float)), 0);
  /* Different inputs: refused. */
  snprintf(path, sizeof(path), "%s/many/extra.png", dir);
  write_png(path, 30, 30, 99);
  snprintf(cmd, sizeof(cmd), "%s/faceri embed --resume -o %s/cut.h5 %s/many 2>&1 >/dev/null", FACERI_BINARY_DIR, dir,
           dir);
  CU_ASSERT_EQUAL(test_run_command(cmd, out, sizeof(out)), 1);
  CU_ASSERT_PTR_NOT_NULL(strstr(out, "changed"));
}

static void test_usage_errors(void)
{
  char cmd[1024], out[4096];
  snprintf(cmd, sizeof(cmd), "%s/faceri embed --crop 1,2,3 -o x.h5 y 2>/dev/null", FACERI_BINARY_DIR);
  CU_ASSERT_EQUAL(test_run_command(cmd, out, sizeof(out)), 2);
  snprintf(cmd, sizeof(cmd), "%s/faceri embed in.png 2>/dev/null", FACERI_BINARY_DIR);
  CU_ASSERT_EQUAL(test_run_command(cmd, out, sizeof(out)), 2);
  snprintf(cmd, sizeof(cmd), "%s/faceri embed --help", FACERI_BINARY_DIR);
  CU_ASSERT_EQUAL(test_run_command(cmd, out, sizeof(out)), 0);
  CU_ASSERT_PTR_NOT_NULL(strstr(out, "usage: faceri embed"));
  snprintf(cmd, sizeof(cmd), "%s/faceri nosuch 2>/dev/null", FACERI_BINARY_DIR);
  CU_ASSERT_EQUAL(test_run_command(cmd, out, sizeof(out)), 2);
}

static void test_missing_input_is_an_error(void)
{
  if (!have_model())
    TEST_SKIP("no model file (run scripts/setup)");
  char cmd[2048], out[4096];
  snprintf(cmd, sizeof(cmd), "%s/faceri embed --json -o %s/none.h5 %s/does-not-exist 2>%s/missing.err",
           FACERI_BINARY_DIR, dir, dir, dir);
  CU_ASSERT_EQUAL(test_run_command(cmd, out, sizeof(out)), 1);
  char path[512], msg[1024] = "";
  snprintf(path, sizeof(path), "%s/missing.err", dir);
  FILE *f = fopen(path, "r");
  if (f) {
    size_t n = fread(msg, 1, sizeof(msg) - 1, f);
    msg[n] = '\0';
    fclose(f);
  }
  CU_ASSERT_PTR_NOT_NULL(strstr(msg, "does-not-exist"));
}

static void test_bad_model_is_an_error(void)
{
  char cmd[2048], out[4096], path[512];
  snprintf(path, sizeof(path), "%s/fake.h5", dir);
  write_bytes(path, "definitely not a model", 22);
  snprintf(cmd, sizeof(cmd), "%s/faceri embed -m %s -o %s/o.h5 %s 2>&1 >/dev/null", FACERI_BINARY_DIR, path, dir, dir);
  CU_ASSERT_EQUAL(test_run_command(cmd, out, sizeof(out)), 1);
  CU_ASSERT_PTR_NOT_NULL(strstr(out, "fake.h5"));
}

int main(void)
{
  snprintf(dir, sizeof(dir), "/tmp/faceri-embed-XXXXXX");
  if (!mkdtemp(dir))
    return 1;
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  CU_initialize_registry();
  CU_pSuite s = CU_add_suite("embed cli", NULL, NULL);
  CU_add_test(s, "folder with images, a corrupt JPEG and a README", test_embed_folder);
  CU_add_test(s, "a crop outside one image fails that image only", test_crop_outside_fails_that_image_only);
  CU_add_test(s, "killed after two shards, then --resume: same file as an undisturbed run", test_kill_and_resume);
  CU_add_test(s, "usage errors exit 2", test_usage_errors);
  CU_add_test(s, "a missing input is an error naming it", test_missing_input_is_an_error);
  CU_add_test(s, "a foreign model file is an error naming it", test_bad_model_is_an_error);
  int rc = test_run_all();
  char cmd[512];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
  if (system(cmd) != 0)
    fprintf(stderr, "could not remove %s\n", dir);
  return rc;
}
