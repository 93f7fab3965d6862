/* The pipeline end to end, as an operator runs it: `faceri run` with three
 * in-process workers gives every image of a real archive exactly one row,
 * equal to `faceri embed` of the same image (cosine >= 0.99999). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "support/pipeline.h"
#include "test_util.h"

#define BIN FACERI_BINARY_DIR "/faceri"

static void test_run_exactly_once(void)
{
  NEED_DATA();
  CU_ASSERT_FATAL(reference_ready());
  char h5[400], *out;
  snprintf(h5, sizeof(h5), "%s/run.h5", pl_dir);
  /* Shards of 16: 13 shards over 3 workers, so every worker takes part. */
  const char *args[] = {"run", "--workers", "3", "-b", "16", "--shard-size", "16", "--json", "-o", h5, pl_subset_tar, NULL};
  CU_ASSERT_EQUAL(run_faceri(args, &out, "run"), 0);
  printf("\n    %s", out);
  CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"status\":\"complete\""));
  CU_ASSERT_EQUAL(json_int(out, "ok"), SUBSET);
  CU_ASSERT_EQUAL(json_int(out, "failed"), 0);
  CU_ASSERT_EQUAL(json_int(out, "shards"), (SUBSET + 15) / 16);
  free(out);
  check_against_reference(h5, "run --workers 3 vs embed");
}

static int suite_init(void) { return pl_suite_init(BIN, test_data_dir(), "pipe-once"); }

int main(void)
{
  signal(SIGPIPE, SIG_IGN);
  CU_initialize_registry();
  CU_pSuite s = CU_add_suite("pipeline exactly once", suite_init, pl_suite_clean);
  CU_add_test(s, "run --workers 3: every image exactly once, equal to embed", test_run_exactly_once);
  return test_run_all();
}
