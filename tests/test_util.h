#ifndef FACERI_TEST_UTIL_H
#define FACERI_TEST_UTIL_H
/* Shared bits for the CUnit test programs: one program per module, run by ctest. */
#include <CUnit/Basic.h>
#include <CUnit/CUnit.h>
#include <stdio.h>
#include <stdlib.h>

/* Where the shared archives and golden files are; tests skip cleanly when absent. */
static inline const char *test_data_dir(void)
{
  const char *d = getenv("FACERI_DATA");
  return d && *d ? d : FACERI_DEFAULT_DATA;
}
static inline const char *test_golden_dir(void)
{
  const char *d = getenv("FACERI_GOLDEN");
  return d && *d ? d : FACERI_DEFAULT_GOLDEN;
}

/* Runs the registry with verbose output and turns failures into the exit code. */
static inline int test_run_all(void)
{
  CU_basic_set_mode(CU_BRM_VERBOSE);
  CU_basic_run_tests();
  unsigned failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
  unsigned run = CU_get_number_of_tests_run();
  CU_cleanup_registry();
  return (failed == 0 && run > 0) ? 0 : 1;
}

#define TEST_SKIP(...)                                                                   \
  do {                                                                                   \
    printf("\n  SKIPPED: ");                                                             \
    printf(__VA_ARGS__);                                                                 \
    printf("\n");                                                                        \
    return;                                                                              \
  } while (0)

#endif
