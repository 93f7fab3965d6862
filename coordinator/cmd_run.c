/* faceri coordinate (the head node of a fleet) and faceri run (the same
 * coordinator plus in-process workers over inproc://, one ZeroMQ context). */
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "faceri/cli_util.h"
#include "faceri/commands.h"
#include "faceri/input_list.h"
#include "faceri/labels.h"
#include "faceri/log.h"
#include "faceri/model.h"
#include "faceri/scheduler.h"
#include "faceri/vk_context.h"
#include "faceri/test_embedding.h"
#include "faceri/worker_loop.h"

static const char coordinate_usage[] =
    "usage: faceri coordinate --bind ENDPOINT [OPTIONS] -o OUT.h5 INPUT...\n"
    "\n"
    "The head node of a fleet: streams the inputs (image files, folders, archives) into\n"
    "shards, leases them to `faceri worker --connect ENDPOINT` processes, and writes every\n"
    "item's row to OUT.h5 (docs/FORMAT.md). Lost workers' shards are re-queued.\n"
    "INPUT: a file, folder or archive; @LIST (a text file of paths, one per line);\n"
    "a glob (\"shards/*.tar\") or a brace range (\"shard-{000..099}.tar\"), expanded by\n"
    "faceri in a fixed order.\n"
    "\n"
    "options:\n"
    "      --bind ENDPOINT    ZeroMQ endpoint to listen on, e.g. tcp://*:5555 (required)\n"
    "  -o, --output FILE      results file (required)\n"
    "  -m, --model FILE       the model workers must use (its SHA-256 and D are checked;\n"
    "                         default: $FACERI_MODEL or models/mobilefacenet.h5)\n"
    "      --shard-size S     items per shard (default 64)\n"
    "      --resume           continue an interrupted run into the same OUT.h5\n"
    "      --heartbeat-ms MS  heartbeat interval (default 1000)\n"
    "      --liveness N       missed heartbeats before a worker is dead (default 5)\n"
    "      --max-attempts N   leases before a shard is written as failed (default 3)\n"
    "      --align, --align-min-score S, --face-size MIN:MAX\n"
    "                         the run's alignment settings (as for `faceri run`): recorded in\n"
    "                         OUT.h5, and workers must be started with the same ones\n"
    "                         (`faceri worker --align ...`; --mtcnn is the worker's)\n"
    "      --embedding-attn   also write /embedding_attn (L2-normalised v_attn; the model\n"
    "                         needs an attention head; workers need the same flag)\n"
    "      --test-embedding K what /embedding holds: v (default), attn or concat\n"
    "                         (docs/RI_HEADS.md); workers need the same option\n"
    "      --json             print only the JSON summary on stdout (no progress)\n"
    "  -h, --help             this text\n"
    "\n"
    "Exit codes: 0 all items ok, 3 finished with item errors, 1 failed, 2 usage.\n";

static const char run_usage[] =
    "usage: faceri run [OPTIONS] -o OUT.h5 INPUT...\n"
    "\n"
    "Embeds every image in the inputs with in-process workers (one per Vulkan device\n"
    "unless --workers is given) and writes OUT.h5 (docs/FORMAT.md). Same coordinator as\n"
    "`faceri coordinate`, over inproc://.\n"
    "INPUT: a file, folder or archive; @LIST (a text file of paths, one per line);\n"
    "a glob (\"shards/*.tar\") or a brace range (\"shard-{000..099}.tar\"), expanded by\n"
    "faceri in a fixed order.\n"
    "\n"
    "options:\n"
    "  -o, --output FILE      results file (required)\n"
    "  -m, --model FILE       model file (default: $FACERI_MODEL or models/mobilefacenet.h5)\n"
    "  -w, --workers N        in-process workers (default: one per Vulkan device)\n"
    "  -d, --device SEL       Vulkan device index or name for every worker\n"
    "  -b, --batch B          images per device batch (default 32)\n"
    "      --crop X,Y,W,H     crop every image to this box before resizing\n"
    "                         (deep-funneled LFW: 55,47,140,140); with --align, only the\n"
    "                         images whose face is not found are cropped\n"
    FR_ALIGN_USAGE
    "      --shard-size S     items per shard (default 64)\n"
    "      --resume           continue an interrupted run into the same OUT.h5\n"
    "      --heartbeat-ms MS, --liveness N, --max-attempts N   as for coordinate\n"
    "      --embedding-attn   also write /embedding_attn (L2-normalised v_attn; the model\n"
    "                         needs an attention head)\n"
    "      --test-embedding K what /embedding holds: v (default), attn or concat\n"
    "                         (docs/RI_HEADS.md)\n"
    "      --json             print only the JSON summary on stdout (no progress)\n"
    "  -h, --help             this text\n"
    "\n"
    "Exit codes: 0 all items ok, 3 finished with item errors, 1 failed, 2 usage.\n";

static atomic_int g_stop;
static void on_signal(int sig)
{
  (void)sig;
  atomic_store(&g_stop, 1);
}

static void json_string(FILE *out, const char *s)
{
  fputc('"', out);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '"' || *p == '\\')
      fprintf(out, "\\%c", *p);
    else if (*p < 0x20 || *p >= 0x7f)
      fprintf(out, "\\u%04x", *p);
    else
      fputc(*p, out);
  }
  fputc('"', out);
}

void fr_coordinator_print_json(FILE *out, const char *command, const char *output, int status_ok,
                               const fr_coordinator_summary *s)
{
  fprintf(out, "{\"command\":");
  json_string(out, command);
  fprintf(out, ",\"output\":");
  json_string(out, output);
  fprintf(out, ",\"status\":\"%s\",\"items\":%lld,\"ok\":%lld,\"failed\":%lld,\"skipped\":%lld,\"resumed\":%lld,"
          "\"aligned\":%lld,\"fallbacks\":%lld,",
          !status_ok ? "error" : s->complete ? "complete" : "interrupted", (long long)s->items, (long long)s->ok,
          (long long)s->failed, (long long)s->skipped, (long long)s->resumed, (long long)s->aligned,
          (long long)s->fallbacks);
  fprintf(out, "\"shards\":%lld,\"shards_failed\":%lld,\"leases_lost\":%lld,\"messages_dropped\":%lld,"
          "\"input_errors\":%d,\"refused_workers\":%d,\"seconds\":%.3f,\"first_ready_s\":%.3f,"
          "\"items_per_s\":%.2f,\"workers\":[",
          (long long)s->shards_committed, (long long)s->shards_failed, (long long)s->leases_lost,
          (long long)s->messages_dropped, s->input_errors, s->refused_workers, s->seconds, s->first_ready_seconds,
          s->seconds > 0 ? (double)s->items / s->seconds : 0.0);
  for (int i = 0; i < s->n_workers; i++) {
    const fr_coordinator_worker_share *w = &s->workers[i];
    fprintf(out, "%s{\"name\":", i ? "," : "");
    json_string(out, w->name);
    fprintf(out, ",\"device\":");
    json_string(out, w->device);
    fprintf(out, ",\"shards\":%lld,\"items\":%lld,\"share\":%.4f}", (long long)w->shards, (long long)w->items,
            s->items > 0 ? (double)w->items / (double)s->items : 0.0);
  }
  fprintf(out, "],\"test_embedding\":\"%s\",\"embedding_attn\":%d}\n", fr_test_embedding_name(s->test_embedding),
          s->attn_size);
}

/* A bar on a terminal, a line every 10 s otherwise. */
typedef struct progress_view {
  const char *what;
  int tty;
  double last;
} progress_view;

static void show_progress(const fr_coordinator_progress *p, void *user)
{
  progress_view *v = user;
  double now = fr_now_seconds();
  int final = p->items_total >= 0 && p->items_done >= p->items_total;
  if (!final && now - v->last < (v->tty ? 0.2 : 10.0))
    return;
  v->last = now;
  double rate = p->seconds > 0 ? (double)p->items_done / p->seconds : 0.0;
  char eta[32] = "?";
  if (p->items_total >= 0 && rate > 0)
    snprintf(eta, sizeof(eta), "%.0fs", (double)(p->items_total - p->items_done) / rate);
  char total[32] = "?";
  if (p->items_total >= 0)
    snprintf(total, sizeof(total), "%lld", (long long)p->items_total);
  fprintf(stderr, "%s%s: %lld/%s items, %.1f/s, ETA %s, %d worker(s), %lld error(s)%s", v->tty ? "\r" : "", v->what,
          (long long)p->items_done, total, rate, eta, p->live_workers, (long long)p->items_failed,
          v->tty ? "   " : "\n");
  fflush(stderr);
}

typedef struct common_args {
  fr_coordinator_options co;
  const char *model_path;
  const char *labels_csv, *label_regex;
  int json;
  /* run only */
  long workers, batch;
  const char *device;
  int has_crop;
  long crop[4];
  fr_align_cli align;
  fr_input_list inputs; /* INPUT... expanded (@lists, brace ranges, globs) */
  int embedding_attn;   /* --embedding-attn; --test-embedding is co.test_embedding */
} common_args;

enum { OPT_BIND = 256, OPT_SHARD, OPT_RESUME, OPT_HB, OPT_LIVE, OPT_ATTEMPTS, OPT_JSON, OPT_LABELS, OPT_LABEL_RE,
       OPT_CROP, OPT_ATTN, OPT_TEST_EMB };

/* Parses the options both commands share (and run's); returns FR_OK or a usage error. */
static int parse_args(int argc, char **argv, int is_run, common_args *a, int *help, fr_error *err)
{
  static const struct option longopts[] = {
      {"bind", required_argument, 0, OPT_BIND},         {"output", required_argument, 0, 'o'},
      {"model", required_argument, 0, 'm'},             {"shard-size", required_argument, 0, OPT_SHARD},
      {"resume", no_argument, 0, OPT_RESUME},           {"heartbeat-ms", required_argument, 0, OPT_HB},
      {"liveness", required_argument, 0, OPT_LIVE},     {"max-attempts", required_argument, 0, OPT_ATTEMPTS},
      {"json", no_argument, 0, OPT_JSON},               {"workers", required_argument, 0, 'w'},
      {"batch", required_argument, 0, 'b'},             {"device", required_argument, 0, 'd'},
      {"labels", required_argument, 0, OPT_LABELS},     {"label-regex", required_argument, 0, OPT_LABEL_RE},
      {"crop", required_argument, 0, OPT_CROP},          FR_ALIGN_LONGOPTS,
      {"embedding-attn", no_argument, 0, OPT_ATTN},     {"test-embedding", required_argument, 0, OPT_TEST_EMB},
      {"help", no_argument, 0, 'h'},                    {0, 0, 0, 0}};
  long v;
  int c;
  optind = 1;
  *help = 0;
  fr_align_cli_init(&a->align);
  while ((c = getopt_long(argc, argv, is_run ? "o:m:w:b:d:h" : "o:m:h", longopts, NULL)) != -1) {
    int taken = fr_align_cli_option(&a->align, c, optarg, err);
    if (taken < 0)
      return FR_ERR_INVALID;
    if (taken && c == FR_OPT_MTCNN && !is_run)
      return fr_error_set(err, FR_ERR_INVALID, "--mtcnn: give it to `faceri worker` (the coordinator runs no network)");
    if (taken)
      continue;
    switch (c) {
    case OPT_BIND:
      if (is_run)
        return fr_error_set(err, FR_ERR_INVALID, "--bind is for `faceri coordinate`; run uses inproc://");
      a->co.bind = optarg;
      break;
    case 'o': a->co.output = optarg; break;
    case 'm': a->model_path = optarg; break;
    case OPT_SHARD:
      if (fr_parse_int("--shard-size", optarg, 1, 65536, &v, err))
        return FR_ERR_INVALID;
      a->co.shard_size = (int)v;
      break;
    case OPT_RESUME: a->co.resume = 1; break;
    case OPT_HB:
      if (fr_parse_int("--heartbeat-ms", optarg, 10, 600000, &v, err))
        return FR_ERR_INVALID;
      a->co.heartbeat_ms = (int)v;
      break;
    case OPT_LIVE:
      if (fr_parse_int("--liveness", optarg, 1, 1000, &v, err))
        return FR_ERR_INVALID;
      a->co.liveness = (int)v;
      break;
    case OPT_ATTEMPTS:
      if (fr_parse_int("--max-attempts", optarg, 1, 1000, &v, err))
        return FR_ERR_INVALID;
      a->co.max_attempts = (int)v;
      break;
    case OPT_JSON: a->json = 1; break;
    case OPT_LABELS: a->labels_csv = optarg; break;
    case OPT_LABEL_RE: a->label_regex = optarg; break;
    case 'w':
      if (!is_run || fr_parse_int("--workers", optarg, 1, 256, &a->workers, err))
        return fr_error_set(err, FR_ERR_INVALID, "--workers: %s", is_run ? err->message : "only for `faceri run`");
      break;
    case 'b':
      if (!is_run || fr_parse_int("--batch", optarg, 1, 4096, &a->batch, err))
        return fr_error_set(err, FR_ERR_INVALID, "--batch: %s", is_run ? err->message : "only for `faceri run`");
      break;
    case 'd': a->device = optarg; break;
    case OPT_CROP:
      if (!is_run)
        return fr_error_set(err, FR_ERR_INVALID, "--crop: only for `faceri run` (give it to `faceri worker`)");
      if (fr_parse_int_list("--crop", optarg, 4, a->crop, err))
        return FR_ERR_INVALID;
      if (a->crop[0] < 0 || a->crop[1] < 0 || a->crop[2] <= 0 || a->crop[3] <= 0 || a->crop[2] > 65536 ||
          a->crop[3] > 65536)
        return fr_error_set(err, FR_ERR_INVALID, "--crop %s: need X,Y >= 0 and W,H > 0", optarg);
      a->has_crop = 1;
      break;
    case OPT_ATTN: a->embedding_attn = 1; break;
    case OPT_TEST_EMB: {
      fr_test_embedding kind;
      if (fr_test_embedding_parse(optarg, &kind, err))
        return FR_ERR_INVALID;
      a->co.test_embedding = (int)kind;
      break;
    }
    case 'h': *help = 1; return FR_OK;
    default: return fr_error_set(err, FR_ERR_INVALID, "unknown option");
    }
  }
  if (fr_align_cli_check(&a->align, err))
    return FR_ERR_INVALID;
  a->co.align = a->align.align;
  a->co.align_min_score = a->align.align ? a->align.min_score : 0.0f;
  a->co.align_min_face = a->align.align ? a->align.min_face : 0;
  a->co.align_max_face = a->align.align ? a->align.max_face : 0;
  if (!is_run && !a->co.bind)
    return fr_error_set(err, FR_ERR_INVALID, "--bind ENDPOINT is required");
  if (!a->co.output)
    return fr_error_set(err, FR_ERR_INVALID, "-o OUT.h5 is required");
  if (optind >= argc)
    return fr_error_set(err, FR_ERR_INVALID, "no INPUT given");
  a->co.inputs = (const char *const *)(argv + optind);
  a->co.n_inputs = argc - optind;
  return FR_OK;
}

/* INPUT... -> paths (fr_input_list_expand); an error is a failed run (exit 1), as a missing input is. */
static int expand_inputs(common_args *a, fr_error *err)
{
  int rc = fr_input_list_expand(a->co.inputs, a->co.n_inputs, &a->inputs, err);
  if (rc)
    return rc;
  a->co.inputs = (const char *const *)a->inputs.paths;
  a->co.n_inputs = a->inputs.n;
  return FR_OK;
}

/* Reads the model's identity only: workers load and run it, the coordinator never touches a device. */
static int model_identity(common_args *a, fr_model *m, fr_error *err)
{
  if (!a->model_path)
    a->model_path = fr_model_default_path();
  int rc = fr_model_load(a->model_path, m, err);
  if (rc)
    return rc;
  a->co.model_sha256 = m->file_sha256;
  a->co.embedding_size = m->embedding_size;
  a->co.model_path = a->model_path;
  a->co.architecture = m->architecture;
  a->co.command_line = fr_command_line();
  return FR_OK;
}

/* --test-embedding / --embedding-attn against the model: /embedding's width, the
 * attention size workers must report. A model without the attention head is a usage
 * error (exit 2): nothing could ever satisfy the options. */
static int attention_options(const char *command, common_args *a, const fr_model *m)
{
  fr_error err = {0};
  if (fr_test_embedding_check(m, a->model_path, (fr_test_embedding)a->co.test_embedding, a->embedding_attn, &err)) {
    fprintf(stderr, "faceri %s: %s\n", command, err.message);
    return FR_EXIT_USAGE;
  }
  a->co.embedding_size = fr_test_embedding_dim((fr_test_embedding)a->co.test_embedding, m->embedding_size);
  a->co.attn_size = a->embedding_attn ? m->embedding_size : 0;
  return 0;
}

/* Reads --labels / --label-regex before anything starts. Returns 0, or the
 * exit code: a bad regex is a usage error, a bad or missing CSV a failure. */
static int make_labeler(const char *command, common_args *a)
{
  fr_error err = {0};
  if (!fr_labeler_create(a->labels_csv, a->label_regex, &a->co.labeler, &err))
    return 0;
  fprintf(stderr, "faceri %s: %s\n", command, err.message);
  return err.code == FR_ERR_INVALID ? FR_EXIT_USAGE : FR_EXIT_ERROR;
}

static int exit_code(int rc, const fr_coordinator_summary *s)
{
  if (rc || !s->complete)
    return FR_EXIT_ERROR;
  return s->failed || s->input_errors ? FR_EXIT_PARTIAL : FR_EXIT_OK;
}

static int finish(const char *command, common_args *a, int rc, fr_error *err, fr_coordinator_summary *sum)
{
  if (rc)
    fprintf(stderr, "faceri %s: %s\n", command, err->message);
  else if (!sum->complete)
    fprintf(stderr, "faceri %s: interrupted; %s stays resumable (--resume)\n", command, a->co.output);
  if (sum->input_errors)
    fprintf(stderr, "faceri %s: %d input(s) failed part-way, first: %s\n", command, sum->input_errors,
            sum->first_input_error);
  fr_coordinator_print_json(stdout, command, a->co.output, rc == FR_OK, sum);
  int code = exit_code(rc, sum);
  fr_coordinator_summary_free(sum);
  fr_labeler_destroy(a->co.labeler);
  a->co.labeler = NULL;
  fr_input_list_free(&a->inputs);
  return code;
}

static void install_signals(void)
{
  atomic_store(&g_stop, 0);
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
}

int fr_cmd_coordinate(int argc, char **argv)
{
  common_args a = {0};
  fr_error err = {0};
  int help;
  if (parse_args(argc, argv, 0, &a, &help, &err)) {
    fprintf(stderr, "faceri coordinate: %s\n\n%s", err.message, coordinate_usage);
    return FR_EXIT_USAGE;
  }
  if (help) {
    fputs(coordinate_usage, stdout);
    return FR_EXIT_OK;
  }
  int lcode = make_labeler("coordinate", &a);
  if (lcode)
    return lcode;
  fr_model model = {0};
  fr_coordinator_summary sum = {0};
  int rc = expand_inputs(&a, &err);
  if (!rc)
    rc = model_identity(&a, &model, &err);
  if (!rc && (lcode = attention_options("coordinate", &a, &model))) {
    fr_model_free(&model);
    fr_labeler_destroy(a.co.labeler);
    fr_input_list_free(&a.inputs);
    return lcode;
  }
  progress_view view = {.what = "coordinate", .tty = isatty(fileno(stderr))};
  if (!a.json) {
    a.co.on_progress = show_progress;
    a.co.progress_user = &view;
  }
  a.co.stop = &g_stop;
  install_signals();
  void *zctx = rc ? NULL : zmq_ctx_new();
  if (!rc && !zctx)
    rc = fr_error_set(&err, FR_ERR_IO, "cannot create a ZeroMQ context: %s", zmq_strerror(zmq_errno()));
  if (!rc)
    rc = fr_coordinator_run(&a.co, zctx, &sum, &err);
  if (view.tty && !a.json)
    fputc('\n', stderr);
  if (zctx)
    zmq_ctx_term(zctx);
  int code = finish("coordinate", &a, rc, &err, &sum);
  fr_model_free(&model);
  return code;
}

/* ---- faceri run: coordinator + in-process workers ---- */

typedef struct run_worker {
  pthread_t thread;
  int started;
  fr_worker_options opts;
  fr_worker_control control;
  fr_error err;
  int rc;
  char name[32], device[16];
  void *zctx;
  atomic_int *live; /* workers still running */
} run_worker;

static void *worker_thread(void *arg)
{
  run_worker *w = arg;
  w->rc = fr_worker_run(&w->opts, w->zctx, &w->err);
  if (w->rc)
    fr_log_error("%s: %s", w->name, w->err.message);
  /* No worker left: the coordinator would wait forever. */
  if (atomic_fetch_sub(w->live, 1) == 1)
    atomic_store(&g_stop, 1);
  return NULL;
}

/* One worker per Vulkan device, preferring real GPUs over CPU implementations. */
static int default_worker_count(void)
{
  fr_vk_device_info *devs = NULL;
  int n = 0;
  fr_error err = {0};
  if (fr_vk_list_devices(&devs, &n, &err) || n <= 0) {
    free(devs);
    return 1;
  }
  int gpus = 0;
  for (int i = 0; i < n; i++)
    gpus += devs[i].type != VK_PHYSICAL_DEVICE_TYPE_CPU;
  free(devs);
  return gpus > 0 ? gpus : 1;
}

int fr_cmd_run(int argc, char **argv)
{
  common_args a = {.batch = 32};
  fr_error err = {0};
  int help;
  if (parse_args(argc, argv, 1, &a, &help, &err)) {
    fprintf(stderr, "faceri run: %s\n\n%s", err.message, run_usage);
    return FR_EXIT_USAGE;
  }
  if (help) {
    fputs(run_usage, stdout);
    return FR_EXIT_OK;
  }
  int lcode = make_labeler("run", &a);
  if (lcode)
    return lcode;
  fr_model model = {0};
  fr_coordinator_summary sum = {0};
  int rc = expand_inputs(&a, &err);
  if (!rc)
    rc = model_identity(&a, &model, &err);
  if (!rc && (lcode = attention_options("run", &a, &model))) {
    fr_model_free(&model);
    fr_labeler_destroy(a.co.labeler);
    fr_input_list_free(&a.inputs);
    return lcode;
  }
  int n_workers = a.workers > 0 ? (int)a.workers : default_worker_count();
  char endpoint[64];
  snprintf(endpoint, sizeof(endpoint), "inproc://faceri-run-%ld", (long)getpid());
  a.co.bind = endpoint;
  progress_view view = {.what = "run", .tty = isatty(fileno(stderr))};
  if (!a.json) {
    a.co.on_progress = show_progress;
    a.co.progress_user = &view;
  }
  a.co.stop = &g_stop;
  install_signals();
  void *zctx = rc ? NULL : zmq_ctx_new();
  if (!rc && !zctx)
    rc = fr_error_set(&err, FR_ERR_IO, "cannot create a ZeroMQ context: %s", zmq_strerror(zmq_errno()));
  run_worker *workers = calloc((size_t)n_workers, sizeof(*workers));
  if (!rc && !workers)
    rc = fr_error_set(&err, FR_ERR_NOMEM, "out of memory for %d workers", n_workers);
  atomic_int live;
  atomic_init(&live, 0);
  /* Workers connect before the coordinator binds: ZeroMQ >= 4 queues inproc
   * connects until the bind, and the coordinator only waits for READYs. */
  for (int i = 0; i < n_workers && !rc; i++) {
    run_worker *w = &workers[i];
    snprintf(w->name, sizeof(w->name), "run-worker-%d", i);
    if (!a.device && a.workers <= 0 && n_workers > 1)
      snprintf(w->device, sizeof(w->device), "%d", i);
    atomic_init(&w->control.stop, 0);
    w->zctx = zctx;
    w->live = &live;
    w->opts = (fr_worker_options){.endpoint = endpoint, .model_path = a.model_path,
                                  .device = a.device ? a.device : (w->device[0] ? w->device : NULL),
                                  .batch = (int)a.batch, .heartbeat_ms = a.co.heartbeat_ms,
                                  .liveness = a.co.liveness, .name = w->name, .control = &w->control,
                                  .has_crop = a.has_crop, .crop_x = (int)a.crop[0], .crop_y = (int)a.crop[1],
                                  .crop_w = (int)a.crop[2], .crop_h = (int)a.crop[3],
                                  .align = a.align.align, .align_min_score = a.co.align_min_score,
                                  .align_min_face = a.co.align_min_face, .align_max_face = a.co.align_max_face,
                                  .mtcnn_dir = a.align.mtcnn_dir,
                                  .embedding_attn = a.embedding_attn, .test_embedding = a.co.test_embedding};
    atomic_fetch_add(&live, 1);
    if (pthread_create(&w->thread, NULL, worker_thread, w) != 0) {
      atomic_fetch_sub(&live, 1);
      rc = fr_error_set(&err, FR_ERR_INTERNAL, "cannot start worker thread %d", i);
    } else {
      w->started = 1;
    }
  }
  if (!rc)
    rc = fr_coordinator_run(&a.co, zctx, &sum, &err);
  if (view.tty && !a.json)
    fputc('\n', stderr);
  /* Normally the workers got STOP 0; tell them directly anyway: on an error or
   * an interruption, and when the run ended before a worker had even sent
   * READY (inputs with nothing to embed), which would otherwise wait out its
   * reconnect limit for a coordinator that is gone. */
  for (int i = 0; i < n_workers && workers; i++)
    if (workers[i].started)
      fr_worker_request_stop(&workers[i].control);
  int worker_errors = 0;
  for (int i = 0; i < n_workers && workers; i++)
    if (workers[i].started) {
      pthread_join(workers[i].thread, NULL);
      worker_errors += workers[i].rc != FR_OK;
    }
  if (!rc && !sum.complete && worker_errors) {
    for (int i = 0; i < n_workers; i++)
      if (workers[i].rc) {
        err = workers[i].err;
        rc = err.code ? (int)err.code : FR_ERR_INTERNAL;
        fr_error_prefix(&err, "every worker stopped; %s", workers[i].name);
        break;
      }
  }
  free(workers);
  if (zctx)
    zmq_ctx_term(zctx);
  int code = finish("run", &a, rc, &err, &sum);
  fr_model_free(&model);
  return code;
}
