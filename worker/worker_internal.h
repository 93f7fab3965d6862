#ifndef FACERI_WORKER_INTERNAL_H
#define FACERI_WORKER_INTERNAL_H
/* Inside the worker: shard jobs and the decode + device pipeline that turns
 * them into results. The socket side (worker_loop.c) owns the jobs' frames and
 * sends the answers; the pipeline (worker_pipeline.c) never touches a socket. */
#include <pthread.h>
#include <stdint.h>
#include <zmq.h>

#include "faceri/align.h"
#include "faceri/engine.h"
#include "faceri/image.h"
#include "faceri/preprocess.h"
#include "faceri/protocol.h"

/* One received SHARD until its answer is sent. Item images point into parts. */
typedef struct fr_shard_job {
  struct fr_shard_job *next;
  fr_msg msg;          /* decoded SHARD */
  zmq_msg_t *parts;    /* the received frames (they hold the image bytes) */
  size_t n_parts;
  uint64_t generation; /* connection it came on: answers for an older one are dropped */
  uint32_t next_item;  /* first item the prep thread has not taken yet */
  uint32_t done;       /* items with a final result */
  int cancelled;       /* dropped on reconnect or stop: finish without work, send nothing */
  int failed;          /* the whole shard failed (engine error): answer FAILED with reason */
  char reason[1100];
  fr_result_item *res; /* msg.shard.count results, in item order */
  char **errors;       /* per item error text (malloc'd) or NULL */
  float *emb;          /* count x out_dim (the test embedding), NaN rows until computed */
  double received_at;
  float *attn;         /* count x attn_dim (L2-normalised v_attn) or NULL: --embedding-attn */
} fr_shard_job;

typedef struct wk_slot {
  fr_shard_job *job;
  uint32_t item;
  int ok, width, height;
  char *error; /* decode failure, malloc'd */
  fr_image img; /* with an aligner: the decoded image, aligned on the device thread */
  int8_t aligned;
  float align_score;
} wk_slot;

typedef struct wk_batch {
  float *input; /* batch x per_image */
  float *emb;   /* batch x D */
  float *norms;
  float *ri;
  wk_slot *slots;
  float *vattn; /* batch x D, the engine's v_attn; only when the pipeline wants it */
  int n;
  int decode_next, decode_done; /* pool progress, under the pool lock */
} wk_batch;

#define WK_BUFFERS 2 /* one decoding while the other runs on the device */

typedef struct wk_pipeline {
  /* configuration */
  fr_engine *engine;
  fr_preprocess pp;
  int batch, dim;
  size_t per_image;
  int notify_fd; /* written (one byte) whenever a job finishes or the pipeline fails */
  const float *ui_centre; /* the model's UI centre [dim] or NULL; set before the first submit */
  /* --align (set before the first submit): decode helpers only decode, and the
   * device thread aligns each slot right before the engine runs, because the
   * aligner submits to the same Vulkan queue, which has no lock. NULL: no align. */
  fr_aligner *aligner;
  fr_align_options align_opts;
  /* --test-embedding / --embedding-attn (wk_pipeline_set_attention): out_dim floats
   * per job->emb row, attn_dim per job->attn row; want_vattn: run for v_attn. */
  int test_embedding, out_dim, attn_dim, want_vattn;

  pthread_mutex_t mu; /* everything below up to the pool */
  pthread_cond_t prep_cv, dev_cv;
  int stop;
  fr_shard_job *pending; /* received, results incomplete (FIFO) */
  fr_shard_job *done;    /* complete, waiting for the socket thread (FIFO) */
  wk_batch buf[WK_BUFFERS];
  int free_list[WK_BUFFERS], n_free;
  int ready_list[WK_BUFFERS], n_ready;
  int fatal;
  fr_error fatal_err;
  uint64_t images, batches, full_batches;
  double device_seconds;
  /* Where end-to-end time goes (logged when the worker ends): the device
   * thread waiting for a decoded batch once it has run one, and the prep
   * thread decoding (wall time; the pool shares it). */
  double device_wait_seconds, decode_seconds;
  double align_seconds; /* the device thread aligning (detection + warp), --align only */
  uint64_t aligned, fallbacks;

  /* decode pool: helpers claim slots of `task` while the prep thread does too */
  pthread_mutex_t pool_mu;
  pthread_cond_t pool_cv, pool_done_cv;
  wk_batch *task;
  uint64_t task_seq;
  int pool_stop;
  int n_helpers;
  pthread_t *helpers;

  pthread_t prep_thread, dev_thread;
  int started;
} wk_pipeline;

/* Starts the prep, device and decode threads (decode_threads in all, the prep
 * thread being one of them). */
int wk_pipeline_start(wk_pipeline *p, fr_engine *engine, const fr_preprocess *pp, int batch, int dim,
                      int decode_threads, int notify_fd, fr_error *err);
/* After start, before the first submit: what job->emb holds (fr_test_embedding) and
 * whether jobs carry attn (attn_dim = dim, else 0). Allocates the v_attn buffers. */
int wk_pipeline_set_attention(wk_pipeline *p, int test_embedding, int attn_dim, fr_error *err);
void wk_pipeline_submit(wk_pipeline *p, fr_shard_job *job);
/* Completed jobs in completion order (the caller frees them). */
fr_shard_job *wk_pipeline_take_done(wk_pipeline *p);
/* Marks every unfinished job cancelled: its remaining items are not processed. */
void wk_pipeline_cancel_all(wk_pipeline *p);
/* 1 (and the error) once the device is lost. */
int wk_pipeline_fatal(wk_pipeline *p, fr_error *err);
/* Stops and joins every thread; returns every job still held (to free). */
fr_shard_job *wk_pipeline_stop(wk_pipeline *p);

/* Sets a finished job's item result (status, error text). */
void wk_job_set_item(fr_shard_job *job, uint32_t i, int status, int width, int height, char *error);

double wk_now(void); /* monotonic seconds */

#endif
