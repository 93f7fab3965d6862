/* faceri worker: one GPU node's side of a fleet run (docs/PROTOCOL.md). */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "faceri/cli_util.h"
#include "faceri/commands.h"
#include "faceri/log.h"
#include "faceri/test_embedding.h"
#include "faceri/worker_loop.h"

static const char usage[] =
    "usage: faceri worker --connect ENDPOINT [OPTIONS]\n"
    "\n"
    "Connects to a coordinator (faceri coordinate --bind ...) and embeds the shards it\n"
    "sends until it says the run is complete. Reconnects when the coordinator falls\n"
    "silent; its shards are then re-queued by the coordinator. Writes no files.\n"
    "\n"
    "options:\n"
    "  -c, --connect ENDPOINT  coordinator: tcp://HOST:PORT or ipc://PATH (required)\n"
    "  -m, --model FILE        model file (default: $FACERI_MODEL or models/mobilefacenet.h5);\n"
    "                          must be the coordinator's (checked by SHA-256)\n"
    "  -d, --device SEL        Vulkan device index or name substring (default: best)\n"
    "  -b, --batch B           images per device batch, gathered across shards (default 32)\n"
    "  -k, --credit K          shards held at once (default 2)\n"
    "      --decode-threads N  image decoding threads (default: CPU cores)\n"
    "      --crop X,Y,W,H      crop every image to this box before resizing\n"
    FR_ALIGN_USAGE
    "                          (the --align settings must match the coordinator's)\n"
    "      --embedding-attn    also send L2-normalised v_attn (model with an attention head)\n"
    "      --test-embedding K  v (default), attn or concat: what the embedding rows hold;\n"
    "                          both must match the coordinator's options (docs/RI_HEADS.md)\n"
    "      --heartbeat-ms MS   heartbeat interval (default 1000)\n"
    "      --liveness N        missed heartbeats before reconnecting (default 5)\n"
    "      --max-reconnect-s S give up after S seconds without the coordinator (default 60)\n"
    "      --name NAME         worker name shown by the coordinator (default HOST:PID)\n"
    "      --dry-run           skip decoding and the network: every item ok with a NaN\n"
    "                          embedding (coordinator scheduling benchmarks)\n"
    "  -h, --help              this text\n"
    "\n"
    "Exit codes: 0 the run completed (or SIGINT/SIGTERM), 1 error (refused, coordinator\n"
    "gone, device lost), 2 usage.\n";

static fr_worker_control control;

static void on_signal(int sig)
{
  (void)sig;
  fr_worker_request_stop(&control);
}

int fr_cmd_worker(int argc, char **argv)
{
  fr_worker_options o = {0};
  fr_error err = {0};
  long v, crop[4];
  enum { OPT_DECODE = 256, OPT_HEARTBEAT, OPT_LIVENESS, OPT_RECONNECT, OPT_NAME, OPT_DRY, OPT_CROP, OPT_ATTN, OPT_TEST_EMB };
  static const struct option longopts[] = {
      {"connect", required_argument, 0, 'c'},          {"model", required_argument, 0, 'm'},
      {"device", required_argument, 0, 'd'},           {"batch", required_argument, 0, 'b'},
      {"credit", required_argument, 0, 'k'},           {"decode-threads", required_argument, 0, OPT_DECODE},
      {"heartbeat-ms", required_argument, 0, OPT_HEARTBEAT}, {"liveness", required_argument, 0, OPT_LIVENESS},
      {"max-reconnect-s", required_argument, 0, OPT_RECONNECT}, {"name", required_argument, 0, OPT_NAME},
      {"dry-run", no_argument, 0, OPT_DRY},            {"crop", required_argument, 0, OPT_CROP},
      FR_ALIGN_LONGOPTS,
      {"embedding-attn", no_argument, 0, OPT_ATTN},    {"test-embedding", required_argument, 0, OPT_TEST_EMB},
      {"help", no_argument, 0, 'h'},                   {0, 0, 0, 0}};
  int c;
  optind = 1;
  fr_align_cli al;
  fr_align_cli_init(&al);
  while ((c = getopt_long(argc, argv, "c:m:d:b:k:h", longopts, NULL)) != -1) {
    int taken = fr_align_cli_option(&al, c, optarg, &err);
    if (taken < 0)
      goto usage_error;
    if (taken)
      continue;
    switch (c) {
    case 'c': o.endpoint = optarg; break;
    case 'm': o.model_path = optarg; break;
    case 'd': o.device = optarg; break;
    case 'b':
      if (fr_parse_int("--batch", optarg, 1, 4096, &v, &err))
        goto usage_error;
      o.batch = (int)v;
      break;
    case 'k':
      if (fr_parse_int("--credit", optarg, 1, 1024, &v, &err))
        goto usage_error;
      o.credit = (int)v;
      break;
    case OPT_DECODE:
      if (fr_parse_int("--decode-threads", optarg, 1, 1024, &v, &err))
        goto usage_error;
      o.decode_threads = (int)v;
      break;
    case OPT_HEARTBEAT:
      if (fr_parse_int("--heartbeat-ms", optarg, 10, 3600000, &v, &err))
        goto usage_error;
      o.heartbeat_ms = (int)v;
      break;
    case OPT_LIVENESS:
      if (fr_parse_int("--liveness", optarg, 1, 1000, &v, &err))
        goto usage_error;
      o.liveness = (int)v;
      break;
    case OPT_RECONNECT:
      if (fr_parse_int("--max-reconnect-s", optarg, 1, 86400 * 7, &v, &err))
        goto usage_error;
      o.max_reconnect_s = (int)v;
      break;
    case OPT_NAME: o.name = optarg; break;
    case OPT_DRY: o.dry_run = 1; break;
    case OPT_CROP:
      if (fr_parse_int_list("--crop", optarg, 4, crop, &err))
        goto usage_error;
      if (crop[0] < 0 || crop[1] < 0 || crop[2] <= 0 || crop[3] <= 0 || crop[2] > 65536 || crop[3] > 65536) {
        fr_error_set(&err, FR_ERR_INVALID, "--crop %s: need X,Y >= 0 and W,H > 0", optarg);
        goto usage_error;
      }
      o.has_crop = 1;
      o.crop_x = (int)crop[0];
      o.crop_y = (int)crop[1];
      o.crop_w = (int)crop[2];
      o.crop_h = (int)crop[3];
      break;
    case OPT_ATTN: o.embedding_attn = 1; break;
    case OPT_TEST_EMB: {
      fr_test_embedding kind;
      if (fr_test_embedding_parse(optarg, &kind, &err))
        goto usage_error;
      o.test_embedding = (int)kind;
      break;
    }
    case 'h': fputs(usage, stdout); return FR_EXIT_OK;
    default: fputs(usage, stderr); return FR_EXIT_USAGE;
    }
  }
  if (fr_align_cli_check(&al, &err))
    goto usage_error;
  o.align = al.align;
  o.align_min_score = al.min_score;
  o.align_min_face = al.min_face;
  o.align_max_face = al.max_face;
  o.mtcnn_dir = al.mtcnn_dir;
  if (!o.endpoint) {
    fr_error_set(&err, FR_ERR_INVALID, "--connect ENDPOINT is required");
    goto usage_error;
  }
  if (optind != argc) {
    fr_error_set(&err, FR_ERR_INVALID, "unexpected argument \"%s\"", argv[optind]);
    goto usage_error;
  }
  if (!strncmp(o.endpoint, "inproc://", 9)) {
    fr_error_set(&err, FR_ERR_INVALID, "--connect %s: inproc endpoints only work inside one process", o.endpoint);
    goto usage_error;
  }

  atomic_store(&control.stop, 0);
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  if (sigaction(SIGINT, &sa, NULL) || sigaction(SIGTERM, &sa, NULL))
    fr_warn("faceri worker: cannot install signal handlers; SIGINT/SIGTERM end the process at once");
  fr_worker_stats stats = {0};
  o.control = &control;
  o.stats = &stats;
  o.validation = 0; /* as $FACERI_VALIDATION */
  int rc = fr_worker_run(&o, NULL, &err);
  fprintf(stderr,
          "faceri worker: %s; %llu shards answered (%llu items), %llu failed, %llu images in %llu batches, "
          "%.2f s on the device, %llu reconnects, %llu aligned, %llu fallbacks\n",
          rc ? err.message : "done", (unsigned long long)stats.shards_answered, (unsigned long long)stats.items,
          (unsigned long long)stats.shards_failed, (unsigned long long)stats.images,
          (unsigned long long)stats.batches, stats.device_seconds, (unsigned long long)stats.reconnects,
          (unsigned long long)stats.aligned, (unsigned long long)stats.fallbacks);
  return rc ? FR_EXIT_ERROR : FR_EXIT_OK;

usage_error:
  fprintf(stderr, "faceri worker: %s\n\n%s", err.message, usage);
  return FR_EXIT_USAGE;
}
