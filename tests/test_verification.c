/* Verification figures on hand-computed cases. */
#include <math.h>

#include "faceri/verification.h"
#include "test_util.h"

static void test_separable_scores(void)
{
  double g[] = {0.9, 0.8, 0.7}, im[] = {0.1, 0.2, 0.3, 0.4};
  fr_verification v;
  CU_ASSERT_EQUAL_FATAL(fr_verification_from_scores(g, 3, im, 4, &v, NULL), FR_OK);
  CU_ASSERT_DOUBLE_EQUAL(v.accuracy, 1.0, 1e-12);
  CU_ASSERT(v.threshold >= 0.4 && v.threshold < 0.7);
  CU_ASSERT_DOUBLE_EQUAL(v.tpr_at_far_1e3, 1.0, 1e-12);
  CU_ASSERT_DOUBLE_EQUAL(v.genuine_mean, 0.8, 1e-12);
  CU_ASSERT_DOUBLE_EQUAL(v.impostor_mean, 0.25, 1e-12);
}

static void test_overlapping_scores(void)
{
  /* Genuine {0.5, 0.9}, impostor {0.6, 0.1}: at t=0.1 -> TPR 1, TNR 0.5 (0.75);
   * at t=0.6 -> TPR 0.5, TNR 1 (0.75); at t=0.5 -> TPR 0.5, TNR 0.5. Best 0.75. */
  double g[] = {0.5, 0.9}, im[] = {0.6, 0.1};
  fr_verification v;
  CU_ASSERT_EQUAL_FATAL(fr_verification_from_scores(g, 2, im, 2, &v, NULL), FR_OK);
  CU_ASSERT_DOUBLE_EQUAL(v.accuracy, 0.75, 1e-12);
  /* FAR 1e-3 of 2 impostors allows none: threshold 0.6, only 0.9 passes. */
  CU_ASSERT_DOUBLE_EQUAL(v.tpr_at_far_1e3, 0.5, 1e-12);
}

static void test_far_threshold_with_many_impostors(void)
{
  /* 2000 impostors 0..1999 scaled; FAR 1e-3 allows 2 of them: threshold = 3rd largest. */
  static double im[2000];
  for (int i = 0; i < 2000; i++)
    im[i] = i / 2000.0;
  double g[] = {0.99850, 0.99860, 0.9990, 0.9999};
  fr_verification v;
  CU_ASSERT_EQUAL_FATAL(fr_verification_from_scores(g, 4, im, 2000, &v, NULL), FR_OK);
  /* 3rd largest impostor = 1997/2000 = 0.9985: genuine scores strictly above it: 0.9986, 0.999, 0.9999. */
  CU_ASSERT_DOUBLE_EQUAL(v.tpr_at_far_1e3, 0.75, 1e-12);
}

static void test_all_pairs(void)
{
  /* Two identities on orthogonal axes, with one item of id 1 tilted. */
  float e[4 * 2] = {1, 0, 1, 0, 0, 1, 0.6f, 0.8f};
  int labels[4] = {0, 0, 1, 1};
  fr_verification v;
  CU_ASSERT_EQUAL_FATAL(fr_verification_all_pairs(e, labels, 4, 2, &v, NULL), FR_OK);
  CU_ASSERT_EQUAL(v.genuine, 2);
  CU_ASSERT_EQUAL(v.impostor, 4);
  CU_ASSERT_DOUBLE_EQUAL(v.genuine_mean, (1.0 + 0.8) / 2, 1e-6);
  CU_ASSERT_DOUBLE_EQUAL(v.accuracy, 1.0, 1e-12); /* genuine {1, .8} vs impostor {0, .6, 0, .6} */
}

static void test_errors(void)
{
  fr_verification v;
  fr_error err = {0};
  double g[1] = {1};
  CU_ASSERT_EQUAL(fr_verification_from_scores(g, 1, g, 0, &v, &err), FR_ERR_INVALID);
  CU_ASSERT(err.message[0] != '\0');
}

int main(void)
{
  CU_initialize_registry();
  CU_pSuite s = CU_add_suite("verification", NULL, NULL);
  CU_add_test(s, "separable scores", test_separable_scores);
  CU_add_test(s, "overlapping scores", test_overlapping_scores);
  CU_add_test(s, "FAR threshold", test_far_threshold_with_many_impostors);
  CU_add_test(s, "all pairs from embeddings", test_all_pairs);
  CU_add_test(s, "errors", test_errors);
  return test_run_all();
}
