/* The worker's socket side (docs/PROTOCOL.md): this thread owns the DEALER,
 * sends READY and heartbeats, turns SHARDs into jobs for the pipeline and
 * sends each finished job's RESULT or FAILED. It never waits on the device,
 * so a long batch cannot silence heartbeats; it waits in zmq_poll on the
 * socket and on a pipe the pipeline writes to when a job completes. A
 * coordinator silent for `liveness` intervals is presumed dead (Paranoid
 * Pirate): the shards held are dropped (the coordinator re-queues them) and
 * the socket is reopened with backoff until max_reconnect_s. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "faceri/log.h"
#include "faceri/model.h"
#include "faceri/test_embedding.h"
#include "faceri/worker_loop.h"
#include "worker_internal.h"

typedef struct held_shard {
  uint64_t id;
  uint32_t attempt;
} held_shard;

typedef struct wk_worker {
  const fr_worker_options *o;
  int batch, credit, decode_threads, hb_ms, liveness, max_reconnect_s;
  char name[256];
  char device[256];
  void *zctx;
  int own_ctx;
  void *sock;
  fr_model model;
  int have_model;
  fr_vk_context *vk;
  fr_engine *engine;
  fr_aligner *aligner; /* --align; shares vk's queue with the engine (used on the device thread only) */
  wk_pipeline pipe;
  int pipe_started;
  int fds[2]; /* pipeline -> this thread wake-ups */
  uint64_t generation;
  held_shard *held;
  int n_held;
  uint64_t hb_seq;
  fr_worker_stats st;
} wk_worker;

void fr_worker_request_stop(fr_worker_control *control)
{
  if (control)
    atomic_store(&control->stop, 1);
}

static int stop_requested(const wk_worker *w) { return w->o->control && atomic_load(&w->o->control->stop); }

static uint64_t now_ms(void) { return (uint64_t)(wk_now() * 1000.0); }

static void free_job(fr_shard_job *job)
{
  if (!job)
    return;
  if (job->errors)
    for (uint32_t i = 0; i < job->msg.shard.count; i++)
      free(job->errors[i]);
  free(job->errors);
  free(job->res);
  free(job->emb);
  free(job->attn);
  fr_msg_free(&job->msg);
  for (size_t i = 0; i < job->n_parts; i++)
    zmq_msg_close(&job->parts[i]);
  free(job->parts);
  free(job);
}

static void free_jobs(fr_shard_job *list)
{
  while (list) {
    fr_shard_job *next = list->next;
    free_job(list);
    list = next;
  }
}

static void close_parts(zmq_msg_t *parts, size_t n)
{
  for (size_t i = 0; i < n; i++)
    zmq_msg_close(&parts[i]);
  free(parts);
}

/* ---- sending ---- */

static int send_msg(wk_worker *w, const fr_msg *msg, fr_error *err)
{
  fr_frames frames;
  int rc = fr_msg_encode(msg, &frames, err);
  if (rc) {
    fr_error_prefix(err, "worker %s: encoding %s", w->name, fr_msg_type_name(msg->type));
    return rc;
  }
  for (size_t i = 0; i < frames.count; i++) {
    int flags = i + 1 < frames.count ? ZMQ_SNDMORE : 0;
    if (zmq_send(w->sock, frames.frame[i].data, frames.frame[i].size, flags) < 0) {
      /* A partly sent multipart message is discarded by ZeroMQ when the socket closes. */
      rc = fr_error_set(err, FR_ERR_IO, "worker %s: sending %s to %s: %s", w->name, fr_msg_type_name(msg->type),
                        w->o->endpoint, zmq_strerror(zmq_errno()));
      break;
    }
  }
  fr_frames_free(&frames);
  return rc;
}

/* Floats per RESULT embedding row (the test embedding) and per v_attn row (0: none). */
static int out_dim(const wk_worker *w)
{
  return fr_test_embedding_dim((fr_test_embedding)w->o->test_embedding, w->model.embedding_size);
}
static int attn_dim(const wk_worker *w) { return w->o->embedding_attn ? w->model.embedding_size : 0; }

static int send_ready(wk_worker *w, fr_error *err)
{
  fr_msg m = {.type = FR_MSG_READY};
  m.ready.worker = fr_str_c(w->name);
  m.ready.device = fr_str_c(w->device);
  m.ready.credit = (uint32_t)w->credit;
  m.ready.embedding_dim = (uint32_t)out_dim(w);
  memcpy(m.ready.model_sha256, w->model.file_sha256, sizeof(m.ready.model_sha256));
  if (w->o->align) {
    m.ready.align = 1;
    m.ready.align_min_score = w->o->align_min_score;
    m.ready.align_min_face = (uint32_t)w->o->align_min_face;
    m.ready.align_max_face = (uint32_t)w->o->align_max_face;
  }
  m.ready.attn_dim = (uint32_t)attn_dim(w);
  m.ready.test_embedding = (uint32_t)w->o->test_embedding;
  return send_msg(w, &m, err);
}

static int send_heartbeat(wk_worker *w, fr_error *err)
{
  fr_msg m = {.type = FR_MSG_HEARTBEAT};
  m.heartbeat.time_ms = now_ms();
  m.heartbeat.sequence = ++w->hb_seq;
  int rc = send_msg(w, &m, err);
  if (!rc)
    w->st.heartbeats_sent++;
  return rc;
}

static int send_failed(wk_worker *w, uint64_t id, uint32_t attempt, const char *reason, fr_error *err)
{
  fr_msg m = {.type = FR_MSG_FAILED};
  m.failed.shard_id = id;
  m.failed.attempt = attempt;
  char cut[FR_PROTO_MAX_STRING + 1];
  snprintf(cut, sizeof(cut), "%s", reason);
  m.failed.reason = fr_str_c(cut);
  int rc = send_msg(w, &m, err);
  if (!rc)
    w->st.shards_failed++;
  fr_warn("worker %s: shard %llu attempt %u failed: %s", w->name, (unsigned long long)id, attempt, reason);
  return rc;
}

static void forget_held(wk_worker *w, uint64_t id, uint32_t attempt)
{
  for (int i = 0; i < w->n_held; i++)
    if (w->held[i].id == id && w->held[i].attempt == attempt) {
      w->held[i] = w->held[--w->n_held];
      return;
    }
}

/* Sends the job's RESULT (or FAILED) unless it belongs to a dropped connection. */
static int answer_job(wk_worker *w, fr_shard_job *job, fr_error *err)
{
  const fr_msg_shard *s = &job->msg.shard;
  if (job->cancelled || job->generation != w->generation)
    return FR_OK;
  forget_held(w, s->shard_id, s->attempt);
  if (job->failed)
    return send_failed(w, s->shard_id, s->attempt, job->reason, err);
  fr_msg m = {.type = FR_MSG_RESULT};
  m.result.shard_id = s->shard_id;
  m.result.attempt = s->attempt;
  m.result.count = s->count;
  m.result.embedding_dim = (uint32_t)out_dim(w);
  m.result.items = job->res;
  m.result.embedding = job->emb;
  m.result.attn_dim = job->attn ? (uint32_t)attn_dim(w) : 0;
  m.result.attn = job->attn;
  for (uint32_t i = 0; i < s->count; i++) {
    const char *e = job->errors[i];
    size_t len = e ? strlen(e) : 0;
    job->res[i].error = (fr_str){e ? e : "", len > FR_PROTO_MAX_STRING ? FR_PROTO_MAX_STRING : len};
  }
  int rc = send_msg(w, &m, err);
  if (!rc) {
    w->st.shards_answered++;
    w->st.items += s->count;
    fr_debug("worker %s: shard %llu attempt %u answered (%u items, %.3f s)", w->name,
             (unsigned long long)s->shard_id, s->attempt, s->count, wk_now() - job->received_at);
  }
  return rc;
}

/* ---- receiving ---- */

/* Receives one whole multipart message if one is waiting: 1 got one, 0 none, <0 socket error. */
static int recv_parts(wk_worker *w, zmq_msg_t **out, size_t *n_out, fr_error *err)
{
  size_t cap = 8, n = 0;
  zmq_msg_t *parts = malloc(cap * sizeof(*parts));
  if (!parts)
    return -fr_error_set(err, FR_ERR_NOMEM, "worker %s: out of memory receiving a message", w->name);
  int more = 1, dropped = 0;
  while (more) {
    zmq_msg_t part;
    zmq_msg_init(&part);
    if (zmq_msg_recv(&part, w->sock, n == 0 && !dropped ? ZMQ_DONTWAIT : 0) < 0) {
      int e = zmq_errno();
      zmq_msg_close(&part);
      close_parts(parts, n);
      if (e == EAGAIN && n == 0 && !dropped)
        return 0;
      return -fr_error_set(err, FR_ERR_IO, "worker %s: receiving from %s: %s", w->name, w->o->endpoint,
                           zmq_strerror(e));
    }
    more = zmq_msg_more(&part);
    /* More frames than any valid message has: keep reading to the end, keep nothing. */
    if (dropped || n >= (size_t)FR_PROTO_MAX_ITEMS + 5) {
      zmq_msg_close(&part);
      if (!dropped) {
        close_parts(parts, n);
        parts = NULL;
        n = 0;
        dropped = 1;
      }
      continue;
    }
    if (n == cap) {
      zmq_msg_t *grown = realloc(parts, 2 * cap * sizeof(*parts));
      if (!grown) {
        zmq_msg_close(&part);
        close_parts(parts, n);
        parts = NULL;
        n = 0;
        dropped = 1;
        continue;
      }
      parts = grown;
      cap *= 2;
    }
    /* zmq_msg_move, not a struct copy: ZeroMQ forbids copying zmq_msg_t by value. */
    zmq_msg_init(&parts[n]);
    zmq_msg_move(&parts[n], &part);
    zmq_msg_close(&part);
    n++;
  }
  if (dropped) {
    w->st.malformed++;
    fr_warn("worker %s: dropped a message of more frames than any valid one", w->name);
    *out = NULL;
    *n_out = 0;
    return 1;
  }
  *out = parts;
  *n_out = n;
  return 1;
}

static fr_shard_job *new_job(wk_worker *w, fr_msg *msg, zmq_msg_t *parts, size_t n_parts)
{
  fr_shard_job *job = calloc(1, sizeof(*job));
  if (!job)
    return NULL;
  uint32_t count = msg->shard.count;
  size_t d = (size_t)out_dim(w), da = (size_t)attn_dim(w);
  job->res = calloc(count ? count : 1, sizeof(*job->res));
  job->errors = calloc(count ? count : 1, sizeof(*job->errors));
  job->emb = malloc((count ? count : 1) * d * sizeof(float));
  job->attn = da ? malloc((count ? count : 1) * da * sizeof(float)) : NULL;
  if (!job->res || !job->errors || !job->emb || (da && !job->attn)) {
    free(job->res);
    free(job->errors);
    free(job->emb);
    free(job->attn);
    free(job);
    return NULL;
  }
  for (size_t i = 0; i < count * d; i++)
    job->emb[i] = NAN;
  for (size_t i = 0; i < count * da; i++)
    job->attn[i] = NAN;
  for (uint32_t i = 0; i < count; i++) {
    job->res[i] = (fr_result_item){.index = msg->shard.items[i].index, .status = FR_ITEM_FAILED,
                                   .norm = NAN, .ers = NAN, .ri = NAN, .aligned = -1,
                                   .align_score = NAN};
  }
  job->msg = *msg;
  memset(msg, 0, sizeof(*msg));
  job->parts = parts;
  job->n_parts = n_parts;
  job->generation = w->generation;
  job->received_at = wk_now();
  return job;
}

static int handle_shard(wk_worker *w, fr_msg *msg, zmq_msg_t *parts, size_t n_parts, fr_error *err)
{
  const fr_msg_shard *s = &msg->shard;
  for (int i = 0; i < w->n_held; i++)
    if (w->held[i].id == s->shard_id && w->held[i].attempt == s->attempt) {
      w->st.malformed++;
      fr_warn("worker %s: shard %llu attempt %u received twice; the second is ignored", w->name,
              (unsigned long long)s->shard_id, s->attempt);
      close_parts(parts, n_parts);
      return FR_OK;
    }
  if (w->n_held >= w->credit) {
    char why[128];
    snprintf(why, sizeof(why), "worker already holds %d shards (its credit)", w->n_held);
    close_parts(parts, n_parts);
    return send_failed(w, s->shard_id, s->attempt, why, err);
  }
  uint64_t id = s->shard_id;
  uint32_t attempt = s->attempt;
  fr_shard_job *job = new_job(w, msg, parts, n_parts);
  if (!job) {
    close_parts(parts, n_parts);
    return send_failed(w, id, attempt, "worker out of memory for the shard's results", err);
  }
  if (w->o->dry_run) {
    for (uint32_t i = 0; i < job->msg.shard.count; i++)
      job->res[i].status = FR_ITEM_OK;
    int rc = answer_job(w, job, err);
    free_job(job);
    return rc;
  }
  w->held[w->n_held++] = (held_shard){id, attempt};
  wk_pipeline_submit(&w->pipe, job);
  return FR_OK;
}

/* Outcome of one coordinator message: keep going, or end the run with rc. */
enum { KEEP_GOING = 0, END_RUN = 1 };

static int handle_message(wk_worker *w, zmq_msg_t *parts, size_t n, int *rc, fr_error *err)
{
  fr_frame stack_frames[16];
  fr_frame *frames = n <= 16 ? stack_frames : malloc(n * sizeof(*frames));
  if (!frames) {
    close_parts(parts, n);
    w->st.malformed++;
    fr_warn("worker %s: out of memory reading a message of %zu frames; dropped", w->name, n);
    return KEEP_GOING;
  }
  for (size_t i = 0; i < n; i++)
    frames[i] = (fr_frame){zmq_msg_data(&parts[i]), zmq_msg_size(&parts[i])};
  fr_msg msg;
  fr_error derr = {0};
  int drc = fr_msg_decode(frames, n, 0, &msg, &derr);
  if (frames != stack_frames)
    free(frames);
  if (drc) {
    w->st.malformed++;
    fr_warn("worker %s: dropped a malformed message: %s", w->name, derr.message);
    close_parts(parts, n);
    return KEEP_GOING;
  }
  int out = KEEP_GOING;
  switch (msg.type) {
  case FR_MSG_HEARTBEAT:
    w->st.heartbeats_received++;
    break;
  case FR_MSG_SHARD:
    *rc = handle_shard(w, &msg, parts, n, err); /* takes the parts */
    parts = NULL;
    n = 0;
    break;
  case FR_MSG_STOP: {
    char reason[FR_PROTO_MAX_STRING * 4 + 1];
    fr_str_escape(msg.stop.reason, reason, sizeof(reason));
    w->st.stop_code = (int)msg.stop.code;
    if (msg.stop.code == FR_STOP_DONE)
      fr_info("worker %s: coordinator says the run is complete (%s)", w->name, reason);
    else if (msg.stop.code == FR_STOP_REFUSED)
      *rc = fr_error_set(err, FR_ERR_INVALID, "worker %s: refused by the coordinator at %s: %s", w->name,
                         w->o->endpoint, reason);
    else
      *rc = fr_error_set(err, FR_ERR_IO, "worker %s: stopped by the coordinator at %s (code %u): %s", w->name,
                         w->o->endpoint, msg.stop.code, reason);
    out = END_RUN;
    break;
  }
  default:
    w->st.malformed++;
    fr_warn("worker %s: dropped a %s message: coordinators do not send those", w->name,
            fr_msg_type_name(msg.type));
    break;
  }
  fr_msg_free(&msg);
  close_parts(parts, n);
  return out;
}

/* ---- connection ---- */

static void close_socket(wk_worker *w)
{
  if (w->sock)
    zmq_close(w->sock);
  w->sock = NULL;
}

static int open_socket(wk_worker *w, fr_error *err)
{
  w->sock = zmq_socket(w->zctx, ZMQ_DEALER);
  if (!w->sock)
    return fr_error_set(err, FR_ERR_IO, "worker %s: cannot make a DEALER socket: %s", w->name,
                        zmq_strerror(zmq_errno()));
  int linger = 0;
  /* A send that cannot proceed within the liveness window means the peer is gone. */
  int sndtimeo = w->hb_ms * w->liveness;
  if (zmq_setsockopt(w->sock, ZMQ_LINGER, &linger, sizeof(linger)) ||
      zmq_setsockopt(w->sock, ZMQ_SNDTIMEO, &sndtimeo, sizeof(sndtimeo)) ||
      zmq_connect(w->sock, w->o->endpoint)) {
    int e = zmq_errno();
    close_socket(w);
    return fr_error_set(err, e == EINVAL || e == EPROTONOSUPPORT ? FR_ERR_INVALID : FR_ERR_IO,
                        "worker %s: cannot connect to %s: %s", w->name, w->o->endpoint, zmq_strerror(e));
  }
  return FR_OK;
}

/* Drops every held shard (the coordinator re-queues them) and the socket. */
static void drop_connection(wk_worker *w)
{
  w->generation++;
  w->n_held = 0;
  if (w->pipe_started)
    wk_pipeline_cancel_all(&w->pipe);
  close_socket(w);
}

/* Sleeps up to `seconds`, waking early for a stop request. */
static void nap(const wk_worker *w, double seconds)
{
  double until = wk_now() + seconds;
  while (!stop_requested(w) && wk_now() < until) {
    double left = until - wk_now();
    usleep((useconds_t)(1e6 * (left < 0.05 ? (left > 0 ? left : 0) : 0.05)));
  }
}

static void drain_pipe(wk_worker *w)
{
  char buf[256];
  while (read(w->fds[0], buf, sizeof(buf)) > 0) {
  }
}

/* Sends the answers of every finished job; a send error is returned (connection trouble). */
static int answer_done(wk_worker *w, fr_error *err)
{
  if (!w->pipe_started)
    return FR_OK;
  drain_pipe(w);
  fr_shard_job *list = wk_pipeline_take_done(&w->pipe);
  int rc = FR_OK;
  while (list) {
    fr_shard_job *next = list->next;
    if (!rc)
      rc = answer_job(w, list, err);
    free_job(list);
    list = next;
  }
  return rc;
}

/* The device is gone: every held shard is FAILED with the reason, then the run ends. */
static int fail_everything(wk_worker *w, const fr_error *fatal, fr_error *err)
{
  fr_error ignore = {0};
  answer_done(w, &ignore);
  for (int i = 0; i < w->n_held; i++)
    send_failed(w, w->held[i].id, w->held[i].attempt, fatal->message, &ignore);
  w->n_held = 0;
  *err = *fatal;
  fr_error_prefix(err, "worker %s", w->name);
  return FR_ERR_DEVICE_LOST;
}

static int serve(wk_worker *w, fr_error *err)
{
  double hb = w->hb_ms / 1000.0, dead_after = hb * w->liveness;
  double now = wk_now(), last_heard = now, silent_since = now, next_hb = now, backoff = hb;
  int rc = open_socket(w, err);
  if (!rc)
    rc = send_ready(w, err);
  if (rc)
    return rc;
  fr_info("worker %s: connected to %s (device %s, credit %d, batch %d)", w->name, w->o->endpoint, w->device,
          w->credit, w->batch);
  for (;;) {
    if (stop_requested(w)) {
      fr_info("worker %s: stop requested; leaving", w->name);
      return FR_OK;
    }
    fr_error fatal;
    if (w->pipe_started && wk_pipeline_fatal(&w->pipe, &fatal))
      return fail_everything(w, &fatal, err);
    now = wk_now();
    double wait = next_hb - now;
    wait = wait < 0 ? 0 : wait > 0.05 ? 0.05 : wait;
    zmq_pollitem_t items[2] = {{w->sock, 0, ZMQ_POLLIN, 0}, {NULL, w->fds[0], ZMQ_POLLIN, 0}};
    int n = zmq_poll(items, w->pipe_started ? 2 : 1, (long)(wait * 1000.0));
    if (n < 0 && zmq_errno() != EINTR)
      return fr_error_set(err, FR_ERR_IO, "worker %s: polling: %s", w->name, zmq_strerror(zmq_errno()));
    int conn_rc = FR_OK;
    fr_error conn_err = {0};
    /* At most a few hundred messages per pass, so heartbeats go out under a flood. */
    for (int k = 0; n > 0 && (items[0].revents & ZMQ_POLLIN) && k < 256 && !conn_rc; k++) {
      zmq_msg_t *parts = NULL;
      size_t n_parts = 0;
      int got = recv_parts(w, &parts, &n_parts, &conn_err);
      if (got <= 0) {
        conn_rc = got < 0 ? conn_err.code : FR_OK;
        break;
      }
      last_heard = silent_since = wk_now();
      backoff = hb;
      if (!parts)
        continue;
      int end_rc = FR_OK;
      if (handle_message(w, parts, n_parts, &end_rc, err) == END_RUN)
        return end_rc;
      if (end_rc) { /* a send failed: treat as a lost connection */
        conn_rc = end_rc;
        conn_err = *err;
      }
    }
    if (!conn_rc)
      conn_rc = answer_done(w, &conn_err);
    now = wk_now();
    if (!conn_rc && now >= next_hb) {
      conn_rc = send_heartbeat(w, &conn_err);
      next_hb = now + hb;
    }
    if (conn_rc)
      fr_warn("%s", conn_err.message);
    if (conn_rc || now - last_heard > dead_after) {
      if (now - silent_since >= w->max_reconnect_s)
        return fr_error_set(err, FR_ERR_TIMEOUT,
                            "worker %s: no message from the coordinator at %s for %.0f s (heartbeat %d ms); "
                            "giving up",
                            w->name, w->o->endpoint, now - silent_since, w->hb_ms);
      fr_warn("worker %s: coordinator at %s silent for %.1f s; reconnecting in %.1f s (its shards are dropped)",
              w->name, w->o->endpoint, now - last_heard, backoff);
      drop_connection(w);
      nap(w, backoff);
      backoff = backoff * 2 > 30 ? 30 : backoff * 2;
      if (stop_requested(w))
        continue;
      rc = open_socket(w, err);
      if (!rc)
        rc = send_ready(w, err);
      if (rc)
        return rc;
      w->st.reconnects++;
      last_heard = wk_now();
      next_hb = last_heard + hb;
    }
  }
}

/* ---- setup and teardown ---- */

static int setup_device(wk_worker *w, fr_error *err)
{
  const fr_worker_options *o = w->o;
  const char *path = o->model_path ? o->model_path : fr_model_default_path();
  int rc = fr_model_load(path, &w->model, err);
  if (rc)
    return rc;
  w->have_model = 1;
  if (o->test_embedding < FR_TEST_EMBEDDING_V || o->test_embedding > FR_TEST_EMBEDDING_CONCAT)
    return fr_error_set(err, FR_ERR_INVALID, "worker: test embedding %d is not 0 (v), 1 (attn) or 2 (concat)",
                        o->test_embedding);
  if ((rc = fr_test_embedding_check(&w->model, path, (fr_test_embedding)o->test_embedding, o->embedding_attn, err)))
    return rc;
  if (o->dry_run) {
    snprintf(w->device, sizeof(w->device), "dry-run");
    return FR_OK;
  }
  fr_vk_options vo = {.device = o->device, .validation = o->validation == 0 ? -1 : o->validation > 0};
  rc = fr_vk_context_create(&vo, &w->vk, err);
  if (rc)
    return rc;
  snprintf(w->device, sizeof(w->device), "%s", fr_vk_context_device(w->vk)->name);
  fr_engine_options eo = {.max_batch = w->batch};
  rc = fr_engine_create(w->vk, &w->model, &eo, &w->engine, err);
  if (rc)
    return rc;
  fr_preprocess pp = {.input_w = w->model.input_w, .input_h = w->model.input_h, .has_crop = o->has_crop,
                      .crop_x = o->crop_x, .crop_y = o->crop_y, .crop_w = o->crop_w, .crop_h = o->crop_h};
  for (int i = 0; i < 3; i++) {
    pp.mean[i] = w->model.mean[i];
    pp.std[i] = w->model.std[i];
  }
  fr_align_options ao = fr_align_defaults();
  if (o->align) {
    const char *dir = o->mtcnn_dir && *o->mtcnn_dir ? o->mtcnn_dir : fr_mtcnn_default_dir();
    rc = fr_aligner_create(w->vk, dir, &w->aligner, err);
    if (rc) {
      fr_error_prefix(err, "worker %s: --align", w->name);
      return rc;
    }
    ao.min_score = o->align_min_score;
    ao.min_face = o->align_min_face;
    ao.max_face = o->align_max_face;
    if (o->has_crop) { /* --crop frames the fallback; detection sees the whole image */
      pp.has_crop = 0;
      ao.has_fallback_crop = 1;
      ao.fallback_crop[0] = o->crop_x;
      ao.fallback_crop[1] = o->crop_y;
      ao.fallback_crop[2] = o->crop_w;
      ao.fallback_crop[3] = o->crop_h;
    }
  }
  rc = wk_pipeline_start(&w->pipe, w->engine, &pp, w->batch, w->model.embedding_size, w->decode_threads,
                         w->fds[1], err);
  if (!rc) {
    w->pipe_started = 1;
    /* Before any shard is submitted: the device thread reads them only after a submit. */
    w->pipe.ui_centre = w->model.ui_centre;
    w->pipe.aligner = w->aligner;
    w->pipe.align_opts = ao;
    rc = wk_pipeline_set_attention(&w->pipe, o->test_embedding, attn_dim(w), err);
  }
  return rc;
}

static int check_options(wk_worker *w, fr_error *err)
{
  const fr_worker_options *o = w->o;
  if (!o->endpoint || !*o->endpoint)
    return fr_error_set(err, FR_ERR_INVALID, "worker: no coordinator endpoint given");
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  w->batch = o->batch > 0 ? o->batch : 32;
  w->credit = o->credit > 0 ? o->credit : 2;
  w->decode_threads = o->decode_threads > 0 ? o->decode_threads : cores > 0 ? (int)cores : 1;
  w->hb_ms = o->heartbeat_ms > 0 ? o->heartbeat_ms : 1000;
  w->liveness = o->liveness > 0 ? o->liveness : 5;
  w->max_reconnect_s = o->max_reconnect_s > 0 ? o->max_reconnect_s : 60;
  if (o->align && (!(o->align_min_score >= 0.0f && o->align_min_score <= 1.0f) || o->align_min_face < 0 ||
                   o->align_max_face < 0 || o->align_min_face > (int)FR_PROTO_MAX_FACE ||
                   o->align_max_face > (int)FR_PROTO_MAX_FACE))
    return fr_error_set(err, FR_ERR_INVALID, "worker: align min score %g or face size %d:%d out of range",
                        (double)o->align_min_score, o->align_min_face, o->align_max_face);
  if (w->credit > (int)FR_PROTO_MAX_CREDIT)
    return fr_error_set(err, FR_ERR_INVALID, "worker: credit %d is over the protocol's limit of %u", w->credit,
                        FR_PROTO_MAX_CREDIT);
  if (o->name && *o->name) {
    snprintf(w->name, sizeof(w->name), "%s", o->name);
  } else {
    char host[200] = "";
    if (gethostname(host, sizeof(host) - 1))
      snprintf(host, sizeof(host), "unknown");
    snprintf(w->name, sizeof(w->name), "%s:%ld", host, (long)getpid());
  }
  return FR_OK;
}

int fr_worker_run(const fr_worker_options *opts, void *zmq_ctx, fr_error *err)
{
  wk_worker *w = calloc(1, sizeof(*w));
  if (!w)
    return fr_error_set(err, FR_ERR_NOMEM, "worker: out of memory");
  w->o = opts;
  w->fds[0] = w->fds[1] = -1;
  w->st.stop_code = -1;
  int rc = check_options(w, err);
  if (!rc) {
    w->held = calloc((size_t)w->credit, sizeof(*w->held));
    if (!w->held)
      rc = fr_error_set(err, FR_ERR_NOMEM, "worker: out of memory");
  }
  if (!rc && pipe(w->fds))
    rc = fr_error_set(err, FR_ERR_IO, "worker: cannot make a pipe: %s", strerror(errno));
  if (!rc && (fcntl(w->fds[0], F_SETFL, O_NONBLOCK) || fcntl(w->fds[1], F_SETFL, O_NONBLOCK)))
    rc = fr_error_set(err, FR_ERR_IO, "worker: cannot make the pipe non-blocking: %s", strerror(errno));
  if (!rc) {
    w->zctx = zmq_ctx;
    if (!w->zctx) {
      w->zctx = zmq_ctx_new();
      w->own_ctx = 1;
      if (!w->zctx)
        rc = fr_error_set(err, FR_ERR_IO, "worker: cannot make a ZeroMQ context: %s", zmq_strerror(zmq_errno()));
    }
  }
  if (!rc)
    rc = setup_device(w, err);
  if (!rc)
    rc = serve(w, err);
  close_socket(w);
  if (w->pipe_started) {
    free_jobs(wk_pipeline_stop(&w->pipe));
    /* Every pipeline thread has ended: its counters are final and unshared. */
    w->st.images = w->pipe.images;
    w->st.batches = w->pipe.batches;
    w->st.device_seconds = w->pipe.device_seconds;
    w->st.aligned = w->pipe.aligned;
    w->st.fallbacks = w->pipe.fallbacks;
    if (w->aligner)
      fr_info("worker %s: aligned %llu images, %llu fallbacks, aligning %.2f s on the device thread", w->name,
              (unsigned long long)w->pipe.aligned, (unsigned long long)w->pipe.fallbacks, w->pipe.align_seconds);
    if (w->pipe.batches > 0)
      fr_info("worker %s: %llu images in %llu device batches (%llu full, %.1f images per batch), device busy %.2f s, "
              "waiting for decoded batches %.2f s; decoding %.2f s",
              w->name, (unsigned long long)w->pipe.images, (unsigned long long)w->pipe.batches,
              (unsigned long long)w->pipe.full_batches, (double)w->pipe.images / (double)w->pipe.batches,
              w->pipe.device_seconds, w->pipe.device_wait_seconds, w->pipe.decode_seconds);
  }
  if (w->own_ctx && w->zctx)
    zmq_ctx_term(w->zctx);
  fr_aligner_destroy(w->aligner);
  fr_engine_destroy(w->engine);
  if (w->vk)
    w->st.validation_messages = fr_vk_validation_messages(w->vk);
  fr_vk_context_destroy(w->vk);
  if (w->have_model)
    fr_model_free(&w->model);
  for (int i = 0; i < 2; i++)
    if (w->fds[i] >= 0)
      close(w->fds[i]);
  if (opts->stats)
    *opts->stats = w->st;
  free(w->held);
  free(w);
  return rc;
}
