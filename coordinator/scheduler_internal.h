#ifndef FACERI_SCHEDULER_INTERNAL_H
#define FACERI_SCHEDULER_INTERNAL_H
/* Pieces of the coordinator, split by what they touch: the planner reads the
 * inputs (scheduler_plan.c), the writer owns the results file
 * (scheduler_commit.c), the loop owns the socket and leases (scheduler.c).
 * Item statuses here are plain ints with the values of fr_item_status
 * (0 ok, 1 failed, 2 skipped). */
#include <stddef.h>
#include <stdint.h>

#include "faceri/error.h"
#include "faceri/scheduler.h"

#define SCHED_TO_WORKER (-1) /* item status: the worker decides */

typedef struct sched_item {
  int64_t index;
  char *key;
  size_t key_len;
  char *label;
  uint8_t *bytes; /* NULL once not needed (or never read) */
  size_t size;
  int status;     /* SCHED_TO_WORKER, or 1/2 decided by the coordinator */
  char *error;    /* coordinator's reason for 1/2; NULL otherwise */
} sched_item;

typedef struct sched_shard {
  int64_t id;     /* = first: unique within and across resumed runs */
  int64_t first;
  int count;
  sched_item *items;
  int n_send;           /* items with status SCHED_TO_WORKER */
  uint32_t attempt;     /* leases so far = the current lease's attempt number */
  int failures;         /* leases that ended in FAILED or a lost worker */
  int worker;           /* worker slot holding the lease, -1 when queued */
  double lease_time;    /* when the current lease started */
  double first_lease_time;
  char *reason;         /* last failure */
  struct sched_shard *next;
} sched_shard;

void sched_shard_free(sched_shard *s);

/* ---- planner ---- */
typedef struct sched_planner sched_planner;
typedef int (*sched_is_committed_fn)(void *ctx, int64_t index);
int sched_planner_open(const char *const *inputs, int n, int shard_size, size_t max_item_bytes,
                       fr_labeler *labeler, sched_is_committed_fn committed, void *ctx, sched_planner **out,
                       fr_error *err);
/* 1 with *out a new shard, 0 when the inputs are exhausted, -1 on a fatal error
 * (out of memory). An input failing part-way is logged, counted, and becomes a
 * failed row (fr_input_item.input_failed). */
int sched_planner_next(sched_planner *p, sched_shard **out, fr_error *err);
int64_t sched_planner_items_seen(const sched_planner *p);
int64_t sched_planner_items_resumed(const sched_planner *p);
int sched_planner_input_errors(const sched_planner *p, char *first, size_t first_size);
void sched_planner_close(sched_planner *p);

/* ---- writer ---- */
typedef struct sched_writer sched_writer;

/* A worker's answer for one sent item (status 0/1/2). */
typedef struct sched_answer {
  int status;
  int width, height;
  float norm, ers, ri;
  int aligned;       /* 1, 0, -1 (not attempted) */
  float align_score; /* NaN when not attempted */
  const float *embedding; /* D floats, or NULL */
  const char *error;
  const float *attn;      /* attn_size floats, or NULL */
} sched_answer;

int sched_writer_open(const fr_coordinator_options *opts, sched_writer **out, fr_error *err);
int sched_writer_is_committed(void *writer, int64_t index); /* sched_is_committed_fn */
/* Writes the shard's rows and commits it. answers: one per sent item in
 * order; NULL with fail_reason set: the shard failed for good. */
int sched_writer_commit(sched_writer *w, const sched_shard *s, const sched_answer *answers, const char *worker,
                        const char *device, const char *fail_reason, float seconds, fr_coordinator_summary *sum,
                        fr_error *err);
/* Registers the shard's labels in input order, so /labels/name and /items/label are
 * the same whichever shard commits first (called as each shard is planned). */
int sched_writer_register_labels(sched_writer *w, const sched_shard *s, fr_error *err);
int sched_writer_close(sched_writer *w, int complete, fr_error *err);

#endif
