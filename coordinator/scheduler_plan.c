/* The shard planner: streams items from the inputs into shards of contiguous
 * global indices. Only what the caller holds is in memory: the planner keeps
 * no shard after handing it out. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "faceri/input_source.h"
#include "faceri/labels.h"
#include "faceri/log.h"
#include "faceri/protocol.h"
#include "scheduler_internal.h"

struct sched_planner {
  fr_input_source *src;
  int shard_size;
  fr_labeler *labeler;
  sched_is_committed_fn committed;
  void *ctx;
  int64_t next_index;
  int64_t resumed;
  int input_errors;
  char first_error[1024];
  int exhausted;
};

void sched_shard_free(sched_shard *s)
{
  if (!s)
    return;
  for (int i = 0; i < s->count; i++) {
    free(s->items[i].key);
    free(s->items[i].label);
    free(s->items[i].bytes);
    free(s->items[i].error);
  }
  free(s->items);
  free(s->reason);
  free(s);
}

int sched_planner_open(const char *const *inputs, int n, int shard_size, size_t max_item_bytes,
                       fr_labeler *labeler, sched_is_committed_fn committed, void *ctx, sched_planner **out,
                       fr_error *err)
{
  *out = NULL;
  sched_planner *p = calloc(1, sizeof(*p));
  if (!p)
    return fr_error_set(err, FR_ERR_NOMEM, "out of memory opening the inputs");
  int rc = fr_input_source_open(inputs, n, &p->src, err);
  if (rc) {
    free(p);
    return rc;
  }
  if (max_item_bytes > 0)
    fr_input_source_set_max_member_bytes(p->src, max_item_bytes);
  p->shard_size = shard_size;
  p->labeler = labeler;
  p->committed = committed;
  p->ctx = ctx;
  *out = p;
  return FR_OK;
}

static char *printf_dup(const char *fmt, const char *a)
{
  size_t n = strlen(fmt) + strlen(a) + 1;
  char *s = malloc(n);
  if (s)
    snprintf(s, n, fmt, a);
  return s;
}

/* Copies one input item into the shard; decides locally what a worker need not see. */
static int add_item(sched_shard *s, const fr_input_item *in, const char *label, int64_t index, fr_error *err)
{
  sched_item *it = &s->items[s->count];
  memset(it, 0, sizeof(*it));
  it->index = index;
  it->key_len = strlen(in->key);
  it->key = strdup(in->key);
  it->label = strdup(label);
  if (!it->key || !it->label)
    goto nomem;
  s->count++; /* from here sched_shard_free releases the item */
  if (in->status != FR_OK) {
    it->status = 1;
    it->error = strdup(in->error && *in->error ? in->error : "unreadable");
  } else if (in->size == 0) {
    /* An empty file is a broken image more often than a stray note: failed, as embed and the worker say. */
    it->status = 1;
    it->error = printf_dup("%s: empty file (0 bytes)", in->key);
  } else if (!in->is_image) {
    it->status = 2;
    it->error = printf_dup("%s: not an image (JPEG, PNG, PGM/PPM), skipped", in->key);
  } else if (it->key_len > FR_PROTO_MAX_STRING || in->size > FR_PROTO_MAX_IMAGE) {
    it->status = 1;
    it->error = printf_dup("%s: key or image too large to send to a worker", in->key);
  } else {
    it->status = SCHED_TO_WORKER;
    it->size = in->size;
    it->bytes = malloc(in->size ? in->size : 1);
    if (!it->bytes)
      goto nomem;
    memcpy(it->bytes, in->bytes, in->size);
    s->n_send++;
    return FR_OK;
  }
  if (!it->error)
    goto nomem;
  return FR_OK;
nomem:
  return fr_error_set(err, FR_ERR_NOMEM, "out of memory planning item %lld (%s)", (long long)index, in->key);
}

int sched_planner_next(sched_planner *p, sched_shard **out, fr_error *err)
{
  *out = NULL;
  if (p->exhausted)
    return 0;
  sched_shard *s = calloc(1, sizeof(*s));
  if (s)
    s->items = calloc((size_t)p->shard_size, sizeof(sched_item));
  if (!s || !s->items) {
    free(s);
    return fr_error_set(err, FR_ERR_NOMEM, "out of memory planning a shard"), -1;
  }
  s->worker = -1;
  s->attempt = 0; /* leases so far: the first lease is attempt 1 */
  for (;;) {
    fr_input_item item;
    fr_error in_err = {0};
    int got = fr_input_source_next(p->src, &item, &in_err);
    if (got < 0) {
      sched_shard_free(s);
      if (err)
        *err = in_err;
      return -1;
    }
    if (got == 0) {
      p->exhausted = 1;
      break;
    }
    if (item.input_failed) {
      /* A damaged input: items before the damage stand, the damage is a failed row, the next input follows. */
      if (p->input_errors++ == 0)
        snprintf(p->first_error, sizeof(p->first_error), "%s", item.error);
      fr_warn("input failed part-way, going on with the next one: %s", item.error);
    }
    int64_t index = p->next_index++;
    if (p->committed && p->committed(p->ctx, index)) {
      /* Kept from the interrupted run. A shard never spans a committed one. */
      p->resumed++;
      if (s->count > 0)
        break;
      continue;
    }
    if (s->count == 0)
      s->id = s->first = index;
    if (add_item(s, &item, fr_labeler_apply(p->labeler, item.key, item.label), index, err)) {
      sched_shard_free(s);
      return -1;
    }
    if (s->count == p->shard_size)
      break;
  }
  if (s->count == 0) {
    sched_shard_free(s);
    return 0;
  }
  *out = s;
  return 1;
}

int64_t sched_planner_items_seen(const sched_planner *p) { return p->next_index; }
int64_t sched_planner_items_resumed(const sched_planner *p) { return p->resumed; }

int sched_planner_input_errors(const sched_planner *p, char *first, size_t first_size)
{
  if (first && first_size)
    snprintf(first, first_size, "%s", p->first_error);
  return p->input_errors;
}

void sched_planner_close(sched_planner *p)
{
  if (!p)
    return;
  fr_input_source_close(p->src);
  free(p);
}
