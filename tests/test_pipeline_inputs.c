/* The pipeline's inputs end to end: bad inputs each end as one row naming the
 * member and the cause (the same rows from `faceri run` and `faceri embed`),
 * missing inputs and usage errors, and the ways to name many inputs at once
 * (@lists, globs, WebDataset brace ranges, tar.zst), with --resume refusing an
 * expansion that changed. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <archive.h>

#include "support/pipeline.h"
#include "test_util.h"

#define BIN FACERI_BINARY_DIR "/faceri"

static void test_bad_inputs(void)
{
  NEED_DATA();
  char paths[8][400], h5[400];
  int pid;
  int n = make_bad_inputs(paths, &pid);
  snprintf(h5, sizeof(h5), "%s/bad.h5", pl_dir);
  const char *args[20] = {"run", "--workers", "2", "-b", "4", "--shard-size", "4", "--json", "-o", h5};
  for (int i = 0; i < n; i++)
    args[10 + i] = paths[i];
  char *out;
  CU_ASSERT_EQUAL(run_faceri(args, &out, "bad"), 3); /* finished with item errors */
  char *err = tag_output("bad", "err");
  printf("\n    %s", out);
  CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"status\":\"complete\""));
  CU_ASSERT_EQUAL(json_int(out, "input_errors"), 1);
  CU_ASSERT_PTR_NOT_NULL(strstr(err, "cut.tar.gz"));
  results r;
  CU_ASSERT_FATAL(read_results(h5, &r) > 0);
  CU_ASSERT_STRING_EQUAL(r.state, "complete");
  expect_row(&r, "bad/trunc.jpg", 1, "JPEG");
  expect_row(&r, "bad/badcrc.png", 1, "CRC");
  expect_row(&r, "bad/zero.jpg", 1, "empty");
  expect_row(&r, "bad/text.jpg", 2, "not an image");
  expect_row(&r, "bad/one.png", 0, NULL);
  expect_row(&r, "bad/huge.png", 1, "100000");
  expect_row(&r, "notes/readme.txt", 2, "not an image");
  /* The damaged archive: the members before the cut are kept, ok. */
  int before_cut = 0;
  for (int i = 0; i < r.n; i++)
    before_cut += strstr(r.keys[i], "cut.tar.gz:cut/img") != NULL && r.status[i] == 0;
  printf("\n    %d of %d members of the cut tar.gz kept", before_cut, N_JPEGS);
  CU_ASSERT(before_cut >= N_JPEGS / 3 && before_cut < N_JPEGS);
  CU_ASSERT_PTR_NOT_NULL(strstr(err, "cut.tar.gz: member"));
  /* ...and the damage is one failed row, right after them, naming the archive, the member and the cause. */
  int damage = -1, damaged_rows = 0;
  for (int i = 0; i < r.n; i++)
    if (strstr(r.keys[i], "cut.tar.gz") && r.status[i] != 0) {
      damage = i;
      damaged_rows++;
    }
  CU_ASSERT_EQUAL(damaged_rows, 1);
  CU_ASSERT_FATAL(damage > 0);
  printf("\n    damage row: %s", r.errors[damage]);
  CU_ASSERT_EQUAL(r.status[damage], 1);
  CU_ASSERT_PTR_NOT_NULL(strstr(r.errors[damage], paths[1]));
  CU_ASSERT_PTR_NOT_NULL(strstr(r.errors[damage], "member"));
  CU_ASSERT_PTR_NOT_NULL(strstr(r.keys[damage - 1], "cut.tar.gz:cut/img"));
  /* `faceri embed` of the same inputs: the same rows, statuses and errors, the same exit code. */
  char embed_h5[400];
  snprintf(embed_h5, sizeof(embed_h5), "%s/bad-embed.h5", pl_dir);
  const char *eargs[20] = {"embed", "-b", "4", "--json", "-o", embed_h5};
  for (int i = 0; i < n; i++)
    eargs[6 + i] = paths[i];
  char *eout;
  CU_ASSERT_EQUAL(run_faceri(eargs, &eout, "bad-embed"), 3);
  printf("\n    %s", eout);
  CU_ASSERT_EQUAL(json_int(eout, "failed"), 5);
  free(eout);
  results e;
  CU_ASSERT_FATAL(read_results(embed_h5, &e) == r.n);
  CU_ASSERT_STRING_EQUAL(e.state, "complete");
  expect_same(&r, &e, "run vs embed on the bad inputs");
  int other_error = 0;
  for (int i = 0; i < r.n; i++)
    other_error += strcmp(r.errors[i], e.errors[i]) != 0;
  CU_ASSERT_EQUAL(other_error, 0);
  free_results(&e);
  /* Names stored byte for byte; nothing created where they point. */
  char key[600], p[600];
  snprintf(key, sizeof(key), "%s:../../pipe-escape-%d.jpg", paths[2], pid);
  CU_ASSERT(find_key(&r, key) >= 0);
  snprintf(key, sizeof(key), "%s:/tmp/pipe-abs-escape-%d.jpg", paths[2], pid);
  CU_ASSERT(find_key(&r, key) >= 0);
  snprintf(key, sizeof(key), "%s:raw/\xff\xfe\x80-bytes.jpg", paths[2]);
  int raw = find_key(&r, key);
  CU_ASSERT(raw >= 0 && r.status[raw] == 0);
  const char *escapes[] = {"%s/../../pipe-escape-%d.jpg", "%s/../../../pipe-up-%d.jpg", "%s/../pipe-up-%d.jpg",
                           "%s/../pipe-escape-%d.jpg"};
  for (int i = 0; i < 4; i++) {
    snprintf(p, sizeof(p), escapes[i], pl_dir, pid);
    CU_ASSERT_NOT_EQUAL(access(p, F_OK), 0);
    snprintf(p, sizeof(p), escapes[i], ".", pid); /* relative to the working directory */
    CU_ASSERT_NOT_EQUAL(access(p, F_OK), 0);
  }
  snprintf(p, sizeof(p), "/tmp/pipe-abs-escape-%d.jpg", pid);
  CU_ASSERT_NOT_EQUAL(access(p, F_OK), 0);
  /* Every failed or skipped row says why; no pending row is left. */
  int silent = 0, pending = 0;
  for (int i = 0; i < r.n; i++) {
    silent += r.status[i] > 0 && !r.errors[i][0];
    pending += r.status[i] < 0;
  }
  CU_ASSERT_EQUAL(silent, 0);
  CU_ASSERT_EQUAL(pending, 0);
  CU_ASSERT_EQUAL(json_int(out, "failed"), 5); /* 4 bad images and the damage */
  CU_ASSERT_EQUAL(json_int(out, "skipped"), 2);
  free_results(&r);
  free(out);
  free(err);
}

static void test_missing_and_usage(void)
{
  NEED_DATA();
  char h5[400], missing[400], *out;
  snprintf(h5, sizeof(h5), "%s/missing.h5", pl_dir);
  snprintf(missing, sizeof(missing), "%s/no-such-archive.tar", pl_dir);
  const char *run_args[] = {"run", "--workers", "1", "--json", "-o", h5, pl_subset_tar, missing, NULL};
  CU_ASSERT_EQUAL(run_faceri(run_args, &out, "missing"), 1);
  char *err = tag_output("missing", "err");
  CU_ASSERT_PTR_NOT_NULL(strstr(err, "no-such-archive.tar"));
  CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"status\":\"error\""));
  free(out);
  free(err);
  const char *coord_args[] = {"coordinate", "--bind", "tcp://127.0.0.1:1", "--json", "-o", h5, missing, NULL};
  CU_ASSERT_EQUAL(run_faceri(coord_args, &out, "missing-coord"), 1);
  err = tag_output("missing-coord", "err");
  CU_ASSERT_PTR_NOT_NULL(strstr(err, "no-such-archive.tar"));
  free(out);
  free(err);
  /* Nothing to embed: the run ends at once, and its workers with it (not after their reconnect limit). */
  char empty[400];
  snprintf(empty, sizeof(empty), "%s/nothing", pl_dir);
  mkdir(empty, 0755);
  snprintf(h5, sizeof(h5), "%s/nothing.h5", pl_dir);
  const char *nothing[] = {"run", "--workers", "2", "--json", "-o", h5, empty, NULL};
  /* No timing assertion (speed is for benchmarks): a run that hung would hit ctest's timeout. */
  CU_ASSERT_EQUAL(run_faceri(nothing, &out, "nothing"), 0);
  CU_ASSERT_EQUAL(json_int(out, "items"), 0);
  free(out);
  const char *no_output[] = {"run", pl_subset_tar, NULL};
  CU_ASSERT_EQUAL(run_faceri(no_output, &out, "usage1"), 2);
  free(out);
  const char *no_bind[] = {"coordinate", "-o", h5, pl_subset_tar, NULL};
  CU_ASSERT_EQUAL(run_faceri(no_bind, &out, "usage2"), 2);
  free(out);
  const char *no_connect[] = {"worker", NULL};
  CU_ASSERT_EQUAL(run_faceri(no_connect, &out, "usage3"), 2);
  free(out);
}

/* Many inputs at once: four shards (two tar, two tar.zst) named by an @list,
 * a glob and brace ranges give the same rows as the shards named one by one;
 * --resume refuses a glob that now matches another file. */
static void test_many_inputs(void)
{
  NEED_DATA();
  char shards[400], p[4][600], list[400], h5[4][400];
  snprintf(shards, sizeof(shards), "%s/shards", pl_dir);
  mkdir(shards, 0755);
  const char *names[4] = {"shard-000.tar", "shard-001.tar", "shard-002.tar.zst", "shard-003.tar.zst"};
  for (int k = 0; k < 4; k++) {
    snprintf(p[k], sizeof(p[k]), "%s/%s", shards, names[k]);
    struct archive *a = tar_open(p[k], k >= 2 ? 2 : 0);
    for (int i = 0; i < N_JPEGS / 4; i++) {
      char member[64];
      snprintf(member, sizeof(member), "id%d/img%02d.jpg", k, i);
      tar_add(a, member, pl_jpegs[k * (N_JPEGS / 4) + i].data, pl_jpegs[k * (N_JPEGS / 4) + i].size);
    }
    tar_close(a);
  }
  snprintf(list, sizeof(list), "%s/tonight.txt", pl_dir);
  const char *text = "# tonight's shards\nshards/shard-000.tar\n\n  shards/shard-001.tar\n";
  write_file(list, text, strlen(text));
  for (int k = 0; k < 4; k++)
    snprintf(h5[k], sizeof(h5[k]), "%s/many-%d.h5", pl_dir, k);
  char at_list[460], glob_zst[460], brace_tar[460], brace_zst[460], glob_all[460];
  snprintf(at_list, sizeof(at_list), "@%s", list);
  snprintf(glob_zst, sizeof(glob_zst), "%s/shard-00?.tar.zst", shards);
  snprintf(brace_tar, sizeof(brace_tar), "%s/shard-{000..001}.tar", shards);
  snprintf(brace_zst, sizeof(brace_zst), "%s/shard-{002..003}.tar.zst", shards);
  snprintf(glob_all, sizeof(glob_all), "%s/shard-*", shards);
  const char *named[] = {"embed", "--json", "-o", h5[0], p[0], p[1], p[2], p[3], NULL};
  const char *listed[] = {"run", "--workers", "2", "--shard-size", "4", "--json", "-o", h5[1], at_list, glob_zst, NULL};
  const char *braced[] = {"embed", "--json", "-o", h5[2], brace_tar, brace_zst, NULL};
  const char *globbed[] = {"run", "--workers", "1", "--json", "-o", h5[3], glob_all, NULL};
  const char *const *runs[4] = {named, listed, braced, globbed};
  results r[4];
  for (int k = 0; k < 4; k++) {
    char *out, tag[16];
    snprintf(tag, sizeof(tag), "many-%d", k);
    CU_ASSERT_EQUAL(run_faceri(runs[k], &out, tag), 0);
    CU_ASSERT_EQUAL(json_int(out, "ok"), N_JPEGS);
    free(out);
    CU_ASSERT_EQUAL_FATAL(read_results(h5[k], &r[k]), N_JPEGS);
  }
  CU_ASSERT_PTR_NOT_NULL(strstr(r[0].keys[0], "shard-000.tar:id0/img00.jpg"));
  CU_ASSERT_PTR_NOT_NULL(strstr(r[0].keys[N_JPEGS - 1], "shard-003.tar.zst:id3/img05.jpg"));
  expect_same(&r[0], &r[1], "@list + glob (run) vs the shards named (embed)");
  expect_same(&r[0], &r[2], "brace ranges (embed) vs the shards named (embed)");
  expect_same(&r[0], &r[3], "one glob (run) vs the shards named (embed)");
  for (int k = 0; k < 4; k++)
    free_results(&r[k]);

  /* The glob now matches a fifth shard: the inputs changed, --resume refuses (exit 1). */
  char extra[620], *out;
  snprintf(extra, sizeof(extra), "%s/shard-004.tar", shards);
  struct archive *a = tar_open(extra, 0);
  tar_add(a, "id4/img.jpg", pl_jpegs[0].data, pl_jpegs[0].size);
  tar_close(a);
  const char *resumed[] = {"run", "--workers", "1", "--resume", "--json", "-o", h5[3], glob_all, NULL};
  CU_ASSERT_EQUAL(run_faceri(resumed, &out, "many-resume"), 1);
  free(out);
  char *err = tag_output("many-resume", "err");
  CU_ASSERT_PTR_NOT_NULL(strstr(err, "not resumable"));
  free(err);
  /* A pattern matching nothing and a missing list are errors naming them. */
  char none[420], missing[420];
  snprintf(none, sizeof(none), "%s/shard-*.zip", shards);
  snprintf(missing, sizeof(missing), "@%s/no-such-list.txt", pl_dir);
  const char *bad[2][9] = {{"run", "--workers", "1", "--json", "-o", h5[3], none, NULL},
                           {"embed", "--json", "-o", h5[3], missing, NULL}};
  const char *want[2] = {none, "no-such-list.txt"};
  for (int k = 0; k < 2; k++) {
    char tag[16];
    snprintf(tag, sizeof(tag), "many-bad%d", k);
    CU_ASSERT_EQUAL(run_faceri(bad[k], &out, tag), 1);
    free(out);
    err = tag_output(tag, "err");
    CU_ASSERT_PTR_NOT_NULL(strstr(err, want[k]));
    free(err);
  }
}

static int suite_init(void) { return pl_suite_init(BIN, test_data_dir(), "pipe-inputs"); }

int main(void)
{
  signal(SIGPIPE, SIG_IGN);
  CU_initialize_registry();
  CU_pSuite s = CU_add_suite("pipeline inputs", suite_init, pl_suite_clean);
  CU_add_test(s, "bad inputs: one row each with the member and the cause; the run completes", test_bad_inputs);
  CU_add_test(s, "@list, glob, brace ranges, tar.zst: the same rows; --resume refuses a changed expansion", test_many_inputs);
  CU_add_test(s, "a missing input, usage errors: exit 1 and 2 naming the problem", test_missing_and_usage);
  return test_run_all();
}
