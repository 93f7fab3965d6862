/* The coordinator's side of the results file: one commit per shard, rows at
 * their global indices, the coordinator's own rows (unreadable items,
 * non-images) filled in next to the workers' answers. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hdf5.h>

#include "faceri/log.h"
#include "faceri/results_file.h"
#include "faceri/test_embedding.h"
#include "scheduler_internal.h"

struct sched_writer {
  fr_results_file *rf;
};

int sched_writer_open(const fr_coordinator_options *o, sched_writer **out, fr_error *err)
{
  *out = NULL;
  /* HDF5 keeps freed blocks on its own free lists, unbounded by default: with
   * vlen strings written per shard the coordinator grew ~0.27 KiB per item
   * (111 MiB peak RSS at 300k items). Capped at 1 MiB per list, peak RSS stays
   * flat once the metadata cache has warmed up (about 60 MiB from 100k items to
   * 300k; scripts/bench-pipeline). Process-wide, which suits the only writer. */
  if (H5set_free_list_limits(1 << 20, 1 << 16, 1 << 20, 1 << 16, 1 << 20, 1 << 16) < 0)
    fr_warn("coordinator: cannot cap HDF5's free lists; memory may grow with the run");
  sched_writer *w = calloc(1, sizeof(*w));
  fr_input_fingerprint *prints = calloc((size_t)(o->n_inputs > 0 ? o->n_inputs : 1), sizeof(*prints));
  int rc = FR_OK;
  if (!w || !prints)
    rc = fr_error_set(err, FR_ERR_NOMEM, "out of memory opening %s", o->output);
  for (int i = 0; i < o->n_inputs && !rc; i++)
    rc = fr_fingerprint_input(o->inputs[i], &prints[i], err);
  if (!rc) {
    fr_results_meta meta = {.command_line = o->command_line ? o->command_line : "",
                            .model_path = o->model_path ? o->model_path : "",
                            .model_sha256 = o->model_sha256,
                            .architecture = o->architecture ? o->architecture : "",
                            .device = "distributed (see /shards/device)",
                            .embedding_size = o->embedding_size,
                            .n_inputs = o->n_inputs,
                            .inputs = prints,
                            .labels_csv = fr_labeler_csv_path(o->labeler),
                            .labels_csv_sha256 = fr_labeler_csv_sha256(o->labeler),
                            .label_regex = fr_labeler_regex(o->labeler),
                            .align = o->align,
                            .align_min_score = o->align_min_score,
                            .align_min_face = o->align_min_face,
                            .align_max_face = o->align_max_face,
                            .test_embedding = fr_test_embedding_name(o->test_embedding),
                            .attn_size = o->attn_size};
    rc = o->resume ? fr_results_open_resume(o->output, &meta, &w->rf, err)
                   : fr_results_create(o->output, &meta, &w->rf, err);
  }
  free(prints);
  if (rc) {
    free(w);
    return rc;
  }
  *out = w;
  return FR_OK;
}

int sched_writer_is_committed(void *writer, int64_t index)
{
  return fr_results_is_committed(((sched_writer *)writer)->rf, index);
}

int sched_writer_register_labels(sched_writer *w, const sched_shard *s, fr_error *err)
{
  for (int i = 0; i < s->count; i++) {
    int id;
    if (s->items[i].label && *s->items[i].label) {
      int rc = fr_results_register_label(w->rf, s->items[i].label, &id, err);
      if (rc)
        return rc;
    }
  }
  return FR_OK;
}

int sched_writer_commit(sched_writer *w, const sched_shard *s, const sched_answer *answers, const char *worker,
                        const char *device, const char *fail_reason, float seconds, fr_coordinator_summary *sum,
                        fr_error *err)
{
  fr_result_row *rows = calloc((size_t)s->count, sizeof(*rows));
  char *failed_text = NULL;
  if (!rows)
    return fr_error_set(err, FR_ERR_NOMEM, "out of memory committing shard %lld", (long long)s->id);
  if (!answers) {
    size_t n = strlen(fail_reason) + 96;
    failed_text = malloc(n);
    if (!failed_text) {
      free(rows);
      return fr_error_set(err, FR_ERR_NOMEM, "out of memory committing shard %lld", (long long)s->id);
    }
    snprintf(failed_text, n, "shard %lld failed %d times: %s", (long long)s->id, s->failures, fail_reason);
  }
  int sent = 0;
  int64_t ok = 0, failed = 0, skipped = 0, aligned = 0, fallbacks = 0;
  for (int i = 0; i < s->count; i++) {
    const sched_item *it = &s->items[i];
    fr_result_row *r = &rows[i];
    r->key = it->key;
    r->label = it->label;
    r->norm = r->ers = r->ri = r->align_score = NAN;
    r->aligned = -1;
    if (it->status != SCHED_TO_WORKER) {
      r->status = it->status;
      r->error = it->error;
    } else if (!answers) {
      r->status = FR_ITEM_FAILED;
      r->error = failed_text;
      sent++;
    } else {
      const sched_answer *a = &answers[sent++];
      r->status = a->status;
      r->error = a->error;
      r->width = a->width;
      r->height = a->height;
      if (a->status == FR_ITEM_OK) {
        r->embedding = a->embedding;
        r->embedding_attn = a->attn;
        r->norm = a->norm;
        r->ers = a->ers;
        r->ri = a->ri;
        r->aligned = a->aligned;
        r->align_score = a->align_score;
      }
    }
    ok += r->status == FR_ITEM_OK;
    failed += r->status == FR_ITEM_FAILED;
    skipped += r->status == FR_ITEM_SKIPPED;
    aligned += r->aligned == 1;
    fallbacks += r->aligned == 0;
  }
  fr_shard_record rec = {.id = s->id, .first = s->first, .count = s->count,
                         .attempts = (int)s->attempt, .failed = answers == NULL,
                         .worker = worker, .device = device, .reason = answers ? "" : fail_reason,
                         .seconds = seconds};
  int rc = fr_results_write_items(w->rf, s->first, rows, s->count, s->id, err);
  if (!rc)
    rc = fr_results_commit_shard(w->rf, &rec, err);
  free(rows);
  free(failed_text);
  if (!rc && sum) {
    sum->ok += ok;
    sum->failed += failed;
    sum->skipped += skipped;
    sum->aligned += aligned;
    sum->fallbacks += fallbacks;
    sum->items += s->count;
    if (answers)
      sum->shards_committed++;
    else
      sum->shards_failed++;
  }
  return rc;
}

int sched_writer_close(sched_writer *w, int complete, fr_error *err)
{
  if (!w)
    return FR_OK;
  int rc = fr_results_close(w->rf, complete, err);
  free(w);
  return rc;
}
