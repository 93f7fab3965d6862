/* The coordinator against test-side DEALER peers that speak the wire protocol
 * and answer with a deterministic fake embedding per index (row i's embedding
 * is i*10 + j), so the results file shows exactly which item went where.
 * Peers misbehave on purpose: vanish, hang, repeat, lie about indices, fail,
 * bring the wrong model. Everything runs over inproc:// in one ZeroMQ context. */
#include <hdf5.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "faceri/log.h"
#include "faceri/protocol.h"
#include "faceri/scheduler.h"
#include "test_util.h"

#define D 8
#define SHA "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define HB_MS 40

static void *g_zctx;
static char g_dir[256];

/* ---- inputs ---- */

static void write_file(const char *path, const void *data, size_t n)
{
  FILE *f = fopen(path, "wb");
  CU_ASSERT_FATAL(f != NULL);
  CU_ASSERT_FATAL(fwrite(data, 1, n, f) == n);
  fclose(f);
}

/* A folder of n fake JPEGs (magic bytes only: the peers never decode), in
 * two label folders; names sort in index order. Returns the folder path. */
static void make_images(const char *dir, int n)
{
  char path[512];
  mkdir(dir, 0700);
  for (int i = 0; i < n; i++) {
    snprintf(path, sizeof(path), "%s/%s", dir, i < n / 2 ? "alice" : "bob");
    mkdir(path, 0700);
    snprintf(path, sizeof(path), "%s/%s/%04d.jpg", dir, i < n / 2 ? "alice" : "bob", i);
    uint8_t bytes[32] = {0xFF, 0xD8, 0xFF, 0xE0};
    memcpy(bytes + 4, &i, sizeof(i));
    write_file(path, bytes, sizeof(bytes));
  }
}

/* ---- peers ---- */

typedef enum peer_kind {
  PEER_NORMAL,
  PEER_VANISH,    /* closes its socket after `after` SHARDs, unanswered */
  PEER_HANG,      /* after `after` SHARDs: silent, socket open */
  PEER_DUPLICATE, /* every RESULT twice, plus one for an old attempt */
  PEER_LIAR,      /* the first RESULT has wrong indices, then normal */
  PEER_WRONG_SHA,
} peer_kind;

typedef struct peer {
  peer_kind kind;
  int after;
  uint32_t credit;
  int64_t poison; /* a SHARD holding this index gets FAILED; -1: none */
  char endpoint[64], name[32];
  atomic_int quit;
  pthread_t thread;
  /* results */
  int shards_seen, results_sent, items_seen;
  atomic_int stop_code; /* -1 until a STOP arrives */
} peer;

static int send_msg(void *sock, const fr_msg *m)
{
  fr_frames fr;
  fr_error err = {0};
  if (fr_msg_encode(m, &fr, &err))
    return -1;
  for (size_t i = 0; i < fr.count; i++)
    /* DONTWAIT: a peer that connects after the coordinator is gone must not block. */
    zmq_send(sock, fr.frame[i].data, fr.frame[i].size, (i + 1 < fr.count ? ZMQ_SNDMORE : 0) | ZMQ_DONTWAIT);
  fr_frames_free(&fr);
  return 0;
}

static void answer(peer *p, void *sock, const fr_msg_shard *sh)
{
  for (uint32_t i = 0; i < sh->count; i++)
    if ((int64_t)sh->items[i].index == p->poison) {
      fr_msg f = {.type = FR_MSG_FAILED,
                  .failed = {.shard_id = sh->shard_id, .attempt = sh->attempt, .reason = fr_str_c("poisoned")}};
      send_msg(sock, &f);
      return;
    }
  fr_result_item *items = calloc(sh->count + 1, sizeof(*items));
  float *emb = calloc((size_t)(sh->count + 1) * D, sizeof(float));
  for (uint32_t i = 0; i < sh->count; i++) {
    uint64_t idx = sh->items[i].index;
    items[i] = (fr_result_item){.index = idx, .status = 0, .width = (uint32_t)idx + 1, .height = 7,
                                .norm = 1.5f, .ers = NAN, .ri = NAN};
    if (p->kind == PEER_LIAR && p->results_sent == 0)
      items[i].index = idx + 1000;
    for (int j = 0; j < D; j++)
      emb[i * D + j] = (float)(idx * 10 + (uint64_t)j);
  }
  fr_msg r = {.type = FR_MSG_RESULT,
              .result = {.shard_id = sh->shard_id, .attempt = sh->attempt, .count = sh->count, .embedding_dim = D,
                         .items = items, .embedding = emb}};
  send_msg(sock, &r);
  if (p->kind == PEER_DUPLICATE) {
    send_msg(sock, &r);
    r.result.attempt = sh->attempt + 7; /* an attempt the coordinator never made */
    send_msg(sock, &r);
  }
  p->results_sent++;
  free(items);
  free(emb);
}

static double now_s(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void *peer_main(void *arg)
{
  peer *p = arg;
  void *sock = zmq_socket(g_zctx, ZMQ_DEALER);
  int linger = 0;
  zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof(linger));
  zmq_connect(sock, p->endpoint);
  fr_msg ready = {.type = FR_MSG_READY,
                  .ready = {.worker = fr_str_c(p->name), .device = fr_str_c("fake device"),
                            .credit = p->credit ? p->credit : 2, .embedding_dim = D}};
  snprintf(ready.ready.model_sha256, sizeof(ready.ready.model_sha256), "%s",
           p->kind == PEER_WRONG_SHA ? "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff" : SHA);
  send_msg(sock, &ready);
  double next_hb = now_s();
  int silent = 0;
  uint64_t seq = 0;
  while (!atomic_load(&p->quit)) {
    if (!silent && now_s() >= next_hb) {
      fr_msg hb = {.type = FR_MSG_HEARTBEAT, .heartbeat = {.time_ms = (uint64_t)(now_s() * 1000), .sequence = ++seq}};
      send_msg(sock, &hb);
      next_hb = now_s() + HB_MS / 1000.0;
    }
    zmq_pollitem_t it = {.socket = sock, .events = ZMQ_POLLIN};
    if (zmq_poll(&it, 1, 5) <= 0)
      continue;
    zmq_msg_t parts[64];
    int n = 0, more = 1;
    while (more && n < 64) {
      zmq_msg_init(&parts[n]);
      zmq_msg_recv(&parts[n], sock, 0);
      more = zmq_msg_more(&parts[n]);
      n++;
    }
    fr_frame frames[64];
    for (int i = 0; i < n; i++)
      frames[i] = (fr_frame){zmq_msg_data(&parts[i]), zmq_msg_size(&parts[i])};
    fr_msg m;
    fr_error err = {0};
    if (fr_msg_decode(frames, (size_t)n, 0, &m, &err) == FR_OK) {
      if (m.type == FR_MSG_STOP) {
        atomic_store(&p->stop_code, (int)m.stop.code);
        atomic_store(&p->quit, 1);
      } else if (m.type == FR_MSG_SHARD && !silent) {
        p->shards_seen++;
        p->items_seen += (int)m.shard.count;
        if ((p->kind == PEER_VANISH || p->kind == PEER_HANG) && p->shards_seen > p->after) {
          if (p->kind == PEER_VANISH)
            atomic_store(&p->quit, 1);
          silent = 1;
        } else {
          answer(p, sock, &m.shard);
        }
      }
      fr_msg_free(&m);
    }
    for (int i = 0; i < n; i++)
      zmq_msg_close(&parts[i]);
  }
  zmq_close(sock);
  return NULL;
}

static void peer_start(peer *p, const char *endpoint, const char *name, peer_kind kind)
{
  memset(p, 0, sizeof(*p));
  p->kind = kind;
  p->poison = -1;
  snprintf(p->endpoint, sizeof(p->endpoint), "%s", endpoint);
  snprintf(p->name, sizeof(p->name), "%s", name);
  atomic_init(&p->quit, 0);
  atomic_init(&p->stop_code, -1);
}

static void peer_go(peer *p) { CU_ASSERT_FATAL(pthread_create(&p->thread, NULL, peer_main, p) == 0); }

/* Gives a live peer up to 2 s to read the STOP already queued for it. */
static void peer_join(peer *p)
{
  for (int i = 0; i < 200 && atomic_load(&p->stop_code) < 0 && p->kind == PEER_NORMAL; i++)
    usleep(10000);
  atomic_store(&p->quit, 1);
  pthread_join(p->thread, NULL);
}

/* ---- the coordinator in a thread ---- */

typedef struct coord_run {
  fr_coordinator_options o;
  const char *inputs[4];
  char output[300], endpoint[64];
  fr_coordinator_summary sum;
  fr_error err;
  int rc;
  pthread_t thread;
} coord_run;

static void coord_init(coord_run *c, const char *name, const char *input)
{
  memset(c, 0, sizeof(*c));
  snprintf(c->endpoint, sizeof(c->endpoint), "inproc://%s", name);
  snprintf(c->output, sizeof(c->output), "%s/%s.h5", g_dir, name);
  c->inputs[0] = input;
  c->o = (fr_coordinator_options){.bind = c->endpoint, .inputs = c->inputs, .n_inputs = 1, .output = c->output,
                                  .shard_size = 8, .heartbeat_ms = HB_MS, .liveness = 10, .max_attempts = 3,
                                  .model_sha256 = SHA, .embedding_size = D, .command_line = "test_scheduler"};
}

static void *coord_main(void *arg)
{
  coord_run *c = arg;
  c->rc = fr_coordinator_run(&c->o, g_zctx, &c->sum, &c->err);
  return NULL;
}

static void coord_go(coord_run *c) { CU_ASSERT_FATAL(pthread_create(&c->thread, NULL, coord_main, c) == 0); }

static void coord_join(coord_run *c)
{
  pthread_join(c->thread, NULL);
  if (c->rc)
    printf("\n  coordinator: %s\n", c->err.message);
}

/* ---- reading the file back (HDF5 directly: an independent reader) ---- */

typedef struct file_view {
  int64_t n;
  int8_t *status;
  float *emb;
  int32_t *width;
  char **key;
  int64_t n_shards;
  int64_t *shard_first, *shard_count;
  int8_t *shard_state;
  char state[64];
} file_view;

static int64_t read_1d(hid_t f, const char *name, hid_t type, void **out, size_t elem, size_t per_row)
{
  hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
  if (d < 0)
    return -1;
  hid_t s = H5Dget_space(d);
  hsize_t dims[2] = {0, 0};
  H5Sget_simple_extent_dims(s, dims, NULL);
  *out = calloc(dims[0] * per_row + 1, elem);
  if (dims[0] > 0)
    H5Dread(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, *out);
  H5Sclose(s);
  H5Dclose(d);
  return (int64_t)dims[0];
}

static int view_open(const char *path, file_view *v)
{
  memset(v, 0, sizeof(*v));
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0)
    return -1;
  v->n = read_1d(f, "/items/status", H5T_NATIVE_INT8, (void **)&v->status, 1, 1);
  read_1d(f, "/embedding", H5T_NATIVE_FLOAT, (void **)&v->emb, sizeof(float), D);
  read_1d(f, "/items/width", H5T_NATIVE_INT32, (void **)&v->width, sizeof(int32_t), 1);
  hid_t st = H5Tcopy(H5T_C_S1);
  H5Tset_size(st, H5T_VARIABLE);
  read_1d(f, "/items/key", st, (void **)&v->key, sizeof(char *), 1);
  H5Tclose(st);
  v->n_shards = read_1d(f, "/shards/first", H5T_NATIVE_INT64, (void **)&v->shard_first, sizeof(int64_t), 1);
  read_1d(f, "/shards/count", H5T_NATIVE_INT64, (void **)&v->shard_count, sizeof(int64_t), 1);
  read_1d(f, "/shards/state", H5T_NATIVE_INT8, (void **)&v->shard_state, 1, 1);
  hid_t a = H5Aopen(f, "state", H5P_DEFAULT);
  if (a >= 0) {
    hid_t t = H5Aget_type(a);
    if (H5Tis_variable_str(t) > 0) {
      char *s = NULL;
      H5Aread(a, t, &s);
      snprintf(v->state, sizeof(v->state), "%s", s ? s : "");
      H5free_memory(s);
    } else {
      char buf[64] = {0};
      if (H5Tget_size(t) < sizeof(buf))
        H5Aread(a, t, buf);
      snprintf(v->state, sizeof(v->state), "%s", buf);
    }
    H5Tclose(t);
    H5Aclose(a);
  }
  H5Fclose(f);
  return 0;
}

static void view_free(file_view *v)
{
  for (int64_t i = 0; i < v->n && v->key; i++)
    H5free_memory(v->key[i]);
  free(v->status), free(v->emb), free(v->width), free(v->key);
  free(v->shard_first), free(v->shard_count), free(v->shard_state);
}

/* Every row written exactly once: committed shards tile [0, n) with no overlap. */
static void check_tiling(const file_view *v)
{
  int *cover = calloc((size_t)v->n + 1, sizeof(int));
  for (int64_t s = 0; s < v->n_shards; s++)
    for (int64_t i = v->shard_first[s]; i < v->shard_first[s] + v->shard_count[s]; i++)
      if (i >= 0 && i < v->n)
        cover[i]++;
  int bad = 0;
  for (int64_t i = 0; i < v->n; i++)
    bad += cover[i] != 1;
  CU_ASSERT_EQUAL(bad, 0);
  free(cover);
}

/* Row i is the fake embedding of index i, status ok. */
static int row_is_index(const file_view *v, int64_t i)
{
  if (v->status[i] != 0 || v->width[i] != (int32_t)i + 1)
    return 0;
  for (int j = 0; j < D; j++)
    if (v->emb[i * D + j] != (float)(i * 10 + j))
      return 0;
  return 1;
}

static int all_rows_ok(const file_view *v)
{
  int good = 0;
  for (int64_t i = 0; i < v->n; i++)
    good += row_is_index(v, i);
  return good;
}

/* ---- tests ---- */

static void test_exactly_once(void)
{
  char dir[300];
  snprintf(dir, sizeof(dir), "%s/once", g_dir);
  make_images(dir, 200);
  coord_run c;
  coord_init(&c, "once", dir);
  peer p[3];
  for (int i = 0; i < 3; i++) {
    char name[32];
    snprintf(name, sizeof(name), "peer-%d", i);
    peer_start(&p[i], c.endpoint, name, PEER_NORMAL);
    p[i].credit = (uint32_t)(1 + i);
    peer_go(&p[i]);
  }
  coord_go(&c);
  coord_join(&c);
  for (int i = 0; i < 3; i++)
    peer_join(&p[i]);
  CU_ASSERT_EQUAL(c.rc, FR_OK);
  CU_ASSERT(c.sum.complete);
  CU_ASSERT_EQUAL(c.sum.items, 200);
  CU_ASSERT_EQUAL(c.sum.ok, 200);
  CU_ASSERT_EQUAL(c.sum.n_workers, 3);
  int items = 0;
  for (int i = 0; i < 3; i++) {
    CU_ASSERT_EQUAL(atomic_load(&p[i].stop_code), 0);
    items += p[i].items_seen;
    CU_ASSERT(p[i].results_sent > 0); /* work was shared */
  }
  CU_ASSERT_EQUAL(items, 200);
  file_view v;
  CU_ASSERT_FATAL(view_open(c.output, &v) == 0);
  CU_ASSERT_EQUAL(v.n, 200);
  CU_ASSERT_EQUAL(all_rows_ok(&v), 200);
  CU_ASSERT_STRING_EQUAL(v.state, "complete");
  check_tiling(&v);
  CU_ASSERT(strstr(v.key[0], "alice/0000.jpg") != NULL);
  CU_ASSERT(strstr(v.key[199], "bob/0199.jpg") != NULL);
  view_free(&v);
  fr_coordinator_summary_free(&c.sum);
}

/* One peer misbehaves, one normal peer finishes the run. */
static void run_with_bad_peer(const char *name, peer_kind kind, int after, int n_items, coord_run *c, peer *bad,
                              peer *good)
{
  char dir[300];
  snprintf(dir, sizeof(dir), "%s/%s-in", g_dir, name);
  make_images(dir, n_items);
  coord_init(c, name, dir);
  c->o.liveness = 4; /* the hang and vanish cases wait for this */
  peer_start(bad, c->endpoint, "bad", kind);
  bad->after = after;
  peer_start(good, c->endpoint, "good", PEER_NORMAL);
  peer_go(bad);
  usleep(5000); /* the bad peer's READY first: it gets the first shard */
  peer_go(good);
  coord_go(c);
  coord_join(c);
  peer_join(bad);
  peer_join(good);
}

static void check_all_ok(coord_run *c, int n)
{
  CU_ASSERT_EQUAL(c->rc, FR_OK);
  CU_ASSERT(c->sum.complete);
  CU_ASSERT_EQUAL(c->sum.ok, n);
  file_view v;
  CU_ASSERT_FATAL(view_open(c->output, &v) == 0);
  CU_ASSERT_EQUAL(v.n, n);
  CU_ASSERT_EQUAL(all_rows_ok(&v), n);
  CU_ASSERT_STRING_EQUAL(v.state, "complete");
  check_tiling(&v);
  view_free(&v);
}

static void test_peer_vanishes(void)
{
  coord_run c;
  peer bad, good;
  run_with_bad_peer("vanish", PEER_VANISH, 1, 64, &c, &bad, &good);
  check_all_ok(&c, 64);
  CU_ASSERT(c.sum.leases_lost >= 1);
  CU_ASSERT(bad.shards_seen >= 2);
  fr_coordinator_summary_free(&c.sum);
}

static void test_peer_hangs(void)
{
  coord_run c;
  peer bad, good;
  run_with_bad_peer("hang", PEER_HANG, 0, 48, &c, &bad, &good);
  check_all_ok(&c, 48);
  CU_ASSERT(c.sum.leases_lost >= 1);
  CU_ASSERT_EQUAL(bad.results_sent, 0);
  fr_coordinator_summary_free(&c.sum);
}

static void test_duplicates_ignored(void)
{
  coord_run c;
  peer bad, good;
  run_with_bad_peer("dup", PEER_DUPLICATE, 0, 40, &c, &bad, &good);
  check_all_ok(&c, 40);
  CU_ASSERT(bad.results_sent > 0);
  CU_ASSERT(c.sum.messages_dropped >= 2 * bad.results_sent);
  CU_ASSERT_EQUAL(c.sum.shards_committed, 5);
  fr_coordinator_summary_free(&c.sum);
}

static void test_wrong_indices_rejected(void)
{
  coord_run c;
  peer bad, good;
  run_with_bad_peer("liar", PEER_LIAR, 0, 40, &c, &bad, &good);
  check_all_ok(&c, 40); /* the lied-about shard was redone */
  CU_ASSERT(c.sum.messages_dropped >= 1);
  CU_ASSERT_EQUAL(c.sum.shards_failed, 0);
  fr_coordinator_summary_free(&c.sum);
}

static void test_poisoned_shard_fails(void)
{
  char dir[300];
  snprintf(dir, sizeof(dir), "%s/poison-in", g_dir);
  make_images(dir, 40);
  coord_run c;
  coord_init(&c, "poison", dir);
  peer p[2];
  peer_start(&p[0], c.endpoint, "p0", PEER_NORMAL);
  peer_start(&p[1], c.endpoint, "p1", PEER_NORMAL);
  p[0].poison = p[1].poison = 19; /* shard 16..23 */
  peer_go(&p[0]);
  peer_go(&p[1]);
  coord_go(&c);
  coord_join(&c);
  peer_join(&p[0]);
  peer_join(&p[1]);
  CU_ASSERT_EQUAL(c.rc, FR_OK);
  CU_ASSERT(c.sum.complete);
  CU_ASSERT_EQUAL(c.sum.shards_failed, 1);
  CU_ASSERT_EQUAL(c.sum.failed, 8);
  CU_ASSERT_EQUAL(c.sum.ok, 32);
  file_view v;
  CU_ASSERT_FATAL(view_open(c.output, &v) == 0);
  CU_ASSERT_EQUAL(v.n, 40);
  check_tiling(&v);
  for (int64_t i = 0; i < 40; i++)
    CU_ASSERT(i >= 16 && i < 24 ? v.status[i] == 1 : row_is_index(&v, i));
  int failed_shards = 0;
  for (int64_t s = 0; s < v.n_shards; s++)
    failed_shards += v.shard_state[s] == 2 && v.shard_first[s] == 16;
  CU_ASSERT_EQUAL(failed_shards, 1);
  view_free(&v);
  fr_coordinator_summary_free(&c.sum);
}

static void test_wrong_model_refused(void)
{
  coord_run c;
  peer bad, good;
  run_with_bad_peer("sha", PEER_WRONG_SHA, 0, 16, &c, &bad, &good);
  check_all_ok(&c, 16);
  CU_ASSERT_EQUAL(atomic_load(&bad.stop_code), 1);
  CU_ASSERT_EQUAL(bad.shards_seen, 0);
  CU_ASSERT_EQUAL(c.sum.refused_workers, 1);
  fr_coordinator_summary_free(&c.sum);
}

static void test_coordinator_rows(void)
{
  char dir[300], path[400];
  snprintf(dir, sizeof(dir), "%s/mixed", g_dir);
  make_images(dir, 20);
  snprintf(path, sizeof(path), "%s/alice/0003.txt", dir); /* sorts between 0003.jpg and 0004.jpg */
  write_file(path, "not a face\n", 11);
  snprintf(path, sizeof(path), "%s/bob/0015.jpg.big", dir); /* over the size cap: unreadable */
  uint8_t big[600] = {0xFF, 0xD8, 0xFF};
  write_file(path, big, sizeof(big));
  coord_run c;
  coord_init(&c, "mixed", dir);
  c.o.max_item_bytes = 100;
  peer p;
  peer_start(&p, c.endpoint, "p", PEER_NORMAL);
  peer_go(&p);
  coord_go(&c);
  coord_join(&c);
  peer_join(&p);
  CU_ASSERT_EQUAL(c.rc, FR_OK);
  CU_ASSERT(c.sum.complete);
  CU_ASSERT_EQUAL(c.sum.items, 22);
  CU_ASSERT_EQUAL(c.sum.skipped, 1);
  CU_ASSERT_EQUAL(c.sum.failed, 1);
  CU_ASSERT_EQUAL(p.items_seen, 20); /* the coordinator kept the other two to itself */
  file_view v;
  CU_ASSERT_FATAL(view_open(c.output, &v) == 0);
  CU_ASSERT_EQUAL_FATAL(v.n, 22);
  check_tiling(&v);
  int skipped = -1, failed = -1;
  for (int i = 0; i < 22; i++) {
    if (v.status[i] == 2)
      skipped = i;
    if (v.status[i] == 1)
      failed = i;
  }
  CU_ASSERT_FATAL(skipped >= 0 && failed >= 0);
  CU_ASSERT(strstr(v.key[skipped], "0003.txt") != NULL);
  CU_ASSERT(strstr(v.key[failed], "0015.jpg.big") != NULL);
  view_free(&v);
  fr_coordinator_summary_free(&c.sum);
}

static void test_resume(void)
{
  char dir[300];
  snprintf(dir, sizeof(dir), "%s/resume-in", g_dir);
  make_images(dir, 100);
  /* The reference: one undisturbed run. */
  coord_run ref;
  coord_init(&ref, "resume-ref", dir);
  peer p;
  peer_start(&p, ref.endpoint, "p", PEER_NORMAL);
  peer_go(&p);
  coord_go(&ref);
  coord_join(&ref);
  peer_join(&p);
  CU_ASSERT_FATAL(ref.rc == FR_OK && ref.sum.complete);
  /* Stopped after 4 commits, then resumed into the same file. */
  coord_run a;
  coord_init(&a, "resume", dir);
  a.o.stop_after_commits = 4;
  peer_start(&p, a.endpoint, "p", PEER_NORMAL);
  p.credit = 3;
  peer_go(&p);
  coord_go(&a);
  coord_join(&a);
  peer_join(&p);
  CU_ASSERT_EQUAL(a.rc, FR_OK);
  CU_ASSERT_FALSE(a.sum.complete);
  if (atomic_load(&p.stop_code) != 2)
    printf("\n  stop code %d\n", atomic_load(&p.stop_code));
  CU_ASSERT_EQUAL(atomic_load(&p.stop_code), 2);
  file_view v;
  CU_ASSERT_FATAL(view_open(a.output, &v) == 0);
  CU_ASSERT_STRING_EQUAL(v.state, "running");
  CU_ASSERT_EQUAL(v.n_shards, 4);
  view_free(&v);

  coord_run b;
  coord_init(&b, "resume", dir);
  snprintf(b.endpoint, sizeof(b.endpoint), "inproc://resume-2");
  b.o.resume = 1;
  peer_start(&p, b.endpoint, "p2", PEER_NORMAL);
  peer_go(&p);
  coord_go(&b);
  coord_join(&b);
  peer_join(&p);
  CU_ASSERT_EQUAL(b.rc, FR_OK);
  CU_ASSERT(b.sum.complete);
  CU_ASSERT_EQUAL(b.sum.resumed, 32);
  CU_ASSERT_EQUAL(b.sum.items, 68);
  CU_ASSERT_EQUAL(p.items_seen, 68); /* nothing computed twice */
  file_view r;
  CU_ASSERT_FATAL(view_open(b.output, &v) == 0);
  CU_ASSERT_FATAL(view_open(ref.output, &r) == 0);
  CU_ASSERT_EQUAL(v.n, r.n);
  CU_ASSERT_EQUAL(all_rows_ok(&v), 100);
  CU_ASSERT_STRING_EQUAL(v.state, "complete");
  check_tiling(&v);
  int same = 0;
  for (int64_t i = 0; i < v.n && i < r.n; i++)
    same += strcmp(v.key[i], r.key[i]) == 0 && v.status[i] == r.status[i] &&
            memcmp(v.emb + i * D, r.emb + i * D, D * sizeof(float)) == 0;
  CU_ASSERT_EQUAL(same, 100);
  view_free(&v);
  view_free(&r);
  fr_coordinator_summary_free(&ref.sum);
  fr_coordinator_summary_free(&a.sum);
  fr_coordinator_summary_free(&b.sum);
}

/* Hostile bytes straight at the ROUTER: dropped, the run unaffected. */
static void test_garbage_dropped(void)
{
  char dir[300];
  snprintf(dir, sizeof(dir), "%s/garbage-in", g_dir);
  make_images(dir, 16);
  coord_run c;
  coord_init(&c, "garbage", dir);
  coord_go(&c);
  void *s = zmq_socket(g_zctx, ZMQ_DEALER);
  int linger = 0;
  zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof(linger));
  zmq_connect(s, c.endpoint);
  zmq_send(s, "hello", 5, 0);
  zmq_send(s, "FACERI\x01\x00", 8, ZMQ_SNDMORE);
  zmq_send(s, "\x03", 1, 0); /* a RESULT cut short */
  fr_msg hb = {.type = FR_MSG_HEARTBEAT}; /* before READY */
  send_msg(s, &hb);
  usleep(50000);
  peer p;
  peer_start(&p, c.endpoint, "p", PEER_NORMAL);
  peer_go(&p);
  coord_join(&c);
  peer_join(&p);
  zmq_close(s);
  check_all_ok(&c, 16);
  CU_ASSERT(c.sum.messages_dropped >= 3);
  fr_coordinator_summary_free(&c.sum);
}

static void rm_rf(const char *dir)
{
  char cmd[600];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
  if (system(cmd) != 0)
    fprintf(stderr, "could not remove %s\n", dir);
}

int main(void)
{
  fr_log_set_level(getenv("SCHED_DEBUG") ? FR_LOG_DEBUG : FR_LOG_ERROR);
  snprintf(g_dir, sizeof(g_dir), "/tmp/faceri-sched-XXXXXX");
  if (!mkdtemp(g_dir))
    return 1;
  g_zctx = zmq_ctx_new();
  if (CU_initialize_registry() != CUE_SUCCESS)
    return 1;
  CU_pSuite s = CU_add_suite("scheduler", NULL, NULL);
  CU_add_test(s, "every item exactly one row over 3 peers", test_exactly_once);
  CU_add_test(s, "a peer vanishing mid-shard: re-queued", test_peer_vanishes);
  CU_add_test(s, "a hung peer: heartbeat timeout", test_peer_hangs);
  CU_add_test(s, "duplicate and late RESULTs ignored", test_duplicates_ignored);
  CU_add_test(s, "a RESULT with wrong indices rejected", test_wrong_indices_rejected);
  CU_add_test(s, "a shard that always fails is written as failed", test_poisoned_shard_fails);
  CU_add_test(s, "a worker with the wrong model refused", test_wrong_model_refused);
  CU_add_test(s, "non-images and unreadable items written by the coordinator", test_coordinator_rows);
  CU_add_test(s, "stop mid-run, resume: same final file", test_resume);
  CU_add_test(s, "garbage messages dropped", test_garbage_dropped);
  int rc = test_run_all();
  zmq_ctx_term(g_zctx);
  rm_rf(g_dir);
  return rc;
}
