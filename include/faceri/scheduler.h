#ifndef FACERI_SCHEDULER_H
#define FACERI_SCHEDULER_H
/* The coordinator: streams the inputs into shards (contiguous ranges of
 * global item indices), leases them to workers over a ZeroMQ ROUTER
 * (docs/PROTOCOL.md), and commits every shard's rows to the results file
 * (docs/FORMAT.md) as its RESULT arrives. It is the only writer of the file.
 *
 * Guarantees: every item ends as exactly one row at its global index; a
 * worker that dies or goes silent loses its leases (re-queued, attempt + 1);
 * a shard that fails max_attempts times is committed as failed and the run
 * goes on; late, duplicate and malformed messages are logged and dropped.
 * Memory is bounded: at most queue_shards planned shards plus the leased
 * ones are held, whatever the size of the inputs. */
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "faceri/error.h"
#include "faceri/labels.h"

#define FR_COORD_DEFAULT_SHARD_SIZE 64
#define FR_COORD_DEFAULT_HEARTBEAT_MS 1000
#define FR_COORD_DEFAULT_LIVENESS 5
#define FR_COORD_DEFAULT_MAX_ATTEMPTS 3
#define FR_COORD_DEFAULT_QUEUE_SHARDS 16

typedef struct fr_coordinator_progress {
  int64_t items_done;  /* rows committed in this run (not counting resumed ones) */
  int64_t items_total; /* known once the inputs are exhausted, else -1 */
  int64_t items_failed;
  int64_t items_resumed; /* skipped: already committed by an interrupted run */
  int live_workers;
  double seconds;
} fr_coordinator_progress;

typedef struct fr_coordinator_options {
  const char *bind;                 /* ZeroMQ endpoint, e.g. tcp://\*:5555 or inproc://faceri */
  const char *const *inputs;        /* files, folders, archives (fr_input_source) */
  int n_inputs;
  const char *output;               /* results file */
  int resume;                       /* continue an interrupted run into output */
  int shard_size;                   /* 0: FR_COORD_DEFAULT_SHARD_SIZE */
  int heartbeat_ms;                 /* 0: default */
  int liveness;                     /* heartbeats a worker may miss before it is dead; 0: default */
  int max_attempts;                 /* 0: default */
  int queue_shards;                 /* planned-but-unleased shards held at most; 0: default */
  size_t max_item_bytes;            /* larger files are failed items; 0: FR_INPUT_DEFAULT_MAX_MEMBER_BYTES */
  fr_labeler *labeler;              /* --labels / --label-regex; NULL: folder labels (used by this thread only) */
  /* The run's model: workers whose READY differs are refused (STOP code 1). */
  const char *model_sha256;         /* 64 hex digits */
  int embedding_size;               /* D */
  /* The run's --align settings: workers whose READY differs are refused too,
   * and the results file records them (align_min_score etc. only with align). */
  int align;
  float align_min_score;
  int align_min_face, align_max_face;
  const char *model_path;           /* for the file's attributes */
  const char *architecture;
  const char *command_line;
  /* Called from the coordinator's thread about every 200 ms and once at the end. */
  void (*on_progress)(const fr_coordinator_progress *p, void *user);
  void *progress_user;
  /* Set (from any thread or a signal handler) to stop: workers get STOP code
   * 2 and the file stays resumable. NULL: not used. */
  atomic_int *stop;
  /* Testing: stop as above right after this many commits (0: never). */
  int64_t stop_after_commits;
  /* --test-embedding (fr_test_embedding; embedding_size is then its width) and
   * --embedding-attn (attn_size = D, else 0): workers whose READY differs are refused. */
  int test_embedding;
  int attn_size;
} fr_coordinator_options;

typedef struct fr_coordinator_worker_share {
  char name[128];   /* as the worker named itself (escaped) */
  char device[128];
  int64_t shards;   /* shards it committed */
  int64_t items;
} fr_coordinator_worker_share;

typedef struct fr_coordinator_summary {
  int complete;         /* every item has its row (the file's state is "complete") */
  int64_t items;        /* rows written in this run */
  int64_t ok, failed, skipped;
  int64_t aligned, fallbacks; /* rows written aligned (1) and with the fallback resize (0) */
  int64_t resumed;      /* items kept from the interrupted run */
  int64_t shards_committed, shards_failed, leases_lost, messages_dropped;
  int input_errors;     /* inputs that failed part-way (truncated archive...) */
  char first_input_error[1024];
  double seconds;
  /* Seconds from the start until the first valid READY: the workers' set-up
   * (model load, device pipelines) that `faceri run` includes in `seconds`;
   * 0 when no worker was ever ready. */
  double first_ready_seconds;
  int n_workers;        /* workers that ever sent a valid READY */
  int refused_workers;
  fr_coordinator_worker_share *workers; /* n_workers entries; free with fr_coordinator_summary_free */
  int test_embedding, attn_size; /* the run's options, for the JSON summary */
} fr_coordinator_summary;

/* Runs the whole coordination: binds (on zmq_ctx, a ZeroMQ context; inproc
 * workers must share it), plans, leases, commits, and when every shard is
 * committed sends STOP 0 to every worker and closes the file as complete.
 * Returns FR_OK when the run finished or was stopped on request
 * (summary->complete tells which), else an error with err set (the file is
 * left resumable). summary may be NULL. */
int fr_coordinator_run(const fr_coordinator_options *opts, void *zmq_ctx, fr_coordinator_summary *summary,
                       fr_error *err);
void fr_coordinator_summary_free(fr_coordinator_summary *summary);

/* Prints the JSON summary line (for the CLI). */
void fr_coordinator_print_json(FILE *out, const char *command, const char *output, int status_ok,
                               const fr_coordinator_summary *s);

/* The commands (wired in coordinator/main.c). */
int fr_cmd_coordinate(int argc, char **argv);
int fr_cmd_run(int argc, char **argv);

#endif
