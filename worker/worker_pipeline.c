/* The worker's decode + device pipeline. A prep thread gathers images from
 * every held shard into a batch (up to `batch` images, or whatever is there)
 * and decodes it on a pool; the device thread runs the engine on the previous
 * batch meanwhile (two buffers). Results go back into each item's place in its
 * shard; a shard whose every item has a result moves to the done list and the
 * socket thread is woken through notify_fd. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "faceri/image.h"
#include "faceri/log.h"
#include "faceri/ri.h"
#include "faceri/test_embedding.h"
#include "worker_internal.h"

double wk_now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void notify(wk_pipeline *p)
{
  char b = 1;
  /* A full pipe already holds a wake-up; nothing is lost by dropping this one. */
  while (write(p->notify_fd, &b, 1) < 0 && errno == EINTR) {
  }
}

void wk_job_set_item(fr_shard_job *job, uint32_t i, int status, int width, int height, char *error)
{
  fr_result_item *r = &job->res[i];
  r->status = (uint8_t)status;
  r->width = width > 0 ? (uint32_t)width : 0;
  r->height = height > 0 ? (uint32_t)height : 0;
  free(job->errors[i]);
  job->errors[i] = error;
}

static void list_append(fr_shard_job **head, fr_shard_job *job)
{
  job->next = NULL;
  while (*head)
    head = &(*head)->next;
  *head = job;
}

static void list_remove(fr_shard_job **head, fr_shard_job *job)
{
  while (*head && *head != job)
    head = &(*head)->next;
  if (*head)
    *head = job->next;
  job->next = NULL;
}

/* Under mu: k more items of job have results; a complete job goes to the socket thread. */
static void finish_items(wk_pipeline *p, fr_shard_job *job, uint32_t k)
{
  job->done += k;
  if (job->done == job->msg.shard.count) {
    list_remove(&p->pending, job);
    list_append(&p->done, job);
    notify(p);
  }
}

static char *text(const char *fmt, const char *key, const char *what)
{
  char buf[1200];
  snprintf(buf, sizeof(buf), fmt, key, what);
  return strdup(buf); /* NULL on OOM: the item still fails, without a text */
}

/* Under mu: fills b with up to p->batch images from the pending shards. Items
 * that need no device (non-images, empty files, cancelled shards) get their
 * result here. Returns the number of images taken. */
static int gather(wk_pipeline *p, wk_batch *b)
{
  b->n = 0;
  fr_shard_job *job = p->pending;
  while (job && b->n < p->batch) {
    fr_shard_job *next = job->next; /* finish_items may move job to the done list */
    uint32_t count = job->msg.shard.count;
    if (job->cancelled) {
      uint32_t left = count - job->next_item;
      job->next_item = count;
      if (left || count == 0)
        finish_items(p, job, left);
      job = next;
      continue;
    }
    while (job->next_item < count && b->n < p->batch) {
      uint32_t i = job->next_item++;
      const fr_shard_item *it = &job->msg.shard.items[i];
      if (it->image_size == 0 || !fr_image_is_probably_image(it->image, it->image_size)) {
        char key[600];
        fr_str_escape(it->key, key, sizeof(key));
        int empty = it->image_size == 0;
        wk_job_set_item(job, i, empty ? FR_ITEM_FAILED : FR_ITEM_SKIPPED, 0, 0,
                        text(empty ? "%s: %s" : "%s: %s, skipped", key,
                             empty ? "empty file (0 bytes)" : "not an image (JPEG, PNG, PGM/PPM)"));
        finish_items(p, job, 1);
        continue;
      }
      b->slots[b->n++] = (wk_slot){.job = job, .item = i};
    }
    if (count == 0) /* nothing to do: complete as soon as it is seen */
      finish_items(p, job, 0);
    job = next;
  }
  return b->n;
}

static void decode_slot(wk_pipeline *p, wk_batch *b, int s)
{
  wk_slot *slot = &b->slots[s];
  const fr_shard_item *it = &slot->job->msg.shard.items[slot->item];
  char key[600];
  fr_str_escape(it->key, key, sizeof(key));
  fr_error e = {0};
  slot->width = slot->height = 0;
  slot->error = NULL;
  slot->aligned = -1;
  slot->align_score = NAN;
  if (p->aligner) {
    slot->ok = fr_image_decode(it->image, it->image_size, key, &slot->img, &e) == FR_OK;
    if (slot->ok) {
      slot->width = slot->img.width;
      slot->height = slot->img.height;
    } else {
      slot->error = strdup(e.message);
    }
    return;
  }
  slot->ok = fr_preprocess_image(&p->pp, it->image, it->image_size, key, b->input + (size_t)s * p->per_image,
                                 &slot->width, &slot->height, &e) == FR_OK;
  if (!slot->ok)
    slot->error = strdup(e.message);
}

/* Claims and decodes slots of the current task until none is left. */
static void pool_work(wk_pipeline *p, wk_batch *b)
{
  for (;;) {
    pthread_mutex_lock(&p->pool_mu);
    int s = b->decode_next < b->n ? b->decode_next++ : -1;
    pthread_mutex_unlock(&p->pool_mu);
    if (s < 0)
      return;
    decode_slot(p, b, s);
    pthread_mutex_lock(&p->pool_mu);
    if (++b->decode_done == b->n)
      pthread_cond_broadcast(&p->pool_done_cv);
    pthread_mutex_unlock(&p->pool_mu);
  }
}

static void *helper_main(void *arg)
{
  wk_pipeline *p = arg;
  uint64_t seen = 0;
  pthread_mutex_lock(&p->pool_mu);
  for (;;) {
    while (!p->pool_stop && p->task_seq == seen)
      pthread_cond_wait(&p->pool_cv, &p->pool_mu);
    if (p->pool_stop)
      break;
    seen = p->task_seq;
    wk_batch *b = p->task;
    pthread_mutex_unlock(&p->pool_mu);
    pool_work(p, b);
    pthread_mutex_lock(&p->pool_mu);
  }
  pthread_mutex_unlock(&p->pool_mu);
  return NULL;
}

static void decode_batch(wk_pipeline *p, wk_batch *b)
{
  pthread_mutex_lock(&p->pool_mu);
  b->decode_next = b->decode_done = 0;
  p->task = b;
  p->task_seq++;
  pthread_cond_broadcast(&p->pool_cv);
  pthread_mutex_unlock(&p->pool_mu);
  pool_work(p, b);
  pthread_mutex_lock(&p->pool_mu);
  while (b->decode_done < b->n)
    pthread_cond_wait(&p->pool_done_cv, &p->pool_mu);
  pthread_mutex_unlock(&p->pool_mu);
}

/* Failed decodes get their result now; the good images move to the front so
 * the engine sees one contiguous batch. */
static void compact(wk_pipeline *p, wk_batch *b)
{
  int m = 0;
  pthread_mutex_lock(&p->mu);
  for (int s = 0; s < b->n; s++) {
    wk_slot *slot = &b->slots[s];
    if (!slot->ok) {
      wk_job_set_item(slot->job, slot->item, FR_ITEM_FAILED, slot->width, slot->height, slot->error);
      slot->error = NULL;
      finish_items(p, slot->job, 1);
      continue;
    }
    if (m != s) {
      memcpy(b->input + (size_t)m * p->per_image, b->input + (size_t)s * p->per_image,
             p->per_image * sizeof(float));
      b->slots[m] = *slot;
      memset(&slot->img, 0, sizeof(slot->img)); /* moved, not shared */
    }
    m++;
  }
  pthread_mutex_unlock(&p->mu);
  b->n = m;
}

static void *prep_main(void *arg)
{
  wk_pipeline *p = arg;
  pthread_mutex_lock(&p->mu);
  for (;;) {
    while (!p->stop && p->n_free == 0)
      pthread_cond_wait(&p->prep_cv, &p->mu);
    if (p->stop)
      break;
    wk_batch *b = &p->buf[p->free_list[p->n_free - 1]];
    if (gather(p, b) == 0) {
      pthread_cond_wait(&p->prep_cv, &p->mu);
      continue;
    }
    int id = p->free_list[--p->n_free];
    pthread_mutex_unlock(&p->mu);
    double t0 = wk_now();
    decode_batch(p, b);
    compact(p, b);
    double dt = wk_now() - t0;
    pthread_mutex_lock(&p->mu);
    p->decode_seconds += dt;
    p->ready_list[p->n_ready++] = id;
    pthread_cond_signal(&p->dev_cv);
  }
  pthread_mutex_unlock(&p->mu);
  return NULL;
}

/* On the device thread (the aligner shares the engine's queue): each decoded
 * image becomes its slot's network input. An item the aligner cannot take (a
 * fallback crop outside the image) fails alone; a lost device fails the batch. */
static int align_batch(wk_pipeline *p, wk_batch *b, fr_error *e)
{
  int rc = FR_OK;
  uint64_t aligned = 0, fallbacks = 0;
  double t0 = wk_now();
  for (int s = 0; s < b->n; s++) {
    wk_slot *slot = &b->slots[s];
    fr_align_result res;
    fr_error ae = {0};
    int arc = rc ? rc
                 : fr_aligner_align_input(p->aligner, &slot->img, &p->align_opts, p->pp.input_w, p->pp.input_h,
                                          p->pp.mean, p->pp.std, b->input + (size_t)s * p->per_image, &res, &ae);
    fr_image_free(&slot->img);
    if (rc)
      continue;
    if (arc == FR_ERR_DEVICE_LOST) {
      rc = arc;
      *e = ae;
      continue;
    }
    if (arc) {
      const fr_shard_item *it = &slot->job->msg.shard.items[slot->item];
      char key[600];
      fr_str_escape(it->key, key, sizeof(key));
      slot->ok = 0;
      char why[1700]; /* key (600) + message (1024) */
      snprintf(why, sizeof(why), "%s: align: %s", key, ae.message);
      slot->error = strdup(why); /* NULL on OOM: the item still fails, without a text */
      continue;
    }
    slot->aligned = (int8_t)res.aligned;
    slot->align_score = res.score;
    aligned += res.aligned != 0;
    fallbacks += res.aligned == 0;
  }
  double dt = wk_now() - t0;
  pthread_mutex_lock(&p->mu);
  p->align_seconds += dt;
  p->aligned += aligned;
  p->fallbacks += fallbacks;
  pthread_mutex_unlock(&p->mu);
  if (!rc)
    compact(p, b);
  return rc;
}

static void run_batch(wk_pipeline *p, wk_batch *b)
{
  fr_error e = {0};
  int rc = FR_OK;
  if (p->aligner && b->n > 0)
    rc = align_batch(p, b, &e);
  double t0 = wk_now();
  if (b->n > 0 && !rc && p->want_vattn)
    rc = fr_engine_run_outputs(p->engine, b->input, b->n,
                               &(fr_engine_outputs){.embeddings = b->emb, .norms = b->norms, .ri = b->ri,
                                                    .v_attn = b->vattn}, &e);
  else if (b->n > 0 && !rc)
    rc = fr_engine_run_ri(p->engine, b->input, b->n, b->emb, b->norms, NULL, b->ri, &e);
  double dt = wk_now() - t0;
  pthread_mutex_lock(&p->mu);
  if (b->n > 0) {
    p->device_seconds += dt;
    p->batches++;
    p->full_batches += b->n == p->batch;
    if (!rc)
      p->images += (uint64_t)b->n;
  }
  if (rc && !p->fatal && rc == FR_ERR_DEVICE_LOST) {
    p->fatal = 1;
    p->fatal_err = e;
    notify(p);
  }
  for (int s = 0; s < b->n; s++) {
    wk_slot *slot = &b->slots[s];
    fr_shard_job *job = slot->job;
    if (rc) {
      if (!job->failed) {
        job->failed = 1;
        snprintf(job->reason, sizeof(job->reason), "device batch of %d images failed: %s", b->n, e.message);
      }
    } else {
      if (p->want_vattn)
        fr_test_embedding_rows((fr_test_embedding)p->test_embedding, b->emb + (size_t)s * p->dim,
                               b->vattn + (size_t)s * p->dim, p->dim, job->emb + (size_t)slot->item * p->out_dim,
                               job->attn ? job->attn + (size_t)slot->item * p->attn_dim : NULL);
      else
        memcpy(job->emb + (size_t)slot->item * p->dim, b->emb + (size_t)s * p->dim, (size_t)p->dim * sizeof(float));
      job->res[slot->item].norm = b->norms[s];
      job->res[slot->item].ri = fr_engine_has_ri(p->engine) ? b->ri[s] : NAN; /* learned RI (xi^) */
      job->res[slot->item].aligned = slot->aligned;
      job->res[slot->item].align_score = slot->align_score;
      if (p->ui_centre) /* d_UI whenever the model has a UI centre */
        job->res[slot->item].ers =
            (float)(1.0 - fr_ri_cosine(b->emb + (size_t)s * p->dim, p->ui_centre, p->dim));
      wk_job_set_item(job, slot->item, FR_ITEM_OK, slot->width, slot->height, NULL);
    }
    finish_items(p, job, 1);
  }
  pthread_mutex_unlock(&p->mu);
}

static void *dev_main(void *arg)
{
  wk_pipeline *p = arg;
  pthread_mutex_lock(&p->mu);
  for (;;) {
    double wait_from = p->batches > 0 && p->n_ready == 0 ? wk_now() : 0.0;
    while (!p->stop && p->n_ready == 0)
      pthread_cond_wait(&p->dev_cv, &p->mu);
    if (p->stop)
      break;
    /* Idle while shards were held counts; idle with nothing to do is the coordinator's business. */
    if (wait_from > 0 && p->pending)
      p->device_wait_seconds += wk_now() - wait_from;
    int id = p->ready_list[0];
    memmove(p->ready_list, p->ready_list + 1, (size_t)(--p->n_ready) * sizeof(int));
    pthread_mutex_unlock(&p->mu);
    run_batch(p, &p->buf[id]);
    pthread_mutex_lock(&p->mu);
    p->free_list[p->n_free++] = id;
    pthread_cond_signal(&p->prep_cv);
  }
  pthread_mutex_unlock(&p->mu);
  return NULL;
}

static void free_buffers(wk_pipeline *p)
{
  for (int i = 0; i < WK_BUFFERS; i++) {
    free(p->buf[i].input);
    free(p->buf[i].emb);
    free(p->buf[i].norms);
    free(p->buf[i].ri);
    free(p->buf[i].slots);
    free(p->buf[i].vattn);
  }
}

int wk_pipeline_start(wk_pipeline *p, fr_engine *engine, const fr_preprocess *pp, int batch, int dim,
                      int decode_threads, int notify_fd, fr_error *err)
{
  memset(p, 0, sizeof(*p));
  p->engine = engine;
  p->pp = *pp;
  p->batch = batch;
  p->dim = dim;
  p->out_dim = dim;
  p->per_image = (size_t)pp->input_w * pp->input_h * 3;
  p->notify_fd = notify_fd;
  for (int i = 0; i < WK_BUFFERS; i++) {
    wk_batch *b = &p->buf[i];
    b->input = malloc((size_t)batch * p->per_image * sizeof(float));
    b->emb = malloc((size_t)batch * dim * sizeof(float));
    b->norms = malloc((size_t)batch * sizeof(float));
    b->ri = malloc((size_t)batch * sizeof(float));
    b->slots = calloc((size_t)batch, sizeof(wk_slot));
    if (!b->input || !b->emb || !b->norms || !b->ri || !b->slots) {
      free_buffers(p);
      return fr_error_set(err, FR_ERR_NOMEM, "worker: out of memory for %d batch buffers of %d images", WK_BUFFERS,
                          batch);
    }
    p->free_list[p->n_free++] = i;
  }
  pthread_mutex_init(&p->mu, NULL);
  pthread_mutex_init(&p->pool_mu, NULL);
  pthread_cond_init(&p->prep_cv, NULL);
  pthread_cond_init(&p->dev_cv, NULL);
  pthread_cond_init(&p->pool_cv, NULL);
  pthread_cond_init(&p->pool_done_cv, NULL);
  p->started = 1;
  int helpers = decode_threads > 1 ? decode_threads - 1 : 0;
  p->helpers = calloc((size_t)(helpers ? helpers : 1), sizeof(pthread_t));
  if (!p->helpers) {
    wk_pipeline_stop(p);
    return fr_error_set(err, FR_ERR_NOMEM, "worker: out of memory for %d decode threads", decode_threads);
  }
  for (; p->n_helpers < helpers; p->n_helpers++) {
    int rc = pthread_create(&p->helpers[p->n_helpers], NULL, helper_main, p);
    if (rc) {
      fr_shard_job *left = wk_pipeline_stop(p);
      (void)left; /* nothing submitted yet */
      return fr_error_set(err, FR_ERR_NOMEM, "worker: cannot start decode thread %d: %s", p->n_helpers + 1,
                          strerror(rc));
    }
  }
  int rc = pthread_create(&p->prep_thread, NULL, prep_main, p);
  if (rc) {
    wk_pipeline_stop(p);
    return fr_error_set(err, FR_ERR_NOMEM, "worker: cannot start the prep thread: %s", strerror(rc));
  }
  rc = pthread_create(&p->dev_thread, NULL, dev_main, p);
  if (rc) {
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->prep_cv);
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->prep_thread, NULL);
    p->started = 2; /* prep joined already */
    wk_pipeline_stop(p);
    return fr_error_set(err, FR_ERR_NOMEM, "worker: cannot start the device thread: %s", strerror(rc));
  }
  p->started = 3;
  return FR_OK;
}

int wk_pipeline_set_attention(wk_pipeline *p, int test_embedding, int attn_dim, fr_error *err)
{
  p->test_embedding = test_embedding;
  p->out_dim = fr_test_embedding_dim((fr_test_embedding)test_embedding, p->dim);
  p->attn_dim = attn_dim;
  p->want_vattn = fr_test_embedding_needs_attention((fr_test_embedding)test_embedding, attn_dim > 0);
  for (int i = 0; i < WK_BUFFERS && p->want_vattn; i++)
    if (!(p->buf[i].vattn = malloc((size_t)p->batch * p->dim * sizeof(float))))
      return fr_error_set(err, FR_ERR_NOMEM, "worker: out of memory for v_attn of %d images", p->batch);
  return FR_OK;
}

void wk_pipeline_submit(wk_pipeline *p, fr_shard_job *job)
{
  pthread_mutex_lock(&p->mu);
  list_append(&p->pending, job);
  pthread_cond_signal(&p->prep_cv);
  pthread_mutex_unlock(&p->mu);
}

fr_shard_job *wk_pipeline_take_done(wk_pipeline *p)
{
  pthread_mutex_lock(&p->mu);
  fr_shard_job *list = p->done;
  p->done = NULL;
  pthread_mutex_unlock(&p->mu);
  return list;
}

void wk_pipeline_cancel_all(wk_pipeline *p)
{
  pthread_mutex_lock(&p->mu);
  for (fr_shard_job *j = p->pending; j; j = j->next)
    j->cancelled = 1;
  for (fr_shard_job *j = p->done; j; j = j->next)
    j->cancelled = 1;
  pthread_cond_signal(&p->prep_cv);
  pthread_mutex_unlock(&p->mu);
}

int wk_pipeline_fatal(wk_pipeline *p, fr_error *err)
{
  pthread_mutex_lock(&p->mu);
  int fatal = p->fatal;
  if (fatal && err)
    *err = p->fatal_err;
  pthread_mutex_unlock(&p->mu);
  return fatal;
}

fr_shard_job *wk_pipeline_stop(wk_pipeline *p)
{
  if (!p->started)
    return NULL;
  pthread_mutex_lock(&p->mu);
  p->stop = 1;
  pthread_cond_broadcast(&p->prep_cv);
  pthread_cond_broadcast(&p->dev_cv);
  pthread_mutex_unlock(&p->mu);
  if (p->started == 3) {
    pthread_join(p->prep_thread, NULL);
    pthread_join(p->dev_thread, NULL);
  }
  pthread_mutex_lock(&p->pool_mu);
  p->pool_stop = 1;
  pthread_cond_broadcast(&p->pool_cv);
  pthread_mutex_unlock(&p->pool_mu);
  for (int i = 0; i < p->n_helpers; i++)
    pthread_join(p->helpers[i], NULL);
  free(p->helpers);
  /* A batch stopped between decode and the device may hold decode errors. */
  for (int i = 0; i < WK_BUFFERS; i++)
    for (int s = 0; s < p->batch && p->buf[i].slots; s++) {
      free(p->buf[i].slots[s].error);
      p->buf[i].slots[s].error = NULL;
      fr_image_free(&p->buf[i].slots[s].img);
    }
  free_buffers(p);
  fr_shard_job *all = p->done;
  fr_shard_job **tail = &all;
  while (*tail)
    tail = &(*tail)->next;
  *tail = p->pending;
  p->done = p->pending = NULL;
  pthread_cond_destroy(&p->prep_cv);
  pthread_cond_destroy(&p->dev_cv);
  pthread_cond_destroy(&p->pool_cv);
  pthread_cond_destroy(&p->pool_done_cv);
  pthread_mutex_destroy(&p->mu);
  pthread_mutex_destroy(&p->pool_mu);
  p->started = 0;
  return all;
}
