/* The worker against a test-side coordinator (a ROUTER that speaks the
 * protocol with fr_msg_encode/decode): as a thread over inproc, and as a real
 * process (this program re-executed as `faceri worker`) over tcp and ipc.
 * Real model, real images, a corrupt JPEG, an empty and a text item; hostile
 * frames; heartbeats while the device is busy; STOP codes; a silent
 * coordinator and reconnection. */
#include <fcntl.h>
#include <math.h>
#include <png.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "faceri/engine.h"
#include "faceri/model.h"
#include "faceri/preprocess.h"
#include "faceri/protocol.h"
#include "faceri/worker_loop.h"
#include "test_util.h"

static void *zctx;
static fr_model model;
static int have_model;
static fr_vk_context *vk;
static fr_engine *engine;
static fr_preprocess pp;
static char tmp_dir[256];
static char self_exe[1024];

static double now_s(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- images ---- */

typedef struct blob {
  uint8_t *data;
  size_t size;
} blob;

/* Called from the suite setup, so no CUnit asserts: an empty blob on failure. */
static blob png_bytes(int w, int h, int seed)
{
  blob none = {NULL, 0};
  png_image img;
  memset(&img, 0, sizeof(img));
  img.version = PNG_IMAGE_VERSION;
  img.width = (png_uint_32)w;
  img.height = (png_uint_32)h;
  img.format = PNG_FORMAT_RGB;
  uint8_t *px = malloc((size_t)w * h * 3);
  if (!px)
    return none;
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      for (int c = 0; c < 3; c++)
        px[((size_t)y * w + x) * 3 + c] = (uint8_t)((x * (3 + seed) + y * (5 + c) + seed * 37 + (x * y) % 17) & 255);
  png_alloc_size_t size = 0;
  blob b = none;
  if (png_image_write_to_memory(&img, NULL, &size, 0, px, 0, NULL) && (b.data = malloc(size)) &&
      png_image_write_to_memory(&img, b.data, &size, 0, px, 0, NULL)) {
    b.size = size;
  } else {
    free(b.data);
    b = none;
  }
  free(px);
  return b;
}

/* ---- the test-side coordinator ---- */

typedef struct coord {
  void *sock;
  char endpoint[512];
  uint64_t heartbeats;   /* HEARTBEATs received */
  double last_hb, max_hb_gap;
  int beat;               /* 1: send HEARTBEATs to `beat_to` while waiting, like a live coordinator */
  struct peer {
    uint8_t id[256];
    size_t len;
  } beat_to;
  double next_beat;
  uint64_t beat_seq;
} coord;

typedef struct peer peer;
static void coord_send(coord *c, const peer *to, const fr_msg *msg);

static void coord_open(coord *c, void *ctx, const char *bind)
{
  memset(c, 0, sizeof(*c));
  c->sock = zmq_socket(ctx, ZMQ_ROUTER);
  CU_ASSERT_PTR_NOT_NULL_FATAL(c->sock);
  int linger = 0;
  CU_ASSERT_EQUAL_FATAL(zmq_setsockopt(c->sock, ZMQ_LINGER, &linger, sizeof(linger)), 0);
  CU_ASSERT_EQUAL_FATAL(zmq_bind(c->sock, bind), 0);
  size_t n = sizeof(c->endpoint);
  CU_ASSERT_EQUAL_FATAL(zmq_getsockopt(c->sock, ZMQ_LAST_ENDPOINT, c->endpoint, &n), 0);
}

static void coord_close(coord *c)
{
  if (c->sock)
    CU_ASSERT_EQUAL(zmq_close(c->sock), 0);
  c->sock = NULL;
}

/* Receives one message within timeout_ms and decodes it: its type, or 0 on timeout. */
static int coord_recv(coord *c, int timeout_ms, peer *from, fr_msg *msg)
{
  zmq_pollitem_t it = {c->sock, 0, ZMQ_POLLIN, 0};
  double until = now_s() + timeout_ms / 1000.0;
  int n = 0;
  while (n == 0 && now_s() < until) {
    if (c->beat && now_s() >= c->next_beat) {
      fr_msg hb = {.type = FR_MSG_HEARTBEAT};
      hb.heartbeat = (fr_msg_heartbeat){.time_ms = (uint64_t)(now_s() * 1000), .sequence = ++c->beat_seq};
      coord_send(c, &c->beat_to, &hb);
      c->next_beat = now_s() + 0.05;
    }
    n = zmq_poll(&it, 1, 20);
    CU_ASSERT(n >= 0);
  }
  if (n <= 0)
    return 0;
  zmq_msg_t parts[16];
  size_t np = 0;
  int more = 1;
  while (more) {
    CU_ASSERT_FATAL(np < 16);
    zmq_msg_init(&parts[np]);
    CU_ASSERT_FATAL(zmq_msg_recv(&parts[np], c->sock, 0) >= 0);
    more = zmq_msg_more(&parts[np]);
    np++;
  }
  CU_ASSERT_FATAL(np >= 2);
  from->len = zmq_msg_size(&parts[0]);
  CU_ASSERT_FATAL(from->len <= sizeof(from->id));
  memcpy(from->id, zmq_msg_data(&parts[0]), from->len);
  fr_frame f[16];
  for (size_t i = 1; i < np; i++)
    f[i - 1] = (fr_frame){zmq_msg_data(&parts[i]), zmq_msg_size(&parts[i])};
  fr_error err = {0};
  int rc = fr_msg_decode(f, np - 1, 0, msg, &err);
  if (rc)
    printf("\n    coordinator got a malformed message: %s\n", err.message);
  CU_ASSERT_EQUAL_FATAL(rc, FR_OK);
  for (size_t i = 0; i < np; i++)
    zmq_msg_close(&parts[i]);
  if (msg->type == FR_MSG_READY && c->beat >= 0) {
    c->beat = 1; /* a live coordinator keeps the newest worker alive */
    c->beat_to = *from;
  }
  if (msg->type == FR_MSG_HEARTBEAT) {
    double t = now_s();
    if (c->heartbeats && t - c->last_hb > c->max_hb_gap)
      c->max_hb_gap = t - c->last_hb;
    c->last_hb = t;
    c->heartbeats++;
  }
  return msg->type;
}

/* Waits for a message of `type`, counting heartbeats on the way. 1 when it came. */
/* Waits are bounds on "never came", not speed checks: under the sanitizers on a loaded
 * machine a worker's set-up alone has taken over 60 s, so they stretch there. */
static double g_wait_scale = 1.0;

static int coord_wait(coord *c, int type, int timeout_ms, peer *from, fr_msg *msg)
{
  double until = now_s() + g_wait_scale * timeout_ms / 1000.0;
  for (;;) {
    int left = (int)((until - now_s()) * 1000.0);
    if (left <= 0)
      return 0;
    int got = coord_recv(c, left, from, msg);
    if (got == 0)
      return 0;
    if (got == type)
      return 1;
    fr_msg_free(msg);
  }
}

static void send_frames(coord *c, const peer *to, const fr_frame *f, size_t n)
{
  CU_ASSERT(zmq_send(c->sock, to->id, to->len, ZMQ_SNDMORE) >= 0);
  for (size_t i = 0; i < n; i++)
    CU_ASSERT(zmq_send(c->sock, f[i].data, f[i].size, i + 1 < n ? ZMQ_SNDMORE : 0) >= 0);
}

static void coord_send(coord *c, const peer *to, const fr_msg *msg)
{
  fr_frames frames;
  fr_error err = {0};
  CU_ASSERT_EQUAL_FATAL(fr_msg_encode(msg, &frames, &err), FR_OK);
  send_frames(c, to, frames.frame, frames.count);
  fr_frames_free(&frames);
}

static void send_shard(coord *c, const peer *to, uint64_t id, uint32_t attempt, const blob *images,
                       const char *const *keys, uint32_t n)
{
  fr_shard_item *items = calloc(n ? n : 1, sizeof(*items));
  CU_ASSERT_FATAL(items != NULL);
  for (uint32_t i = 0; i < n; i++)
    items[i] = (fr_shard_item){.index = id * 1000 + i, .key = fr_str_c(keys[i]), .image = images[i].data,
                               .image_size = images[i].size};
  fr_msg m = {.type = FR_MSG_SHARD};
  m.shard = (fr_msg_shard){.shard_id = id, .attempt = attempt, .count = n, .items = items};
  coord_send(c, to, &m);
  free(items);
}

static void send_stop(coord *c, const peer *to, uint32_t code, const char *reason)
{
  fr_msg m = {.type = FR_MSG_STOP};
  m.stop.code = code;
  m.stop.reason = fr_str_c(reason);
  coord_send(c, to, &m);
}

/* ---- the worker as a thread ---- */

typedef struct wthread {
  pthread_t t;
  fr_worker_options o;
  fr_worker_control control;
  fr_worker_stats stats;
  fr_error err;
  int rc;
} wthread;

static void *worker_main(void *arg)
{
  wthread *w = arg;
  w->rc = fr_worker_run(&w->o, zctx, &w->err);
  return NULL;
}

static void start_worker(wthread *w, const char *endpoint, int dry_run, int liveness)
{
  memset(w, 0, sizeof(*w));
  w->o = (fr_worker_options){.endpoint = endpoint, .batch = 16, .credit = 2, .decode_threads = 2,
                             .heartbeat_ms = 50, .liveness = liveness, .max_reconnect_s = 10, .name = "test-worker",
                             .dry_run = dry_run, .validation = 1, .control = &w->control, .stats = &w->stats};
  CU_ASSERT_EQUAL_FATAL(pthread_create(&w->t, NULL, worker_main, w), 0);
}

static void join_worker(wthread *w)
{
  CU_ASSERT_EQUAL(pthread_join(w->t, NULL), 0);
  if (w->rc)
    printf("\n    worker ended: %s\n", w->err.message);
}

static double cosine(const float *a, const float *b, int d)
{
  double ab = 0, aa = 0, bb = 0;
  for (int i = 0; i < d; i++) {
    ab += (double)a[i] * b[i];
    aa += (double)a[i] * a[i];
    bb += (double)b[i] * b[i];
  }
  return ab / sqrt(aa * bb);
}

/* Checks a RESULT of the standard mixed shard: 3 PNGs, a corrupt JPEG, an empty item, a text item. */
#define MIXED 6
static const char *mixed_keys[MIXED] = {"p/a.png", "p/b.png", "q/tiny.png", "p/broken.jpg", "p/empty.jpg",
                                        "p/README.txt"};
static blob mixed[MIXED];
static float ref_emb[3 * FR_PROTO_MAX_DIM], ref_norm[3]; /* fr_engine on the 3 PNGs, made in setup */

/* In setup, so the test-side coordinator never stalls its heartbeats on the device. */
static int make_reference(void)
{
  size_t per = (size_t)model.input_h * model.input_w * 3;
  float *input = malloc(3 * per * sizeof(float));
  fr_error err = {0};
  int rc = input ? FR_OK : FR_ERR_NOMEM;
  for (int i = 0; i < 3 && !rc; i++)
    rc = fr_preprocess_image(&pp, mixed[i].data, mixed[i].size, "ref", input + i * per, NULL, NULL, &err);
  if (!rc && model.embedding_size <= (int)FR_PROTO_MAX_DIM)
    rc = fr_engine_run(engine, input, 3, ref_emb, ref_norm, NULL, &err);
  if (rc)
    printf("reference embeddings: %s\n", err.message);
  free(input);
  return rc;
}

static int make_mixed(void)
{
  mixed[0] = png_bytes(150, 150, 1);
  mixed[1] = png_bytes(250, 200, 2);
  mixed[2] = png_bytes(20, 16, 3); /* very low resolution: upscaled */
  static uint8_t jpeg[] = "\xff\xd8\xff\xe0garbage and more garbage";
  mixed[3] = (blob){jpeg, sizeof(jpeg) - 1};
  static uint8_t empty[1];
  mixed[4] = (blob){empty, 0};
  static uint8_t text[] = "this is not a face\n";
  mixed[5] = (blob){text, sizeof(text) - 1};
  return mixed[0].data && mixed[1].data && mixed[2].data;
}

static void check_mixed_result(const fr_msg_result *r, uint64_t id, uint32_t attempt)
{
  CU_ASSERT_EQUAL(r->shard_id, id);
  CU_ASSERT_EQUAL(r->attempt, attempt);
  CU_ASSERT_EQUAL_FATAL(r->count, MIXED);
  CU_ASSERT_EQUAL_FATAL(r->embedding_dim, (uint32_t)model.embedding_size);
  static const int want[MIXED] = {FR_ITEM_OK, FR_ITEM_OK, FR_ITEM_OK, FR_ITEM_FAILED, FR_ITEM_FAILED,
                                  FR_ITEM_SKIPPED};
  int d = model.embedding_size;
  const float *emb = ref_emb, *norms = ref_norm;
  for (uint32_t i = 0; i < MIXED; i++) {
    const fr_result_item *it = &r->items[i];
    CU_ASSERT_EQUAL(it->index, id * 1000 + i);
    CU_ASSERT_EQUAL(it->status, want[i]);
    CU_ASSERT(isnan(it->ers) && isnan(it->ri));
    const float *row = r->embedding + (size_t)i * d;
    if (want[i] == FR_ITEM_OK) {
      double cs = cosine(row, emb + (size_t)i * d, d);
      CU_ASSERT(cs >= 0.99999);
      CU_ASSERT(fabsf(it->norm - norms[i]) <= 1e-4f * norms[i]);
      CU_ASSERT_EQUAL(it->error.len, 0);
    } else {
      CU_ASSERT(isnan(row[0]) && isnan(it->norm));
      /* The text names the item and says why. */
      CU_ASSERT_PTR_NOT_NULL(strstr(it->error.s, mixed_keys[i]));
      CU_ASSERT(it->error.len > strlen(mixed_keys[i]) + 5);
    }
  }
  CU_ASSERT_EQUAL(r->items[0].width, 150);
  CU_ASSERT_EQUAL(r->items[1].width, 250);
  CU_ASSERT_EQUAL(r->items[1].height, 200);
  CU_ASSERT_EQUAL(r->items[2].height, 16);
  CU_ASSERT_PTR_NOT_NULL(strstr(r->items[4].error.s, "empty"));
  CU_ASSERT_PTR_NOT_NULL(strstr(r->items[5].error.s, "not an image"));
}

/* One worker thread through a whole session: READY, a mixed shard, hostile
 * frames, a busy device with heartbeats flowing, a shard over credit, STOP 0. */
static void test_thread_session(void)
{
  if (!have_model)
    TEST_SKIP("no model file at %s", fr_model_default_path());
  coord c;
  coord_open(&c, zctx, "inproc://worker-session");
  wthread w;
  start_worker(&w, c.endpoint, 0, 40); /* 2 s: the test thread is slow to answer */
  peer p;
  fr_msg m;

  CU_ASSERT_FATAL(coord_wait(&c, FR_MSG_READY, 20000, &p, &m));
  CU_ASSERT_EQUAL(m.ready.credit, 2);
  CU_ASSERT_EQUAL(m.ready.embedding_dim, (uint32_t)model.embedding_size);
  CU_ASSERT_STRING_EQUAL(m.ready.model_sha256, model.file_sha256);
  CU_ASSERT_STRING_EQUAL(m.ready.worker.s, "test-worker");
  CU_ASSERT_STRING_EQUAL(m.ready.device.s, fr_vk_context_device(vk)->name);
  fr_msg_free(&m);

  send_shard(&c, &p, 7, 3, mixed, mixed_keys, MIXED);
  CU_ASSERT_FATAL(coord_wait(&c, FR_MSG_RESULT, 20000, &p, &m));
  check_mixed_result(&m.result, 7, 3);
  fr_msg_free(&m);

  /* Hostile frames: garbage, a SHARD whose item table lies, a READY (wrong direction). */
  fr_frame junk[2] = {{(const uint8_t *)"hello", 5}, {(const uint8_t *)"world", 5}};
  send_frames(&c, &p, junk, 2);
  fr_frames frames;
  fr_error err = {0};
  fr_msg lie = {.type = FR_MSG_SHARD};
  fr_shard_item one = {.index = 1, .key = fr_str_c("k"), .image = mixed[0].data, .image_size = mixed[0].size};
  lie.shard = (fr_msg_shard){.shard_id = 99, .attempt = 1, .count = 1, .items = &one};
  CU_ASSERT_EQUAL_FATAL(fr_msg_encode(&lie, &frames, &err), FR_OK);
  uint8_t header[16];
  memcpy(header, frames.frame[2].data, 16);
  header[12] = 200; /* count 200, but one item frame */
  fr_frame *f = frames.frame;
  fr_frame saved = f[2];
  f[2] = (fr_frame){header, 16};
  send_frames(&c, &p, f, frames.count);
  f[2] = saved;
  fr_frames_free(&frames);
  fr_msg ready = {.type = FR_MSG_READY};
  ready.ready = (fr_msg_ready){.worker = fr_str_c("x"), .device = fr_str_c("y"), .credit = 1, .embedding_dim = 4};
  memset(ready.ready.model_sha256, 'a', 64);
  coord_send(&c, &p, &ready);

  /* Still working: a long shard (one device batch of 16, then 8 more) with heartbeats all along. */
  enum { BUSY = 24 };
  blob busy[BUSY];
  const char *busy_keys[BUSY];
  for (int i = 0; i < BUSY; i++) {
    busy[i] = mixed[i % 2];
    busy_keys[i] = "busy.png";
  }
  c.heartbeats = 0;
  c.max_hb_gap = 0;
  double t0 = now_s();
  send_shard(&c, &p, 8, 1, busy, busy_keys, BUSY);
  send_shard(&c, &p, 9, 1, mixed, mixed_keys, MIXED);
  send_shard(&c, &p, 10, 1, mixed, mixed_keys, MIXED); /* over the credit of 2 */
  int got_result8 = 0, got_result9 = 0, got_failed10 = 0;
  while (!(got_result8 && got_result9 && got_failed10)) {
    int t = coord_recv(&c, 30000, &p, &m);
    CU_ASSERT_FATAL(t != 0);
    if (t == FR_MSG_RESULT && m.result.shard_id == 8) {
      got_result8 = 1;
      CU_ASSERT_EQUAL(m.result.count, BUSY);
      for (int i = 0; i < BUSY; i++)
        CU_ASSERT_EQUAL(m.result.items[i].status, FR_ITEM_OK);
    } else if (t == FR_MSG_RESULT && m.result.shard_id == 9) {
      got_result9 = 1;
      check_mixed_result(&m.result, 9, 1);
    } else if (t == FR_MSG_FAILED) {
      CU_ASSERT_EQUAL(m.failed.shard_id, 10);
      CU_ASSERT_PTR_NOT_NULL(strstr(m.failed.reason.s, "credit"));
      got_failed10 = 1;
    } else {
      CU_ASSERT_EQUAL(t, FR_MSG_HEARTBEAT);
    }
    fr_msg_free(&m);
  }
  double busy_s = now_s() - t0;
  printf("\n    busy %.2f s: %llu heartbeats, largest gap %.0f ms\n", busy_s, (unsigned long long)c.heartbeats,
         c.max_hb_gap * 1000);
  /* Silence for the whole device run is the bug this catches; the bounds leave room for a
   * loaded machine (no speed is asserted here). */
  CU_ASSERT(c.heartbeats >= 3);
  CU_ASSERT(c.max_hb_gap < 0.6 * busy_s);

  send_stop(&c, &p, FR_STOP_DONE, "all done");
  join_worker(&w);
  CU_ASSERT_EQUAL(w.rc, FR_OK);
  CU_ASSERT_EQUAL(w.stats.stop_code, 0);
  CU_ASSERT_EQUAL(w.stats.shards_answered, 3);
  CU_ASSERT_EQUAL(w.stats.shards_failed, 1);
  CU_ASSERT_EQUAL(w.stats.images, 3 + BUSY + 3);
  CU_ASSERT_EQUAL(w.stats.malformed, 3);
  CU_ASSERT(w.stats.heartbeats_sent > 0);
  CU_ASSERT_EQUAL(w.stats.validation_messages, 0);
  coord_close(&c);
}

/* A coordinator that never answers: the worker reconnects (READY again, a
 * new identity), then gives up after max_reconnect_s. */
static void test_silent_coordinator(void)
{
  if (!have_model)
    TEST_SKIP("no model file");
  coord c;
  coord_open(&c, zctx, "inproc://worker-silent");
  c.beat = -1; /* silent */
  wthread w;
  start_worker(&w, c.endpoint, 1, 3);
  peer p1, p2;
  fr_msg m;
  CU_ASSERT_FATAL(coord_wait(&c, FR_MSG_READY, 10000, &p1, &m));
  fr_msg_free(&m);
  double t0 = now_s();
  CU_ASSERT_FATAL(coord_wait(&c, FR_MSG_READY, 5000, &p2, &m));
  fr_msg_free(&m);
  double dt = now_s() - t0;
  printf("\n    READY again after %.0f ms of silence\n", dt * 1000);
  CU_ASSERT(dt >= 0.15); /* liveness 3 x 50 ms */
  CU_ASSERT(p1.len != p2.len || memcmp(p1.id, p2.id, p1.len) != 0);
  c.beat = 1; /* alive again */
  c.beat_to = p2;
  /* The new connection works. */
  send_shard(&c, &p2, 1, 1, mixed, mixed_keys, 2);
  CU_ASSERT_FATAL(coord_wait(&c, FR_MSG_RESULT, 5000, &p2, &m));
  CU_ASSERT_EQUAL(m.result.count, 2);
  CU_ASSERT(isnan(m.result.embedding[0])); /* dry run */
  CU_ASSERT_EQUAL(m.result.items[1].status, FR_ITEM_OK);
  fr_msg_free(&m);
  /* Asked to stop from another thread: it leaves with FR_OK. */
  fr_worker_request_stop(&w.control);
  join_worker(&w);
  CU_ASSERT_EQUAL(w.rc, FR_OK);
  CU_ASSERT(w.stats.reconnects >= 1);
  coord_close(&c);
}

static void test_gives_up(void)
{
  if (!have_model)
    TEST_SKIP("no model file");
  coord c;
  coord_open(&c, zctx, "inproc://worker-gives-up");
  wthread w;
  memset(&w, 0, sizeof(w));
  w.o = (fr_worker_options){.endpoint = c.endpoint, .heartbeat_ms = 50, .liveness = 2, .max_reconnect_s = 1,
                            .dry_run = 1, .stats = &w.stats};
  double t0 = now_s();
  CU_ASSERT_EQUAL_FATAL(pthread_create(&w.t, NULL, worker_main, &w), 0);
  join_worker(&w);
  double dt = now_s() - t0;
  CU_ASSERT_EQUAL(w.rc, FR_ERR_TIMEOUT);
  CU_ASSERT_PTR_NOT_NULL(strstr(w.err.message, "giving up"));
  CU_ASSERT(dt >= 1.0 && dt < 5.0);
  CU_ASSERT(w.stats.reconnects >= 2);
  coord_close(&c);
}

static void test_refused(void)
{
  if (!have_model)
    TEST_SKIP("no model file");
  coord c;
  coord_open(&c, zctx, "inproc://worker-refused");
  wthread w;
  start_worker(&w, c.endpoint, 1, 5);
  peer p;
  fr_msg m;
  CU_ASSERT_FATAL(coord_wait(&c, FR_MSG_READY, 10000, &p, &m));
  fr_msg_free(&m);
  send_stop(&c, &p, FR_STOP_REFUSED, "model SHA-256 differs from the run's");
  join_worker(&w);
  CU_ASSERT_EQUAL(w.rc, FR_ERR_INVALID);
  CU_ASSERT_PTR_NOT_NULL(strstr(w.err.message, "model SHA-256 differs"));
  CU_ASSERT_EQUAL(w.stats.stop_code, 1);
  coord_close(&c);
}

/* ---- the worker as a process: this program re-executed as `faceri worker` ---- */

static pid_t spawn_worker(const char *endpoint, const char *extra1, const char *extra2)
{
  pid_t pid = fork();
  CU_ASSERT_FATAL(pid >= 0);
  if (pid == 0) {
    const char *argv[16] = {self_exe, "--worker-child", "--connect", endpoint, "--heartbeat-ms", "100",
                            "--name", "child", "--batch", "4", "--liveness", "20", extra1, extra2, NULL};
    execv(self_exe, (char *const *)argv);
    _exit(127);
  }
  return pid;
}

static int wait_exit(pid_t pid, double timeout_s)
{
  double until = now_s() + timeout_s;
  int st;
  for (;;) {
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == pid)
      return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    if (now_s() > until) {
      kill(pid, SIGKILL);
      waitpid(pid, &st, 0);
      return -1;
    }
    usleep(10000);
  }
}

static void test_process_tcp_real_images(void)
{
  if (!have_model)
    TEST_SKIP("no model file");
  coord c;
  coord_open(&c, zctx, "tcp://127.0.0.1:*");
  pid_t pid = spawn_worker(c.endpoint, NULL, NULL);
  peer p;
  fr_msg m;
  CU_ASSERT_FATAL(coord_wait(&c, FR_MSG_READY, 30000, &p, &m));
  CU_ASSERT_STRING_EQUAL(m.ready.worker.s, "child");
  CU_ASSERT_STRING_EQUAL(m.ready.model_sha256, model.file_sha256);
  fr_msg_free(&m);
  send_shard(&c, &p, 3, 2, mixed, mixed_keys, MIXED);
  CU_ASSERT_FATAL(coord_wait(&c, FR_MSG_RESULT, 30000, &p, &m));
  check_mixed_result(&m.result, 3, 2);
  fr_msg_free(&m);
  send_stop(&c, &p, FR_STOP_DONE, "complete");
  CU_ASSERT_EQUAL(wait_exit(pid, 20), 0);
  coord_close(&c);
}

static void test_process_ipc_dry_run(void)
{
  if (!have_model)
    TEST_SKIP("no model file");
  char ep[400];
  snprintf(ep, sizeof(ep), "ipc://%s/coord.sock", tmp_dir);
  coord c;
  coord_open(&c, zctx, ep);
  pid_t pid = spawn_worker(c.endpoint, "--dry-run", NULL);
  peer p;
  fr_msg m;
  CU_ASSERT_FATAL(coord_wait(&c, FR_MSG_READY, 20000, &p, &m));
  CU_ASSERT_STRING_EQUAL(m.ready.device.s, "dry-run");
  fr_msg_free(&m);
  enum { N = 1000 };
  blob *imgs = calloc(N, sizeof(*imgs));
  const char **keys = calloc(N, sizeof(*keys));
  CU_ASSERT_FATAL(imgs && keys);
  for (int i = 0; i < N; i++) {
    imgs[i] = mixed[i % MIXED];
    keys[i] = mixed_keys[i % MIXED];
  }
  double t0 = now_s();
  int shards = 20;
  for (int s = 0; s < shards; s++) {
    send_shard(&c, &p, (uint64_t)s, 1, imgs, keys, N);
    CU_ASSERT_FATAL(coord_wait(&c, FR_MSG_RESULT, 10000, &p, &m));
    CU_ASSERT_EQUAL(m.result.shard_id, (uint64_t)s);
    CU_ASSERT_EQUAL(m.result.count, N);
    CU_ASSERT_EQUAL(m.result.items[N - 1].status, FR_ITEM_OK);
    CU_ASSERT(isnan(m.result.embedding[0]) && isnan(m.result.items[0].norm));
    fr_msg_free(&m);
  }
  double dt = now_s() - t0;
  printf("\n    dry run, one shard at a time: %.0f items/s\n", shards * N / dt);
  free(imgs);
  free(keys);
  /* SIGTERM: the worker leaves cleanly. */
  CU_ASSERT_EQUAL(kill(pid, SIGTERM), 0);
  CU_ASSERT_EQUAL(wait_exit(pid, 10), 0);
  coord_close(&c);
}

static void test_process_usage(void)
{
  pid_t pid = fork();
  CU_ASSERT_FATAL(pid >= 0);
  if (pid == 0) {
    const char *argv[] = {self_exe, "--worker-child", "--batch", "0", NULL};
    int null = open("/dev/null", 1);
    if (null >= 0)
      dup2(null, 2);
    execv(self_exe, (char *const *)argv);
    _exit(127);
  }
  CU_ASSERT_EQUAL(wait_exit(pid, 10), 2);
}

/* ---- setup ---- */

static int suite_init(void)
{
  zctx = zmq_ctx_new();
  if (!zctx)
    return 1;
  snprintf(tmp_dir, sizeof(tmp_dir), "/tmp/faceri_test_worker_XXXXXX");
  if (!mkdtemp(tmp_dir))
    return 1;
  ssize_t n = readlink("/proc/self/exe", self_exe, sizeof(self_exe) - 1);
  if (n <= 0)
    return 1;
  self_exe[n] = '\0';
  if (!make_mixed())
    return 1;
  struct stat st;
  if (stat(fr_model_default_path(), &st) != 0)
    return 0;
  fr_error err = {0};
  fr_vk_options vo = {.validation = 1};
  fr_engine_options eo = {.max_batch = 8};
  if (fr_model_load(fr_model_default_path(), &model, &err) || fr_vk_context_create(&vo, &vk, &err) ||
      fr_engine_create(vk, &model, &eo, &engine, &err)) {
    printf("setup: %s\n", err.message);
    return 1;
  }
  pp = (fr_preprocess){.input_w = model.input_w, .input_h = model.input_h};
  for (int i = 0; i < 3; i++) {
    pp.mean[i] = model.mean[i];
    pp.std[i] = model.std[i];
  }
  if (make_reference())
    return 1;
  have_model = 1;
  return 0;
}

static int suite_clean(void)
{
  if (vk && fr_vk_validation_messages(vk) != 0)
    printf("test context: %llu validation messages\n", (unsigned long long)fr_vk_validation_messages(vk));
  int bad = vk && fr_vk_validation_messages(vk) != 0;
  fr_engine_destroy(engine);
  fr_vk_context_destroy(vk);
  if (have_model)
    fr_model_free(&model);
  for (int i = 0; i < 3; i++)
    free(mixed[i].data);
  char path[512];
  snprintf(path, sizeof(path), "%s/coord.sock", tmp_dir);
  unlink(path);
  rmdir(tmp_dir);
  /* After a fatal assertion a worker may still hold a socket: term would wait for it forever. */
  if (CU_get_number_of_failures() == 0)
    zmq_ctx_term(zctx);
  return bad;
}

int main(int argc, char **argv)
{
  if (argc > 1 && !strcmp(argv[1], "--worker-child"))
    return fr_cmd_worker(argc - 1, argv + 1);
  if (getenv("FACERI_SANITIZER_RUN"))
    g_wait_scale = 10.0;
  if (CU_initialize_registry() != CUE_SUCCESS)
    return 1;
  CU_pSuite s = CU_add_suite("worker", suite_init, suite_clean);
  CU_add_test(s, "thread over inproc: READY, mixed shard, hostile frames, busy heartbeats, credit, STOP 0",
              test_thread_session);
  CU_add_test(s, "silent coordinator: reconnect with READY again", test_silent_coordinator);
  CU_add_test(s, "silent coordinator: gives up after max-reconnect-s", test_gives_up);
  CU_add_test(s, "STOP code 1 ends with the reason", test_refused);
  CU_add_test(s, "process over tcp: real images equal to the engine, STOP 0 exits 0", test_process_tcp_real_images);
  CU_add_test(s, "process over ipc: dry run, SIGTERM exits 0", test_process_ipc_dry_run);
  CU_add_test(s, "process: bad option exits 2", test_process_usage);
  return test_run_all();
}
