#ifndef FACERI_TEST_SUPPORT_PIPELINE_H
#define FACERI_TEST_SUPPORT_PIPELINE_H
/* Shared by the pipeline tests (tests/test_pipeline_*.c): each program makes
 * its own temp dir and a SUBSET-image tar of lfw-min5.tar (pl_suite_init), and
 * compares its runs with `faceri embed` of that tar (reference_ready). */
#include <CUnit/CUnit.h>
#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct archive;

/* The real images are the first SUBSET members of lfw-min5.tar, not all 5985:
 * on lavapipe with 2 cores the pipeline embeds 20-40 images/s. The full size
 * is scripts/bench-pipeline's job. */
#define SUBSET 200
#define N_JPEGS 24

typedef struct blob {
  uint8_t *data;
  size_t size;
} blob;

typedef struct results {
  int n, d;
  char **keys, **errors;
  int8_t *status;
  int32_t *width;
  float *emb;
  char state[32];
} results;

extern char pl_dir[256], pl_subset_tar[320];
extern int pl_have_data;
extern blob pl_jpegs[N_JPEGS]; /* real JPEGs for the bad-input fixtures */
extern results pl_reference;   /* `faceri embed` of the subset, once reference_ready() */

/* Suite set-up: temp dir /tmp/faceri-TAG-XXXXXX, the subset tar when data_dir has lfw-min5.tar. */
int pl_suite_init(const char *faceri_bin, const char *data_dir, const char *tag);
int pl_suite_clean(void);

/* ---- processes ---- */
pid_t spawn(const char *const *args, const char *out_path, const char *err_path, const char *env_kv);
void sleep_s(double s);
int wait_exit(pid_t pid, double timeout_s); /* exit code; 128 + signal; -1 after a timeout (then killed) */
int wait_stopped(pid_t pid);                /* a worker after its coordinator ended */
int exited(pid_t pid, int *code);
char *slurp(const char *path);              /* whole file (up to 64 KiB), malloc'd; "" when missing */
long long json_int(const char *json, const char *name);
int run_faceri(const char *const *args, char **out, const char *tag); /* out/err in pl_dir/TAG.{out,err} */
char *tag_output(const char *tag, const char *ext);
int free_port(void);
pid_t start_worker(const char *endpoint, int i, const char *hb, const char *liveness, const char *tag);
pid_t start_coordinator(const char *endpoint, const char *h5, const char *hb, const char *liveness, int resume,
                        const char *env_kv, const char *tag);

/* ---- results files ---- */
int read_results(const char *path, results *r); /* rows, or -1 */
void free_results(results *r);
int find_key(const results *r, const char *key);
void expect_same(const results *a, const results *b, const char *what); /* cosine >= 0.99999 */
void expect_unique_keys(const results *r);
/* The one row whose key ends with key_end has this status, and its error names the file and the cause. */
void expect_row(const results *r, const char *key_end, int status, const char *cause);
int reference_ready(void);
void check_against_reference(const char *h5, const char *what);

/* ---- fixtures ---- */
int have_model(void);
int make_subset(const char *src, const char *dst, int n);
void write_file(const char *path, const void *data, size_t n);
struct archive *tar_open(const char *path, int gzip); /* ustar; gzip 1, or 2 for zstd */
void tar_add(struct archive *a, const char *name, const void *data, size_t n);
void tar_close(struct archive *a);
blob png_bytes(int w, int h);
blob huge_png(void); /* a PNG whose header claims 100000 x 100000 pixels */
/* The bad-input fixtures in pl_dir; fills paths, returns how many. */
int make_bad_inputs(char paths[][400], int *pid_out);

#define NEED_DATA()                                                                                  \
  do {                                                                                               \
    if (!have_model())                                                                               \
      TEST_SKIP("no model file (run scripts/setup)");                                                \
    if (!pl_have_data)                                                                               \
      TEST_SKIP("%s/lfw-min5.tar not found (set FACERI_DATA)", test_data_dir());                     \
  } while (0)

#endif
