/* The coordinator loop: a ZeroMQ ROUTER, workers with credit, leases with
 * attempts, heartbeats both ways (the Paranoid Pirate pattern: never trust a
 * worker to come back). Single-threaded: the socket, the leases and the
 * results file are touched by this loop only. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "faceri/cli_util.h"
#include "faceri/log.h"
#include "faceri/protocol.h"
#include "faceri/test_embedding.h"
#include "scheduler_internal.h"

#define MAX_PARTS 16 /* a worker's message has at most 6 frames, plus the identity */

typedef struct worker_slot {
  uint8_t id[256];
  size_t id_len;
  char name[128], device[128]; /* escaped for logs and the file */
  uint32_t credit;
  int outstanding; /* current leases */
  int alive;
  double last_seen;
  int64_t shards, items;
} worker_slot;

typedef struct coord {
  const fr_coordinator_options *o;
  fr_coordinator_summary *sum;
  void *sock;
  sched_planner *planner;
  sched_writer *writer;
  sched_shard *queue_head, *queue_tail; /* ready to lease */
  int queued;
  sched_shard **leased;
  int n_leased, cap_leased;
  worker_slot *workers;
  int n_workers, cap_workers;
  int inputs_done, stopping, finished;
  int64_t commits;
  int64_t kill_after_commits; /* fault injection (FACERI_FAULT_KILL_AFTER_SHARDS), 0: never */
  double t0, hb_every, dead_after, next_hb, next_progress;
  uint64_t hb_seq;
} coord;

/* ---- sending ---- */

/* Sends a message to one worker. Returns 0, or -1 when the peer is gone
 * (EHOSTUNREACH with ROUTER_MANDATORY) or the send failed otherwise. */
static int send_to(coord *c, const worker_slot *w, const fr_msg *m)
{
  fr_frames fr;
  fr_error err = {0};
  if (fr_msg_encode(m, &fr, &err)) {
    fr_log_error("coordinator: cannot encode %s for %s: %s", fr_msg_type_name(m->type), w->name, err.message);
    return -1;
  }
  int rc = zmq_send(c->sock, w->id, w->id_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ? -1 : 0;
  for (size_t i = 0; i < fr.count && rc == 0; i++)
    if (zmq_send(c->sock, fr.frame[i].data, fr.frame[i].size, (i + 1 < fr.count ? ZMQ_SNDMORE : 0) | ZMQ_DONTWAIT) < 0)
      rc = -1;
  if (rc)
    fr_debug("coordinator: sending %s to %s: %s", fr_msg_type_name(m->type), w->name, zmq_strerror(zmq_errno()));
  fr_frames_free(&fr);
  return rc;
}

static void send_stop(coord *c, const worker_slot *w, uint32_t code, const char *reason)
{
  fr_msg m = {.type = FR_MSG_STOP, .stop = {.code = code, .reason = fr_str_c(reason)}};
  send_to(c, w, &m);
}

static void send_stop_raw(coord *c, const uint8_t *id, size_t id_len, uint32_t code, const char *reason)
{
  worker_slot tmp = {.id_len = id_len};
  memcpy(tmp.id, id, id_len);
  snprintf(tmp.name, sizeof(tmp.name), "(refused worker)");
  send_stop(c, &tmp, code, reason);
}

/* ---- queue and leases ---- */

static void queue_push_back(coord *c, sched_shard *s)
{
  s->next = NULL;
  if (c->queue_tail)
    c->queue_tail->next = s;
  else
    c->queue_head = s;
  c->queue_tail = s;
  c->queued++;
}

/* Re-queued shards go first: they are the oldest, and commits stay close to input order. */
static void queue_push_front(coord *c, sched_shard *s)
{
  s->next = c->queue_head;
  c->queue_head = s;
  if (!c->queue_tail)
    c->queue_tail = s;
  c->queued++;
}

static sched_shard *queue_pop(coord *c)
{
  sched_shard *s = c->queue_head;
  if (s) {
    c->queue_head = s->next;
    if (!c->queue_head)
      c->queue_tail = NULL;
    s->next = NULL;
    c->queued--;
  }
  return s;
}

static int find_lease(const coord *c, uint64_t shard_id)
{
  for (int i = 0; i < c->n_leased; i++)
    if ((uint64_t)c->leased[i]->id == shard_id)
      return i;
  return -1;
}

static sched_shard *take_lease(coord *c, int i)
{
  sched_shard *s = c->leased[i];
  c->leased[i] = c->leased[--c->n_leased];
  if (s->worker >= 0 && c->workers[s->worker].outstanding > 0)
    c->workers[s->worker].outstanding--;
  s->worker = -1;
  return s;
}

static int count_commit(coord *c)
{
  c->commits++;
  /* The crash-and-resume tests: SIGKILL, no clean-up at all, right after a commit (as in faceri embed). */
  if (c->kill_after_commits > 0 && c->commits == c->kill_after_commits)
    raise(SIGKILL);
  if (c->o->stop_after_commits > 0 && c->commits >= c->o->stop_after_commits)
    c->stopping = 1;
  return FR_OK;
}

static float since(double t) { return t > 0 ? (float)(fr_now_seconds() - t) : 0.0f; }

/* A lease ended badly (FAILED, lost worker, bad RESULT): again, or failed for good. */
static int lease_failed(coord *c, sched_shard *s, const char *reason, fr_error *err)
{
  s->failures++;
  free(s->reason);
  s->reason = strdup(reason);
  if (s->failures < c->o->max_attempts) {
    fr_info("coordinator: shard %lld re-queued (attempt %u ended: %s)", (long long)s->id, s->attempt, reason);
    queue_push_front(c, s);
    return FR_OK;
  }
  fr_warn("coordinator: shard %lld (items %lld..%lld) failed %d times, written as failed: %s", (long long)s->id,
          (long long)s->first, (long long)(s->first + s->count - 1), s->failures, reason);
  int rc = sched_writer_commit(c->writer, s, NULL, "", "", reason, since(s->first_lease_time), c->sum, err);
  sched_shard_free(s);
  return rc ? rc : count_commit(c);
}

static int worker_lost(coord *c, int slot, const char *why, fr_error *err)
{
  worker_slot *w = &c->workers[slot];
  if (!w->alive)
    return FR_OK;
  w->alive = 0;
  fr_warn("coordinator: worker %s lost (%s); its %d shard(s) go back to the queue", w->name, why, w->outstanding);
  char reason[320];
  snprintf(reason, sizeof(reason), "worker %s lost: %s", w->name, why);
  for (int i = c->n_leased - 1; i >= 0; i--) {
    if (c->leased[i]->worker != slot)
      continue;
    c->sum->leases_lost++;
    int rc = lease_failed(c, take_lease(c, i), reason, err);
    if (rc)
      return rc;
  }
  w->outstanding = 0;
  return FR_OK;
}

static int lease_to(coord *c, int slot, fr_error *err)
{
  if (c->n_leased == c->cap_leased) {
    int cap = c->cap_leased ? c->cap_leased * 2 : 64;
    sched_shard **grown = realloc(c->leased, (size_t)cap * sizeof(*grown));
    if (!grown)
      return fr_error_set(err, FR_ERR_NOMEM, "out of memory leasing a shard");
    c->leased = grown;
    c->cap_leased = cap;
  }
  sched_shard *s = queue_pop(c);
  fr_shard_item *items = calloc((size_t)s->n_send, sizeof(*items));
  if (!items) {
    queue_push_front(c, s);
    return fr_error_set(err, FR_ERR_NOMEM, "out of memory leasing a shard");
  }
  for (int i = 0, k = 0; i < s->count; i++) {
    const sched_item *it = &s->items[i];
    if (it->status == SCHED_TO_WORKER)
      items[k++] = (fr_shard_item){.index = (uint64_t)it->index, .key = {it->key, it->key_len},
                                   .image = it->bytes, .image_size = it->size};
  }
  worker_slot *w = &c->workers[slot];
  s->attempt++;
  s->worker = slot;
  s->lease_time = fr_now_seconds();
  if (s->first_lease_time == 0)
    s->first_lease_time = s->lease_time;
  c->leased[c->n_leased++] = s;
  w->outstanding++;
  fr_msg m = {.type = FR_MSG_SHARD,
              .shard = {.shard_id = (uint64_t)s->id, .attempt = s->attempt, .count = (uint32_t)s->n_send, .items = items}};
  int sent = send_to(c, w, &m);
  free(items);
  fr_debug("coordinator: shard %lld attempt %u (%d items) -> %s", (long long)s->id, s->attempt, s->n_send, w->name);
  return sent ? worker_lost(c, slot, "unreachable", err) : FR_OK;
}

/* ---- planning ---- */

static int queue_limit(const coord *c)
{
  int credit = 0;
  for (int i = 0; i < c->n_workers; i++)
    if (c->workers[i].alive)
      credit += (int)c->workers[i].credit;
  return credit > c->o->queue_shards ? credit : c->o->queue_shards;
}

static int plan(coord *c, fr_error *err)
{
  int limit = queue_limit(c);
  while (!c->inputs_done && !c->stopping && c->queued < limit) {
    sched_shard *s;
    int got = sched_planner_next(c->planner, &s, err);
    if (got < 0)
      return err->code ? (int)err->code : FR_ERR_INTERNAL;
    if (got == 0) {
      c->inputs_done = 1;
      break;
    }
    int lrc = sched_writer_register_labels(c->writer, s, err);
    if (lrc) {
      sched_shard_free(s);
      return lrc;
    }
    if (s->n_send > 0) {
      queue_push_back(c, s);
      continue;
    }
    /* Nothing for a worker (non-images, unreadable): the coordinator writes it now. */
    static const sched_answer no_answers[1];
    int rc = sched_writer_commit(c->writer, s, no_answers, "coordinator", "", "", 0.0f, c->sum, err);
    sched_shard_free(s);
    if (rc)
      return rc;
    count_commit(c);
  }
  return FR_OK;
}

static int dispatch(coord *c, fr_error *err)
{
  for (int progress = 1; progress && c->queued > 0 && !c->stopping;) {
    progress = 0;
    /* Round-robin one shard per worker per pass, so credit is shared fairly. */
    for (int i = 0; i < c->n_workers && c->queued > 0; i++) {
      worker_slot *w = &c->workers[i];
      if (!w->alive || w->outstanding >= (int)w->credit)
        continue;
      int rc = lease_to(c, i, err);
      if (rc)
        return rc;
      progress = 1;
    }
  }
  return FR_OK;
}

/* ---- receiving ---- */

static int find_worker(const coord *c, const uint8_t *id, size_t id_len)
{
  for (int i = 0; i < c->n_workers; i++)
    if (c->workers[i].id_len == id_len && memcmp(c->workers[i].id, id, id_len) == 0)
      return i;
  return -1;
}

static void dropped(coord *c, const char *who, const char *fmt, const char *what)
{
  c->sum->messages_dropped++;
  char line[1200];
  snprintf(line, sizeof(line), fmt, what);
  fr_warn("coordinator: dropped a message from %s: %s", who, line);
}

static int on_ready(coord *c, const uint8_t *id, size_t id_len, const fr_msg_ready *r, fr_error *err)
{
  char name[128], device[128], why[400];
  fr_str_escape(r->worker, name, sizeof(name));
  fr_str_escape(r->device, device, sizeof(device));
  why[0] = '\0';
  if ((int)r->embedding_dim != c->o->embedding_size)
    snprintf(why, sizeof(why), "embedding size %u, but this run's model gives %d", r->embedding_dim,
             c->o->embedding_size);
  else if (strcmp(r->model_sha256, c->o->model_sha256) != 0)
    snprintf(why, sizeof(why), "model SHA-256 %.12s..., but this run uses %.12s...", r->model_sha256,
             c->o->model_sha256);
  else if (r->align != (c->o->align != 0) ||
           (c->o->align && (r->align_min_score != c->o->align_min_score ||
                            (int)r->align_min_face != c->o->align_min_face ||
                            (int)r->align_max_face != c->o->align_max_face)))
    snprintf(why, sizeof(why), "preprocessing %s (min score %g, face size %u:%u), but this run uses %s (min score "
             "%g, face size %d:%d): give the worker the coordinator's --align settings",
             r->align ? "--align" : "without --align", (double)r->align_min_score, r->align_min_face,
             r->align_max_face, c->o->align ? "--align" : "no --align", (double)c->o->align_min_score,
             c->o->align_min_face, c->o->align_max_face);
  else if ((int)r->test_embedding != c->o->test_embedding || (int)r->attn_dim != c->o->attn_size)
    snprintf(why, sizeof(why), "--test-embedding %s with attention size %u, but this run uses --test-embedding %s "
             "with %d (--embedding-attn on both or neither)", fr_test_embedding_name((int)r->test_embedding),
             r->attn_dim, fr_test_embedding_name(c->o->test_embedding), c->o->attn_size);
  int slot = find_worker(c, id, id_len);
  if (why[0]) {
    fr_warn("coordinator: refused worker %s: %s", name, why);
    c->sum->refused_workers++;
    if (slot >= 0) {
      int rc = worker_lost(c, slot, "refused", err);
      if (rc)
        return rc;
    }
    send_stop_raw(c, id, id_len, FR_STOP_REFUSED, why);
    return FR_OK;
  }
  if (slot >= 0 && c->workers[slot].alive) {
    /* READY again: it restarted, whatever it held is gone. */
    int rc = worker_lost(c, slot, "sent READY again (restarted)", err);
    if (rc)
      return rc;
  }
  if (slot < 0) {
    if (c->n_workers == c->cap_workers) {
      int cap = c->cap_workers ? c->cap_workers * 2 : 16;
      worker_slot *grown = realloc(c->workers, (size_t)cap * sizeof(*grown));
      if (!grown)
        return fr_error_set(err, FR_ERR_NOMEM, "out of memory adding a worker");
      c->workers = grown;
      c->cap_workers = cap;
    }
    slot = c->n_workers++;
    memset(&c->workers[slot], 0, sizeof(worker_slot));
    memcpy(c->workers[slot].id, id, id_len);
    c->workers[slot].id_len = id_len;
  }
  worker_slot *w = &c->workers[slot];
  snprintf(w->name, sizeof(w->name), "%s", name);
  snprintf(w->device, sizeof(w->device), "%s", device);
  w->credit = r->credit;
  w->outstanding = 0;
  w->alive = 1;
  w->last_seen = fr_now_seconds();
  if (c->sum->first_ready_seconds == 0)
    c->sum->first_ready_seconds = w->last_seen - c->t0;
  fr_info("coordinator: worker %s (%s) ready, credit %u", w->name, w->device, w->credit);
  return FR_OK;
}

/* Checks a RESULT against its lease; commits it, or ends the lease as failed. */
static int on_result(coord *c, int slot, const fr_msg_result *r, fr_error *err)
{
  worker_slot *w = &c->workers[slot];
  int li = find_lease(c, r->shard_id);
  if (li < 0 || c->leased[li]->worker != slot || c->leased[li]->attempt != r->attempt) {
    fr_debug("coordinator: ignored a late or duplicate RESULT for shard %llu attempt %u from %s",
             (unsigned long long)r->shard_id, r->attempt, w->name);
    c->sum->messages_dropped++;
    return FR_OK;
  }
  sched_shard *s = c->leased[li];
  char why[256] = "";
  if ((int)r->embedding_dim != c->o->embedding_size)
    snprintf(why, sizeof(why), "RESULT has D = %u, the run's is %d", r->embedding_dim, c->o->embedding_size);
  else if ((int)r->attn_dim != c->o->attn_size)
    snprintf(why, sizeof(why), "RESULT has attention size %u, the run's is %d", r->attn_dim, c->o->attn_size);
  else if ((int)r->count != s->n_send)
    snprintf(why, sizeof(why), "RESULT has %u items, the shard sent %d", r->count, s->n_send);
  for (int i = 0, k = 0; i < s->count && !why[0]; i++) {
    if (s->items[i].status != SCHED_TO_WORKER)
      continue;
    if (r->items[k].index != (uint64_t)s->items[i].index)
      snprintf(why, sizeof(why), "RESULT item %d has index %llu, expected %lld", k,
               (unsigned long long)r->items[k].index, (long long)s->items[i].index);
    k++;
  }
  if (why[0]) {
    dropped(c, w->name, "%s", why);
    return lease_failed(c, take_lease(c, li), why, err);
  }
  sched_answer *ans = calloc((size_t)(r->count ? r->count : 1), sizeof(*ans));
  if (!ans)
    return fr_error_set(err, FR_ERR_NOMEM, "out of memory committing shard %lld", (long long)s->id);
  for (uint32_t k = 0; k < r->count; k++) {
    const fr_result_item *it = &r->items[k];
    ans[k] = (sched_answer){.status = it->status, .width = (int)it->width, .height = (int)it->height,
                            .norm = it->norm, .ers = it->ers, .ri = it->ri, .aligned = it->aligned,
                            .align_score = it->align_score,
                            .embedding = r->embedding + (size_t)k * r->embedding_dim, .error = it->error.s,
                            .attn = r->attn ? r->attn + (size_t)k * r->attn_dim : NULL};
  }
  take_lease(c, li);
  int rc = sched_writer_commit(c->writer, s, ans, w->name, w->device, "", since(s->lease_time), c->sum, err);
  free(ans);
  if (!rc) {
    w->shards++;
    w->items += s->count;
    count_commit(c);
  }
  sched_shard_free(s);
  return rc;
}

static int on_message(coord *c, const uint8_t *id, size_t id_len, const fr_frame *frames, size_t n, fr_error *err)
{
  char who[160];
  int slot = find_worker(c, id, id_len);
  if (slot >= 0)
    snprintf(who, sizeof(who), "%s", c->workers[slot].name);
  else
    fr_str_escape((fr_str){(const char *)id, id_len}, who, sizeof(who));
  fr_msg m;
  fr_error derr = {0};
  if (fr_msg_decode(frames, n, 0, &m, &derr)) {
    dropped(c, who, "%s", derr.message);
    return FR_OK;
  }
  int rc = FR_OK;
  if (m.type == FR_MSG_READY) {
    rc = on_ready(c, id, id_len, &m.ready, err);
  } else if (m.type == FR_MSG_SHARD || m.type == FR_MSG_STOP) {
    dropped(c, who, "%s goes from the coordinator to workers, not back", fr_msg_type_name(m.type));
  } else if (slot < 0) {
    dropped(c, who, "%s from a worker that never sent READY", fr_msg_type_name(m.type));
  } else {
    worker_slot *w = &c->workers[slot];
    if (!w->alive) {
      /* Declared dead, yet here it is: its leases went back to the queue, and
       * anything it sends for them is stale. It may take new work. */
      fr_info("coordinator: worker %s is back", w->name);
      w->alive = 1;
      w->outstanding = 0;
    }
    w->last_seen = fr_now_seconds();
    if (m.type == FR_MSG_RESULT) {
      rc = on_result(c, slot, &m.result, err);
    } else if (m.type == FR_MSG_FAILED) {
      int li = find_lease(c, m.failed.shard_id);
      if (li >= 0 && c->leased[li]->worker == slot && c->leased[li]->attempt == m.failed.attempt) {
        char reason[600];
        fr_str_escape(m.failed.reason, reason, sizeof(reason));
        rc = lease_failed(c, take_lease(c, li), reason, err);
      } else {
        c->sum->messages_dropped++;
      }
    }
  }
  fr_msg_free(&m);
  return rc;
}

/* Reads every waiting message (bounded, so heartbeats are never starved). */
static int receive(coord *c, fr_error *err)
{
  for (int budget = 0; budget < 4096; budget++) {
    zmq_msg_t parts[MAX_PARTS];
    int n = 0, more = 1, too_many = 0;
    while (more) {
      zmq_msg_t tmp, *p = n < MAX_PARTS ? &parts[n] : &tmp;
      zmq_msg_init(p);
      if (zmq_msg_recv(p, c->sock, n == 0 ? ZMQ_DONTWAIT : 0) < 0) {
        int e = zmq_errno();
        zmq_msg_close(p);
        for (int i = 0; i < n && i < MAX_PARTS; i++)
          zmq_msg_close(&parts[i]);
        if (n == 0 && (e == EAGAIN || e == EINTR))
          return FR_OK;
        return fr_error_set(err, FR_ERR_IO, "%s: receiving: %s", c->o->bind, zmq_strerror(e));
      }
      more = zmq_msg_more(p);
      if (n < MAX_PARTS)
        n++;
      else {
        too_many = 1;
        zmq_msg_close(p);
      }
    }
    int rc = FR_OK;
    if (too_many || n < 2) {
      c->sum->messages_dropped++;
      fr_warn("coordinator: dropped a message with %s frames", too_many ? "too many" : "no");
    } else {
      fr_frame frames[MAX_PARTS];
      for (int i = 1; i < n; i++)
        frames[i - 1] = (fr_frame){zmq_msg_data(&parts[i]), zmq_msg_size(&parts[i])};
      size_t id_len = zmq_msg_size(&parts[0]);
      if (id_len <= 255)
        rc = on_message(c, zmq_msg_data(&parts[0]), id_len, frames, (size_t)n - 1, err);
    }
    for (int i = 0; i < n; i++)
      zmq_msg_close(&parts[i]);
    if (rc || c->stopping)
      return rc;
  }
  return FR_OK;
}

/* ---- time ---- */

static int heartbeat(coord *c, fr_error *err)
{
  double now = fr_now_seconds();
  for (int i = 0; i < c->n_workers; i++) {
    worker_slot *w = &c->workers[i];
    if (!w->alive)
      continue;
    if (now - w->last_seen > c->dead_after) {
      char why[96];
      snprintf(why, sizeof(why), "silent for %.1f s", now - w->last_seen);
      int rc = worker_lost(c, i, why, err);
      if (rc)
        return rc;
      continue;
    }
    fr_msg m = {.type = FR_MSG_HEARTBEAT, .heartbeat = {.time_ms = (uint64_t)(now * 1000.0), .sequence = ++c->hb_seq}};
    if (send_to(c, w, &m)) {
      int rc = worker_lost(c, i, "unreachable", err);
      if (rc)
        return rc;
    }
  }
  return FR_OK;
}

static void report(coord *c, int final)
{
  double now = fr_now_seconds();
  /* No planner: the run failed before it started (a refused --resume), nothing to report. */
  if (!c->o->on_progress || !c->planner || (!final && now < c->next_progress))
    return;
  c->next_progress = now + 0.2;
  fr_coordinator_progress p = {.items_done = c->sum->items,
                               .items_total = c->inputs_done ? sched_planner_items_seen(c->planner)
                                                                   - sched_planner_items_resumed(c->planner)
                                                             : -1,
                               .items_failed = c->sum->failed,
                               .items_resumed = sched_planner_items_resumed(c->planner),
                               .seconds = now - c->t0};
  for (int i = 0; i < c->n_workers; i++)
    p.live_workers += c->workers[i].alive;
  c->o->on_progress(&p, c->o->progress_user);
}

static int run_loop(coord *c, fr_error *err)
{
  int rc;
  while (!(rc = plan(c, err)) && !(rc = dispatch(c, err))) {
    if (c->o->stop && atomic_load(c->o->stop))
      c->stopping = 1;
    if (c->stopping)
      break;
    if (c->inputs_done && c->queued == 0 && c->n_leased == 0) {
      c->finished = 1;
      break;
    }
    double now = fr_now_seconds();
    long wait_ms = (long)((c->next_hb - now) * 1000.0) + 1;
    if (wait_ms > 200)
      wait_ms = 200; /* a stop request is noticed within 200 ms */
    zmq_pollitem_t item = {.socket = c->sock, .events = ZMQ_POLLIN};
    int ready = zmq_poll(&item, 1, wait_ms < 0 ? 0 : wait_ms);
    if (ready < 0 && zmq_errno() != EINTR)
      return fr_error_set(err, FR_ERR_IO, "%s: poll: %s", c->o->bind, zmq_strerror(zmq_errno()));
    if (ready > 0 && (rc = receive(c, err)))
      return rc;
    if (fr_now_seconds() >= c->next_hb) {
      c->next_hb = fr_now_seconds() + c->hb_every;
      if ((rc = heartbeat(c, err)))
        return rc;
    }
    report(c, 0);
  }
  return rc;
}

static void fill_defaults(fr_coordinator_options *o)
{
  if (o->shard_size <= 0)
    o->shard_size = FR_COORD_DEFAULT_SHARD_SIZE;
  if (o->shard_size > (int)FR_PROTO_MAX_ITEMS)
    o->shard_size = (int)FR_PROTO_MAX_ITEMS;
  if (o->heartbeat_ms <= 0)
    o->heartbeat_ms = FR_COORD_DEFAULT_HEARTBEAT_MS;
  if (o->liveness <= 0)
    o->liveness = FR_COORD_DEFAULT_LIVENESS;
  if (o->max_attempts <= 0)
    o->max_attempts = FR_COORD_DEFAULT_MAX_ATTEMPTS;
  if (o->queue_shards <= 0)
    o->queue_shards = FR_COORD_DEFAULT_QUEUE_SHARDS;
}

static int open_socket(coord *c, void *zmq_ctx, fr_error *err)
{
  c->sock = zmq_socket(zmq_ctx, ZMQ_ROUTER);
  if (!c->sock)
    return fr_error_set(err, FR_ERR_IO, "cannot create a ZeroMQ ROUTER socket: %s", zmq_strerror(zmq_errno()));
  int one = 1, zero = 0, linger = 2000;
  /* MANDATORY: a send to a vanished worker fails instead of vanishing silently.
   * No send limit: credit bounds what is queued per worker. */
  if (zmq_setsockopt(c->sock, ZMQ_ROUTER_MANDATORY, &one, sizeof(one)) ||
      zmq_setsockopt(c->sock, ZMQ_SNDHWM, &zero, sizeof(zero)) ||
      zmq_setsockopt(c->sock, ZMQ_LINGER, &linger, sizeof(linger)))
    return fr_error_set(err, FR_ERR_IO, "setting ROUTER options: %s", zmq_strerror(zmq_errno()));
  if (zmq_bind(c->sock, c->o->bind) != 0)
    return fr_error_set(err, FR_ERR_IO, "cannot bind %s: %s", c->o->bind, zmq_strerror(zmq_errno()));
  return FR_OK;
}

int fr_coordinator_run(const fr_coordinator_options *opts, void *zmq_ctx, fr_coordinator_summary *summary,
                       fr_error *err)
{
  fr_coordinator_options o = *opts;
  fill_defaults(&o);
  fr_coordinator_summary local;
  fr_coordinator_summary *sum = summary ? summary : &local;
  memset(sum, 0, sizeof(*sum));
  sum->test_embedding = o.test_embedding;
  sum->attn_size = o.attn_size;
  if (!o.bind || !o.output || !o.model_sha256 || o.embedding_size <= 0 || o.n_inputs <= 0 || !o.inputs)
    return fr_error_set(err, FR_ERR_INVALID, "coordinator: bind endpoint, output, model SHA-256, D and inputs are required");
  coord c = {.o = &o, .sum = sum, .t0 = fr_now_seconds()};
  c.hb_every = o.heartbeat_ms / 1000.0;
  c.dead_after = c.hb_every * o.liveness;
  c.next_hb = c.t0 + c.hb_every;
  const char *fault = getenv("FACERI_FAULT_KILL_AFTER_SHARDS");
  c.kill_after_commits = fault && *fault ? strtoll(fault, NULL, 10) : 0;
  int rc = sched_writer_open(&o, &c.writer, err);
  if (!rc)
    rc = sched_planner_open(o.inputs, o.n_inputs, o.shard_size, o.max_item_bytes, o.labeler,
                            o.resume ? sched_writer_is_committed : NULL, c.writer, &c.planner, err);
  if (!rc)
    rc = open_socket(&c, zmq_ctx, err);
  if (!rc) {
    fr_info("coordinator: listening on %s, shards of %d items", o.bind, o.shard_size);
    rc = run_loop(&c, err);
  }
  if (c.sock) {
    /* Dead ones too: a worker declared dead may only have been slow, and would
     * otherwise wait out its own liveness timeout. Gone ones just fail. */
    for (int i = 0; i < c.n_workers; i++)
      send_stop(&c, &c.workers[i], rc == FR_OK && c.finished ? FR_STOP_DONE : FR_STOP_SHUTDOWN,
                rc == FR_OK && c.finished ? "the run is complete" : "the coordinator is shutting down");
    zmq_close(c.sock);
  }
  if (c.planner) {
    sum->resumed = sched_planner_items_resumed(c.planner);
    sum->input_errors = sched_planner_input_errors(c.planner, sum->first_input_error, sizeof(sum->first_input_error));
  }
  report(&c, 1);
  fr_error close_err = {0};
  int close_rc = sched_writer_close(c.writer, rc == FR_OK && c.finished, &close_err);
  if (!rc && close_rc) {
    rc = close_rc;
    if (err)
      *err = close_err;
  }
  sum->complete = rc == FR_OK && c.finished;
  sum->seconds = fr_now_seconds() - c.t0;
  sum->workers = calloc((size_t)(c.n_workers ? c.n_workers : 1), sizeof(*sum->workers));
  if (sum->workers) {
    sum->n_workers = c.n_workers;
    for (int i = 0; i < c.n_workers; i++) {
      fr_coordinator_worker_share *ws = &sum->workers[i];
      snprintf(ws->name, sizeof(ws->name), "%s", c.workers[i].name);
      snprintf(ws->device, sizeof(ws->device), "%s", c.workers[i].device);
      ws->shards = c.workers[i].shards;
      ws->items = c.workers[i].items;
    }
  }
  sched_planner_close(c.planner);
  for (sched_shard *s; (s = queue_pop(&c));)
    sched_shard_free(s);
  for (int i = 0; i < c.n_leased; i++)
    sched_shard_free(c.leased[i]);
  free(c.leased);
  free(c.workers);
  if (sum == &local)
    fr_coordinator_summary_free(&local);
  return rc;
}

void fr_coordinator_summary_free(fr_coordinator_summary *s)
{
  if (!s)
    return;
  free(s->workers);
  s->workers = NULL;
  s->n_workers = 0;
}
