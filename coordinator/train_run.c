/* One `faceri train` run: data, trainer, epochs, checkpoints (see faceri/train_run.h). */
#include "faceri/train_run.h"
#include "faceri/rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "faceri/cli_util.h"
#include "faceri/engine.h"
#include "faceri/json_writer.h"
#include "faceri/log.h"
#include "faceri/model.h"
#include "faceri/trainer.h"
#include "faceri/vk_context.h"
#include "train_run_internal.h"

#define PROTOTYPES "prototypes/weights"

fr_train_run_options fr_train_run_defaults(void)
{
  fr_train_run_options o;
  memset(&o, 0, sizeof(o));
  o.loss = FR_LOSS_ARCFACE;
  o.s = 64.0f;
  o.m = 0.5f;
  o.epochs = 1;
  o.batch = 32;
  o.optim = FR_OPTIM_SGD;
  o.lr = 0.01f;
  o.momentum = 0.9f;
  o.weight_decay = 5e-4f;
  o.head_lr_mult = 1.0f;
  o.head_init_mean = 1;
  o.seed = 1;
  o.data.min_images = 2;
  o.heads = fr_ri_heads_defaults(7, 7, 512, 192, 1); /* shapes and batch are the trainer's */
  o.ri_lr_mult = 1.0f;
  o.ui_region = -1;
  o.ui_k = 5000;
  o.degrade_prob = 0.5f;
  o.degrade_opts = fr_degrade_defaults();
  return o;
}

static const char *optim_name(fr_optim_kind k) { return k == FR_OPTIM_ADAMW ? "adamw" : "sgd"; }

/* Everything that changes the numbers of a step; the resume check compares it. */
static void make_config(run_state *r)
{
  const fr_train_run_options *o = r->o;
  const fr_preprocess *pp = &o->data.pp;
  snprintf(r->config, sizeof(r->config),
           "{\"data\":\"%s\",\"images\":%d,\"classes\":%d,\"crop\":\"%d,%d,%d,%d\",\"loss\":\"%s\",\"s\":%.9g,"
           "\"m\":%.9g,\"batch\":%d,\"optim\":\"%s\",\"lr\":%.9g,\"momentum\":%.9g,\"weight_decay\":%.9g,"
           "\"max_grad_norm\":%.9g,\"head_lr_mult\":%.9g,\"schedule\":\"%s\",\"schedule_steps\":%lld,"
           "\"warmup\":%d,\"train_from\":%d,\"head_init\":\"%s\",\"flip\":%d,\"seed\":%u}",
           r->data.fingerprint, r->data.n_images, r->data.n_classes, pp->has_crop ? pp->crop_x : 0,
           pp->has_crop ? pp->crop_y : 0, pp->has_crop ? pp->crop_w : 0, pp->has_crop ? pp->crop_h : 0,
           o->loss == FR_LOSS_ARCFACE ? "arcface" : "softmax", (double)o->s, (double)o->m, o->batch,
           optim_name(o->optim), (double)o->lr, (double)o->momentum, (double)o->weight_decay,
           (double)o->max_grad_norm, (double)o->head_lr_mult, o->cosine ? "cosine" : "constant",
           o->cosine ? (long long)r->spe * o->epochs : 0LL, o->warmup, o->train_from,
           o->head_init_model ? "model" : o->head_init_mean ? "mean" : "random", o->flip, o->seed);
  if (o->align) { /* appended, as --ri below, so a run without --align keeps its config */
    size_t at = strlen(r->config) - 1;
    snprintf(r->config + at, sizeof(r->config) - at, ",\"align\":{\"min_score\":%.9g,\"face_size\":\"%d:%d\"}}",
             (double)o->data.align_opts.min_score, o->data.align_opts.min_face, o->data.align_opts.max_face);
  }
  if (o->ri) { /* appended inside the object, so a run without --ri keeps its config */
    size_t at = strlen(r->config) - 1;
    fr_run_ri_config(r, r->config + at, sizeof(r->config) - at - 1);
    strcat(r->config, "}");
  } else if (o->degrade) { /* with --ri the degradation is part of the ri object */
    size_t at = strlen(r->config) - 1;
    snprintf(r->config + at, sizeof(r->config) - at, ",\"degrade\":{\"prob\":%.9g,\"sizes\":\"%d:%d\"}}",
             (double)o->degrade_prob, o->degrade_opts.min_size, o->degrade_opts.max_size);
  }
}

/* Names the first field where two configs differ. */
static int config_mismatch(const char *stored, const char *now, const char *path, fr_error *err)
{
  if (!strcmp(stored, now))
    return FR_OK;
  size_t i = 0;
  while (stored[i] && stored[i] == now[i])
    i++;
  size_t start = i;
  while (start > 0 && stored[start - 1] != ',' && stored[start - 1] != '{')
    start--;
  return fr_error_set(err, FR_ERR_INVALID,
                      "--resume: %s was trained with other data or options (first difference at: stored %.60s, now "
                      "%.60s)",
                      path, stored + start, now + start);
}

static void data_progress(void *user, int64_t read, int64_t kept)
{
  fr_progress *p = user;
  (void)kept;
  fr_progress_update(p, read);
}

static int load_model_and_data(run_state *r, fr_train_run_summary *sum, fr_error *err)
{
  const fr_train_run_options *o = r->o;
  const char *from = o->resume ? o->output : (o->init ? o->init : fr_model_default_path());
  int rc = fr_model_load(from, &r->model, err);
  if (!rc && o->resume && !r->model.training.present)
    rc = fr_error_set(err, FR_ERR_INVALID, "--resume: %s holds no training state (not written by faceri train)",
                      from);
  if (rc)
    return rc;
  fr_train_data_options d = o->data;
  d.pp.input_w = r->model.input_w;
  d.pp.input_h = r->model.input_h;
  d.aligner = NULL;
  if (o->align) { /* on the run's device, freed before training needs its memory */
    rc = fr_aligner_create(r->ctx, o->mtcnn_dir && *o->mtcnn_dir ? o->mtcnn_dir : fr_mtcnn_default_dir(),
                           &d.aligner, err);
    if (rc) {
      fr_error_prefix(err, "--align");
      return rc;
    }
  }
  fr_progress prog;
  fr_progress_start(&prog, "reading faces", 0);
  d.progress = data_progress;
  d.progress_user = &prog;
  rc = fr_train_data_load(o->inputs, o->n_inputs, &d, &r->data, err);
  fr_progress_finish(&prog);
  fr_aligner_destroy(d.aligner);
  if (rc)
    return rc;
  if (o->align)
    fr_info("training data: aligned %lld images, %lld fallbacks (no face found: resized whole%s)",
            (long long)r->data.aligned, (long long)r->data.fallbacks, o->data.pp.has_crop ? ", after --crop" : "");
  sum->n_images = r->data.n_images;
  sum->n_classes = r->data.n_classes;
  fr_info("training data: %d images of %d identities (%lld items read, %lld not images, %lld unreadable, %lld "
          "outside the identity range)",
          r->data.n_images, r->data.n_classes, (long long)r->data.items_read, (long long)r->data.skipped,
          (long long)r->data.failed, (long long)r->data.outside_range);
  r->spe = r->data.n_images / o->batch;
  if (r->spe < 1)
    return fr_error_set(err, FR_ERR_INVALID, "--batch %d is larger than the %d training images", o->batch,
                        r->data.n_images);
  if (o->ri && (rc = fr_run_ri_prepare(r, err)) != FR_OK)
    return rc;
  make_config(r);
  if (o->resume) {
    fr_model_training *t = &r->model.training;
    rc = config_mismatch(t->config ? t->config : "", r->config, o->output, err);
    if (!rc && t->n_classes != r->data.n_classes)
      rc = fr_error_set(err, FR_ERR_INVALID, "--resume: %s has %d classes, the data %d", o->output, t->n_classes,
                        r->data.n_classes);
    const char *name = t->class_names;
    for (int k = 0; !rc && k < t->n_classes; k++, name += strlen(name) + 1)
      if (strcmp(name, r->data.class_names[k]) != 0)
        rc = fr_error_set(err, FR_ERR_INVALID, "--resume: class %d is '%s' in %s, '%s' in the data", k, name,
                          o->output, r->data.class_names[k]);
    const fr_model_tensor *p = fr_model_find_tensor(&r->model, PROTOTYPES);
    if (!rc && (!p || p->rank != 2 || p->dims[0] != r->data.n_classes || p->dims[1] != r->model.embedding_size))
      rc = fr_error_set(err, FR_ERR_INVALID, "--resume: %s has no %s of %d x %d", o->output, PROTOTYPES,
                        r->data.n_classes, r->model.embedding_size);
    r->step = t->step;
  }
  return rc;
}

/* The head starts at the normalised class means of the initial embeddings: a
 * pretrained backbone then starts near its optimum instead of being pulled around by
 * a random head (the usual way to fine-tune with a new classification layer). */
static int head_from_means(run_state *r, fr_error *err)
{
  int dim = r->model.embedding_size, C = r->data.n_classes, chunk = r->o->batch; /* r->images holds a batch */
  fr_engine *engine = NULL;
  fr_engine_options eo = {.max_batch = chunk, .timing = 0};
  double *sum = calloc((size_t)C * dim, sizeof(double));
  float *emb = malloc((size_t)chunk * dim * sizeof(float));
  int32_t *idx = malloc((size_t)chunk * sizeof(int32_t)), *lab = malloc((size_t)chunk * sizeof(int32_t));
  int rc = sum && emb && idx && lab ? FR_OK : fr_error_set(err, FR_ERR_NOMEM, "head init: out of memory");
  if (!rc)
    rc = fr_engine_create(r->ctx, &r->model, &eo, &engine, err);
  fr_progress prog;
  fr_progress_start(&prog, "head init (class means)", r->data.n_images);
  for (int at = 0; !rc && at < r->data.n_images; at += chunk) {
    int n = r->data.n_images - at < chunk ? r->data.n_images - at : chunk;
    for (int b = 0; b < n; b++)
      idx[b] = at + b;
    fr_train_data_batch(&r->data, idx, n, r->model.mean, r->model.std, NULL, r->images, lab);
    rc = fr_engine_run(engine, r->images, n, emb, NULL, NULL, err);
    for (int b = 0; !rc && b < n; b++)
      for (int k = 0; k < dim; k++)
        sum[(size_t)lab[b] * dim + k] += emb[(size_t)b * dim + k];
    fr_progress_update(&prog, at + n);
  }
  fr_progress_finish(&prog);
  for (int c = 0; !rc && c < C; c++) {
    double ss = 0;
    for (int k = 0; k < dim; k++)
      ss += sum[(size_t)c * dim + k] * sum[(size_t)c * dim + k];
    double inv = ss > 0 ? 1.0 / sqrt(ss) : 0.0;
    for (int k = 0; k < dim; k++)
      r->head[(size_t)c * dim + k] = (float)(sum[(size_t)c * dim + k] * inv);
  }
  fr_engine_destroy(engine);
  free(sum);
  free(emb);
  free(idx);
  free(lab);
  if (rc)
    fr_error_prefix(err, "head init");
  return rc;
}

/* --head-init model: the starting model's own head, when it was made for exactly these
 * classes (an ablation shares one head initialisation instead of recomputing the class
 * means for every run: `faceri train --epochs 0` writes one). */
static int head_from_model(run_state *r, fr_error *err)
{
  const char *from = r->o->init ? r->o->init : fr_model_default_path();
  int C = r->data.n_classes, dim = r->model.embedding_size;
  const fr_model_tensor *p = fr_model_find_tensor(&r->model, PROTOTYPES);
  if (!p || p->rank != 2 || p->dims[0] != C || p->dims[1] != dim)
    return fr_error_set(err, FR_ERR_INVALID, "--head-init model: %s has no %s of %d x %d (the data's classes)", from,
                        PROTOTYPES, C, dim);
  const fr_model_training *t = &r->model.training;
  if (!t->present || t->n_classes != C || !t->class_names)
    return fr_error_set(err, FR_ERR_INVALID, "--head-init model: %s does not name its %d classes (/training)", from,
                        C);
  const char *name = t->class_names;
  for (int k = 0; k < C; k++, name += strlen(name) + 1)
    if (strcmp(name, r->data.class_names[k]) != 0)
      return fr_error_set(err, FR_ERR_INVALID, "--head-init model: class %d is '%s' in %s, '%s' in the data", k, name,
                          from, r->data.class_names[k]);
  memcpy(r->head, p->data, (size_t)C * dim * sizeof(float));
  return FR_OK;
}

static int create_trainer(run_state *r, fr_error *err)
{
  const fr_train_run_options *o = r->o;
  int C = r->data.n_classes, dim = r->model.embedding_size;
  fr_trainer_options t = fr_trainer_defaults(o->batch + r->U, C, o->lr, o->momentum);
  t.loss = o->loss;
  t.s = o->s;
  t.m = o->loss == FR_LOSS_ARCFACE ? o->m : 0.0f;
  t.seed = o->seed;
  t.train_from_layer = o->train_from;
  t.optim = o->optim == FR_OPTIM_ADAMW ? fr_optimizer_adamw_defaults(o->lr) : fr_optimizer_sgd_defaults(o->lr, o->momentum);
  t.optim.max_grad_norm = o->max_grad_norm;
  t.optim.schedule.warmup_steps = o->warmup;
  t.optim.schedule.warmup_start = 0.0;
  if (o->cosine) {
    t.optim.schedule.decay = FR_LR_COSINE;
    t.optim.schedule.total_steps = (int)(r->spe * o->epochs);
  }
  t.backbone = (fr_param_group){1.0f, o->weight_decay, 0};
  t.head_group = (fr_param_group){o->head_lr_mult, o->weight_decay, 0};
  if (o->ri) {
    t.ri = &r->heads;
    t.ui_centre = r->model.ui_centre;
    t.ri_group = (fr_param_group){o->ri_lr_mult, o->weight_decay, 0};
  }
  int rc = FR_OK;
  if (o->resume) {
    memcpy(r->head, fr_model_find_tensor(&r->model, PROTOTYPES)->data, (size_t)C * dim * sizeof(float));
    t.head = r->head;
  } else if (o->head_init_model) {
    rc = head_from_model(r, err);
    t.head = r->head;
  } else if (o->head_init_mean) {
    rc = head_from_means(r, err);
    t.head = r->head;
  }
  if (!rc)
    rc = fr_trainer_create(r->ctx, &r->model, &t, &r->trainer, err);
  if (!rc && o->resume) {
    const fr_model_training *mt = &r->model.training;
    rc = fr_optimizer_import(fr_trainer_optimizer(r->trainer), mt->optimizer_state, mt->optimizer_state_size, err);
    if (rc)
      fr_error_prefix(err, "--resume: %s", o->output);
  }
  if (!rc && o->resume && o->ri)
    rc = fr_run_ri_restore(r, err);
  return rc;
}

static int checkpoint(run_state *r, fr_error *err)
{
  fr_model *m = &r->model;
  int C = r->data.n_classes;
  int rc = fr_trainer_export(r->trainer, m, err);
  if (!rc)
    rc = fr_trainer_read_head(r->trainer, r->head, err);
  int64_t dims[2] = {C, m->embedding_size};
  if (!rc)
    rc = fr_model_set_tensor(m, PROTOTYPES, 2, dims, r->head, err);
  fr_model_training t = {0};
  fr_optimizer *opt = fr_trainer_optimizer(r->trainer);
  t.present = 1;
  t.step = r->step;
  t.config = strdup(r->config);
  t.optimizer_state_size = fr_optimizer_state_size(opt);
  t.optimizer_state = malloc(t.optimizer_state_size ? t.optimizer_state_size : 1);
  t.loss = malloc((size_t)(r->step ? r->step : 1) * sizeof(float));
  t.n_classes = C;
  for (int k = 0; k < C; k++)
    t.class_names_size += strlen(r->data.class_names[k]) + 1;
  t.class_names = malloc(t.class_names_size);
  if (!rc && (!t.config || !t.optimizer_state || !t.loss || !t.class_names))
    rc = fr_error_set(err, FR_ERR_NOMEM, "checkpoint: out of memory");
  if (!rc)
    rc = fr_optimizer_export(opt, t.optimizer_state, t.optimizer_state_size, err);
  if (!rc) {
    memcpy(t.loss, r->loss, (size_t)r->step * sizeof(float));
    char *at = t.class_names;
    for (int k = 0; k < C; k++) {
      size_t n = strlen(r->data.class_names[k]) + 1;
      memcpy(at, r->data.class_names[k], n);
      at += n;
    }
  }
  fr_model_training_clear(&m->training);
  m->training = t; /* m owns it now (freed with the model, or replaced at the next checkpoint) */
  if (!rc && r->o->ri)
    rc = fr_run_ri_checkpoint(r, err);
  if (!rc)
    rc = fr_model_save(m, r->o->output, err);
  if (rc)
    fr_error_prefix(err, "checkpoint at step %lld", (long long)r->step);
  else
    fr_debug("checkpoint: step %lld written to %s", (long long)r->step, r->o->output);
  return rc;
}

static int train_steps(run_state *r, fr_train_run_summary *sum, fr_error *err)
{
  const fr_train_run_options *o = r->o;
  int64_t end = r->total;
  int rc = FR_OK, B = o->batch;
  int64_t cached_epoch = -1, saved_at = r->step;
  double epoch_loss = 0, t0 = fr_now_seconds();
  int epoch_count = 0;
  char what[160];
  fr_progress prog;
  snprintf(what, sizeof(what), "training");
  fr_progress_start(&prog, what, end - r->step);
  prog.what = what;
  sum->start_step = r->step;
  while (!rc && r->step < end) {
    int64_t epoch = r->step / r->spe, pos = r->step % r->spe;
    if (epoch != cached_epoch) {
      fr_train_data_epoch_order(&r->data, o->seed, epoch, r->order);
      cached_epoch = epoch;
    }
    for (int b = 0; b < B; b++)
      r->flips[b] = o->flip ? (uint8_t)(fr_mix64(((uint64_t)o->seed << 40) ^ ((uint64_t)r->step * 4096u + (uint64_t)b)) & 1)
                            : 0;
    fr_train_data_batch(&r->data, r->order + pos * B, B, r->model.mean, r->model.std, r->flips, r->images, r->labels);
    fr_trainer_batch tb = {r->images, r->labels, r->flags, B + r->U, 0.0f, 1.0f};
    fr_trainer_losses tl;
    rc = fr_run_degrade(r, err);
    if (!rc && o->ri) {
      rc = fr_run_ri_compose(r, err);
      fr_run_ri_mu_sigma(r, &tb.mu_ui, &tb.sigma_ui);
    }
    if (!rc)
      rc = fr_trainer_run_batch(r->trainer, &tb, 1, &tl, err);
    if (!rc && o->ri)
      rc = fr_run_ri_after_step(r, &tl, err);
    float loss = rc ? 0.0f : tl.total;
    if (!rc && !isfinite(loss))
      rc = fr_error_set(err, FR_ERR_INTERNAL, "step %lld: the loss is %g (diverged: lower --lr?)",
                        (long long)r->step, (double)loss);
    if (rc)
      break;
    r->loss[r->step] = loss;
    if (r->step == sum->start_step)
      sum->first_loss = loss;
    sum->last_loss = loss;
    r->step++;
    epoch_loss += loss;
    epoch_count++;
    snprintf(what, sizeof(what), "training (epoch %lld, loss %.4f)", (long long)epoch + 1, (double)loss);
    fr_progress_update(&prog, r->step - sum->start_step);
    int epoch_end = r->step % r->spe == 0;
    if (epoch_end) {
      double mean = epoch_loss / epoch_count;
      if (sum->epochs_done == 0)
        sum->first_epoch_loss = mean;
      sum->last_epoch_loss = mean;
      sum->epochs_done++;
      double dt = fr_now_seconds() - t0;
      fr_info("epoch %lld: mean loss %.5f over %d steps, lr %.3g, %.2f images/s", (long long)epoch + 1, mean,
              epoch_count, fr_optimizer_group_lr(fr_trainer_optimizer(r->trainer), o->train_from > 0 ? 1 : 0),
              dt > 0 ? (double)(r->step - sum->start_step) * B / dt : 0.0);
      if (o->ri)
        fr_run_ri_epoch_end(r, sum, epoch);
      epoch_loss = 0;
      epoch_count = 0;
    }
    if (epoch_end || (o->checkpoint_every && r->step % o->checkpoint_every == 0)) {
      rc = checkpoint(r, err);
      saved_at = r->step;
    }
  }
  fr_progress_finish(&prog);
  if (!rc && (saved_at != r->step || r->step == 0)) /* --epochs 0 still writes the initialised model */
    rc = checkpoint(r, err);
  sum->end_step = r->step;
  sum->seconds = fr_now_seconds() - t0;
  sum->images_per_s = sum->seconds > 0 ? (double)(r->step - sum->start_step) * B / sum->seconds : 0;
  return rc;
}

int fr_train_run(const fr_train_run_options *o, fr_train_run_summary *sum, fr_error *err)
{
  memset(sum, 0, sizeof(*sum));
  sum->phase_setup = 1;
  run_state r = {.o = o};
  /* The device first: --align prepares the data on it. */
  fr_vk_options vo = {.device = o->device, .validation = -1};
  int rc = fr_vk_context_create(&vo, &r.ctx, err);
  if (!rc)
    rc = load_model_and_data(&r, sum, err);
  sum->data = r.data; /* counts; the arrays stay with r */
  if (!rc) {
    snprintf(sum->device, sizeof(sum->device), "%s", fr_vk_context_device(r.ctx)->name);
    r.total = r.spe * o->epochs;
    if (o->max_steps > 0 && o->max_steps < r.total)
      r.total = o->max_steps;
    if (r.step > r.total)
      r.total = r.step; /* already past the end: nothing to do, the checkpoint stays */
    size_t img = (size_t)r.model.input_h * r.model.input_w * 3;
    r.loss_cap = r.total > 0 ? r.total : 1;
    r.loss = calloc((size_t)r.loss_cap, sizeof(float));
    r.images = malloc((size_t)(o->batch + r.U) * img * sizeof(float));
    r.labels = malloc((size_t)(o->batch + r.U) * sizeof(int32_t));
    r.flips = malloc((size_t)o->batch);
    r.order = malloc((size_t)r.data.n_images * sizeof(int32_t));
    r.head = malloc((size_t)r.data.n_classes * r.model.embedding_size * sizeof(float));
    if (!r.loss || !r.images || !r.labels || !r.flips || !r.order || !r.head)
      rc = fr_error_set(err, FR_ERR_NOMEM, "train: out of memory");
    if (!rc && o->resume && r.model.training.step > 0) {
      if (!r.model.training.loss)
        rc = fr_error_set(err, FR_ERR_INVALID, "--resume: %s has no loss history", o->output);
      else
        memcpy(r.loss, r.model.training.loss, (size_t)r.model.training.step * sizeof(float));
    }
  }
  if (!rc)
    rc = create_trainer(&r, err);
  if (!rc) {
    sum->phase_setup = 0;
    if (o->resume)
      fr_info("resuming %s at step %lld (epoch %lld)", o->output, (long long)r.step, (long long)(r.step / r.spe) + 1);
    sum->steps_per_epoch = r.spe;
    fr_vk_memory_reset_peak(r.ctx);
    rc = train_steps(&r, sum, err);
    sum->peak_device_bytes = fr_vk_memory_peak(r.ctx);
  }
  if (!rc && r.ctx && fr_vk_validation_messages(r.ctx) > 0)
    rc = fr_error_set(err, FR_ERR_VULKAN, "%llu Vulkan validation messages (logged above): a faceri bug",
                      (unsigned long long)fr_vk_validation_messages(r.ctx));
  fr_trainer_destroy(r.trainer);
  fr_vk_context_destroy(r.ctx);
  fr_model_free(&r.model);
  fr_train_data_free(&r.data);
  free(r.loss);
  free(r.images);
  free(r.labels);
  free(r.flips);
  free(r.order);
  free(r.head);
  sum->ri = o->ri;
  sum->n_ui_images = r.ui.n_images;
  fr_run_ri_free(&r);
  return rc;
}

void fr_train_run_print_summary(const fr_train_run_options *o, const fr_train_run_summary *s, int rc,
                                const char *error, FILE *out)
{
  fprintf(out, "{\"command\":\"train\",\"status\":\"%s\",\"output\":", rc ? "error" : "complete");
  fr_json_string(out, o->output);
  fprintf(out, ",\"device\":");
  fr_json_string(out, s->device);
  fprintf(out,
          ",\"images\":%d,\"classes\":%d,\"items_read\":%lld,\"not_images\":%lld,\"unreadable\":%lld,"
          "\"input_errors\":%d,\"steps_per_epoch\":%lld,\"start_step\":%lld,\"end_step\":%lld,\"epochs_done\":%d,"
          "\"first_loss\":%.6g,\"last_loss\":%.6g,\"first_epoch_loss\":%.6g,\"last_epoch_loss\":%.6g,"
          "\"seconds\":%.3f,\"images_per_s\":%.3f,\"peak_device_bytes\":%llu,\"align\":%d,\"aligned\":%lld,"
          "\"fallbacks\":%lld",
          s->n_images, s->n_classes, (long long)s->data.items_read, (long long)s->data.skipped,
          (long long)s->data.failed, s->data.input_errors, (long long)s->steps_per_epoch, (long long)s->start_step,
          (long long)s->end_step, s->epochs_done, s->first_loss, s->last_loss, s->first_epoch_loss,
          s->last_epoch_loss, s->seconds, s->images_per_s, (unsigned long long)s->peak_device_bytes, o->align,
          (long long)s->data.aligned, (long long)s->data.fallbacks);
  if (s->ri) {
    const char *names[5] = {"arcface", "l1", "id", "mse", "total"};
    for (int e = 0; e < 2; e++) {
      fprintf(out, "%s\"%s\":{", e ? "}," : ",\"ri\":{", e ? "last_epoch" : "first_epoch");
      for (int k = 0; k < 5; k++)
      {
        double v = e ? s->last_terms[k] : s->first_terms[k];
        fprintf(out, isfinite(v) ? "%s\"%s\":%.6g" : "%s\"%s\":null", k ? "," : "", names[k], v);
      }
    }
    fprintf(out, "},\"spearman_last_epoch\":%.4f,\"ui_images\":%d}",
            isfinite(s->last_spearman) ? s->last_spearman : -2.0, s->n_ui_images);
  }
  if (error) {
    fprintf(out, ",\"error\":");
    fr_json_string(out, error);
  }
  fprintf(out, "}\n");
}
