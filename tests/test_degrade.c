/* Very-low-resolution augmentation (faceri/degrade.h): reproducible from the seed,
 * different across seeds, the draws within their ranges, the fine detail gone (a
 * 1-pixel checkerboard's energy falls), the mean brightness kept, bad arguments refused. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "faceri/degrade.h"
#include "test_util.h"

enum { W = 112, H = 112 };

static void checker(uint8_t *px)
{
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++)
      for (int c = 0; c < 3; c++)
        px[(y * W + x) * 3 + c] = (uint8_t)(((x + y) & 1) ? 200 : 60);
}

static double hf_energy(const uint8_t *px)
{
  double e = 0;
  for (int y = 0; y < H; y++)
    for (int x = 1; x < W; x++) {
      double d = (double)px[(y * W + x) * 3] - px[(y * W + x - 1) * 3];
      e += d * d;
    }
  return e / (H * (W - 1));
}

static double mean(const uint8_t *px)
{
  double s = 0;
  for (int i = 0; i < W * H * 3; i++)
    s += px[i];
  return s / (W * H * 3);
}

static void test_reproducible_and_degraded(void)
{
  static uint8_t src[W * H * 3], a[W * H * 3], b[W * H * 3], c[W * H * 3];
  checker(src);
  fr_degrade_options o = fr_degrade_defaults();
  fr_error err = {0};
  fr_degrade_draw da, db, dc;
  CU_ASSERT_EQUAL_FATAL(fr_degrade_rgb8(src, W, H, 42, &o, a, &da, &err), FR_OK);
  CU_ASSERT_EQUAL_FATAL(fr_degrade_rgb8(src, W, H, 42, &o, b, &db, &err), FR_OK);
  CU_ASSERT_EQUAL(memcmp(a, b, sizeof(a)), 0);
  CU_ASSERT_EQUAL(memcmp(&da, &db, sizeof(da)), 0);
  int differ = 0;
  for (uint64_t s = 1; s < 6; s++) {
    CU_ASSERT_EQUAL_FATAL(fr_degrade_rgb8(src, W, H, s, &o, c, &dc, &err), FR_OK);
    differ += memcmp(a, c, sizeof(a)) != 0;
    CU_ASSERT(dc.size >= 8 && dc.size <= 32 && dc.quality >= 30 && dc.quality <= 90);
    CU_ASSERT(dc.blur >= 0.3f && dc.blur <= 0.8f && dc.noise >= 0 && dc.noise <= 8 && dc.jpeg_bytes > 0);
  }
  CU_ASSERT(differ >= 4);
  CU_ASSERT(hf_energy(a) < 0.05 * hf_energy(src));
  CU_ASSERT(fabs(mean(a) - mean(src)) < 6);
  /* in place */
  memcpy(c, src, sizeof(c));
  CU_ASSERT_EQUAL(fr_degrade_rgb8(c, W, H, 42, &o, c, NULL, &err), FR_OK);
  CU_ASSERT_EQUAL(memcmp(a, c, sizeof(a)), 0);
}

static void test_bad_arguments(void)
{
  static uint8_t px[W * H * 3];
  fr_degrade_options o = fr_degrade_defaults();
  fr_error err = {0};
  o.min_size = 40, o.max_size = 20;
  CU_ASSERT_EQUAL(fr_degrade_rgb8(px, W, H, 1, &o, px, NULL, &err), FR_ERR_INVALID);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "sizes 40..20"));
  o = fr_degrade_defaults();
  o.jpeg_max = 101;
  CU_ASSERT_EQUAL(fr_degrade_rgb8(px, W, H, 1, &o, px, NULL, &err), FR_ERR_INVALID);
  CU_ASSERT_EQUAL(fr_degrade_rgb8(NULL, W, H, 1, &o, px, NULL, &err), FR_ERR_INVALID);
  o = fr_degrade_defaults();
  CU_ASSERT_EQUAL(fr_degrade_rgb8(px, 0, H, 1, &o, px, NULL, &err), FR_ERR_INVALID);
}

int main(void)
{
  CU_initialize_registry();
  CU_pSuite s = CU_add_suite("degrade", NULL, NULL);
  CU_add_test(s, "reproducible, seeds differ, detail gone", test_reproducible_and_degraded);
  CU_add_test(s, "bad arguments", test_bad_arguments);
  return test_run_all();
}
