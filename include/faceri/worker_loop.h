#ifndef FACERI_WORKER_LOOP_H
#define FACERI_WORKER_LOOP_H
/* The faceri worker: a ZeroMQ DEALER that connects to a coordinator, announces
 * itself (READY), and answers every SHARD with one RESULT (or FAILED), per
 * docs/PROTOCOL.md.
 *
 * Threads: the calling thread owns the socket and never waits on the device,
 * so heartbeats flow however long a batch runs; a prep thread gathers images
 * from every held shard into batches and decodes them on a pool; a device
 * thread runs the engine. Two batch buffers let the next batch decode while
 * the current one runs. When the coordinator falls silent for `liveness`
 * heartbeat intervals the worker drops its shards (the coordinator re-queues
 * them), reconnects with backoff and sends READY again.
 *
 * The worker never writes files and never uses keys as paths: keys are data. */
#include <stdatomic.h>
#include <stdint.h>

#include "faceri/error.h"

/* Lets another thread (or a signal handler) ask a running worker to leave. */
typedef struct fr_worker_control {
  atomic_int stop;
} fr_worker_control;

/* Async-signal-safe: fr_worker_run returns FR_OK soon after (within ~50 ms
 * plus the current device batch), dropping the shards it holds. */
void fr_worker_request_stop(fr_worker_control *control);

/* Filled when fr_worker_run returns (whatever it returns). */
typedef struct fr_worker_stats {
  uint64_t shards_answered; /* RESULT messages sent */
  uint64_t shards_failed;   /* FAILED messages sent */
  uint64_t items;           /* items in RESULTs sent */
  uint64_t images;          /* images run through the network */
  uint64_t batches;         /* device batches */
  uint64_t heartbeats_sent, heartbeats_received;
  uint64_t malformed;       /* incoming messages dropped as malformed or unexpected */
  uint64_t reconnects;
  int stop_code;            /* code of the STOP that ended the run, -1 if none */
  uint64_t validation_messages; /* Vulkan validation warnings/errors (0 in dry-run) */
  double device_seconds;    /* wall time spent in fr_engine_run */
  uint64_t aligned, fallbacks; /* --align: images aligned, images given the fallback resize */
} fr_worker_stats;

typedef struct fr_worker_options {
  const char *endpoint;   /* required: tcp://host:port, ipc://path, inproc://name */
  const char *model_path; /* NULL: fr_model_default_path() */
  const char *device;     /* Vulkan device index or name substring; NULL: best */
  int batch;              /* images per device batch; 0: 32 */
  int credit;             /* shards held at once (READY credit); 0: 2 */
  int decode_threads;     /* 0: online CPU cores */
  int heartbeat_ms;       /* 0: 1000 */
  int liveness;           /* missed heartbeat intervals before reconnecting; 0: 5 */
  int max_reconnect_s;    /* give up after this long without hearing the coordinator; 0: 60 */
  const char *name;       /* worker name in READY; NULL: hostname:pid */
  int dry_run;            /* 1: no decode, no network: every item status 0, NaN embedding */
  int validation;         /* Vulkan validation: 0 as $FACERI_VALIDATION, 1 on, -1 off */
  int has_crop;           /* crop every image to (crop_x, crop_y, crop_w, crop_h) first;
                           * with align, only the fallback resize is cropped */
  int crop_x, crop_y, crop_w, crop_h;
  /* --align: MTCNN-align every image onto the ArcFace template on the device
   * (docs/DETECTION.md); the settings travel in READY and must match the run's. */
  int align;
  float align_min_score;  /* used only with align (CLI default 0.9) */
  int align_min_face, align_max_face; /* --face-size MIN:MAX; 0: the aligner's default */
  const char *mtcnn_dir;  /* pnet/rnet/onet.tflite; NULL: fr_mtcnn_default_dir() */
  int embedding_attn;     /* 1: RESULTs carry L2-normalised v_attn (the model needs the attention head) */
  int test_embedding;     /* fr_test_embedding: what RESULT embeddings hold (0: v) */
  fr_worker_control *control; /* optional: lets another thread stop the worker */
  fr_worker_stats *stats;     /* optional: filled on return */
} fr_worker_options;

/* Runs the worker until a STOP, a stop request or a fatal error. zmq_ctx: the
 * caller's ZeroMQ context (required for inproc:// endpoints, which only
 * connect within one context); NULL makes a private one.
 * Returns FR_OK after STOP code 0 or a stop request; otherwise an error with
 * a message: STOP code 1 (refused) gives FR_ERR_INVALID, other STOP codes
 * FR_ERR_IO, a coordinator silent past max_reconnect_s FR_ERR_TIMEOUT, a lost
 * device FR_ERR_DEVICE_LOST (after FAILED for every held shard), and setup
 * failures (model, device, socket) their own codes. */
int fr_worker_run(const fr_worker_options *opts, void *zmq_ctx, fr_error *err);

/* `faceri worker --connect ENDPOINT ...`: exit 0 ok, 1 error, 2 usage. */
int fr_cmd_worker(int argc, char **argv);

#endif
