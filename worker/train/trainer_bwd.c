/* The backward pass through the fused layers, one chunk of the batch at a time.
 *
 * G[i] is the gradient of layer i's output (after its activation and residual add).
 * Walking the layers backwards, every reader of y_i has added its share to G[i]
 * before layer i is reached: a layer reading y_i as input adds its input gradient, a
 * layer adding y_i as a residual adds its own G (the gradient of an add is the
 * gradient of its sum). The first share is written (or, for a residual, shared: the
 * same buffer, reference counted), later ones are added. Gradient buffers come from a
 * small pool of slots, freed once their layer is done: MobileFaceNet needs three. */
#include <stdlib.h>
#include <string.h>

#include "trainer_internal.h"

typedef struct gref {
  int slot; /* -1: a view of a buffer outside the pool */
  int started;
  fr_vk_arg arg;
} gref;

static int take_slot(fr_trainer *t, int *refs, fr_error *err)
{
  for (int s = 0; s < t->n_slots; s++)
    if (refs[s] == 0) {
      refs[s] = 1;
      return s;
    }
  if (t->n_slots == TRAINER_MAX_SLOTS)
    return fr_error_set(err, FR_ERR_UNSUPPORTED, "backward: more than %d layer gradients live at once",
                        TRAINER_MAX_SLOTS);
  int s = t->n_slots;
  int rc = fr_vk_buffer_create(t->ctx, t->tensor_bytes, &t->slots[s], err);
  if (rc)
    return rc;
  t->bytes += t->slots[s].size;
  t->n_slots++;
  refs[s] = 1;
  return s;
}

static void release(gref *g, int *refs)
{
  if (g->slot >= 0)
    refs[g->slot]--;
}

/* G[j] receives a share: the first one directly into a new slot (write_first), later
 * ones through dx_tmp and an add. Returns where the producer must write. */
static int share_target(fr_trainer *t, gref *G, int j, int *refs, fr_vk_arg *dst, int *must_add, fr_error *err)
{
  *must_add = G[j].started;
  if (G[j].started) {
    *dst = whole(&t->dx_tmp);
    return FR_OK;
  }
  int s = take_slot(t, refs, err);
  if (s < 0)
    return s;
  G[j] = (gref){s, 1, whole(&t->slots[s])};
  *dst = G[j].arg;
  return FR_OK;
}

static int layer_backward(fr_trainer *t, fr_vk_sequence *seq, gref *G, int *refs, int i, int c, int nb,
                          const fr_vk_buffer *pg, fr_error *err)
{
  tlayer *L = &t->L[i];
  const fr_layer *l = &t->layers[i];
  if (!G[i].started)
    return fr_error_set(err, FR_ERR_INTERNAL, "no gradient reached this layer");
  int rows = nb * l->out_h * l->out_w, rc = FR_OK;
  size_t n_out = (size_t)rows * l->out_c;
  fr_vk_arg gi = G[i].arg, dz = gi;
  /* Stage 1: the residual's share, the activation's gradient, the input recomputed. */
  if (l->residual >= 0) {
    gref *r = &G[l->residual];
    if (!r->started) {
      *r = G[i];
      if (r->slot >= 0)
        refs[r->slot]++;
    } else {
      rc = fr_train_record_add(t->tops, seq, n_out, r->arg, gi, r->arg, err);
    }
  }
  if (!rc && L->keep_z) {
    dz = whole(&t->dz);
    int prelu = l->activation == FR_ACT_PRELU;
    fr_vk_arg slope = prelu ? floats_at(&t->params, L->off_s, (size_t)l->out_c) : floats_at(&t->params, L->off_b, 1);
    fr_vk_arg dslope = prelu ? floats_at(pg, L->off_s, (size_t)l->out_c) : (fr_vk_arg){0};
    rc = fr_train_record_act_bwd(t->tops, seq, fr_trainer_act(l->activation), rows, l->out_c,
                                 slice(&L->z, L->slice, c), gi, slope, dz, whole(&t->scr_a), dslope, err);
  }
  fr_vk_arg x = {0};
  if (!rc)
    rc = fr_trainer_y_view(t, seq, l->input, c, nb, &t->rec_in, &x, err);
  fr_vk_sequence_barrier(seq);
  /* Stage 2: bias, filter and input gradients, all from dz. */
  fr_conv_params p = L->p;
  p.batch = nb;
  if (!rc)
    rc = fr_train_record_bias_bwd(t->tops, seq, rows, l->out_c, dz, whole(&t->scr_a),
                                  floats_at(pg, L->off_b, (size_t)l->out_c), err);
  if (!rc)
    rc = fr_train_record_conv_bwd_filter(t->tops, seq, &p, x, dz, whole(&t->scr_f),
                                         floats_at(pg, L->off_w, (size_t)fr_layer_weight_count(l)), err);
  if (!rc && l->input >= t->o.train_from_layer) {
    fr_vk_arg dst;
    int must_add = 0;
    rc = share_target(t, G, l->input, refs, &dst, &must_add, err);
    fr_vk_arg w = floats_at(&t->params, L->off_w, (size_t)fr_layer_weight_count(l));
    if (!rc)
      rc = fr_train_record_conv_bwd_data(t->tops, seq, &p, dz, w, dst, err);
    if (!rc && must_add) {
      fr_vk_sequence_barrier(seq);
      rc = fr_train_record_add(t->tops, seq, (size_t)nb * l->in_h * l->in_w * l->in_c, G[l->input].arg, dst,
                               G[l->input].arg, err);
    }
  }
  fr_vk_sequence_barrier(seq);
  release(&G[i], refs);
  return rc;
}

int fr_trainer_record_backward(fr_trainer *t, fr_vk_sequence *seq, int c, int nb, fr_error *err)
{
  gref *G = calloc((size_t)t->n, sizeof(gref));
  int refs[TRAINER_MAX_SLOTS] = {0};
  if (!G)
    return fr_error_set(err, FR_ERR_NOMEM, "backward: out of memory");
  for (int i = 0; i < t->n; i++)
    G[i].slot = -1;
  uint64_t row = (uint64_t)t->dim * sizeof(float);
  G[t->output_layer] = (gref){-1, 1, {&t->d_raw, (uint64_t)c * t->chunk * row, (uint64_t)nb * row}};
  /* Chunks after the first write their parameter gradients aside, then add them. */
  const fr_vk_buffer *pg = c == 0 ? &t->grads : &t->grads_tmp;
  int rc = FR_OK;
  for (int i = t->n - 1; i >= t->o.train_from_layer && !rc; i--) {
    /* Every layer reading the heads' feature map has added its share by now. */
    if (t->ri && i == t->feat) {
      if (!G[i].started)
        rc = fr_error_set(err, FR_ERR_INTERNAL, "backward: no gradient reached the heads' feature layer %d", i);
      else
        rc = fr_ri_heads_record_bwd2_chunk(t->ri, seq, c * t->chunk, nb, fr_trainer_feature(t, c), G[i].arg, err);
    }
    if (!rc)
      rc = layer_backward(t, seq, G, refs, i, c, nb, pg, err);
    if (rc)
      fr_error_prefix(err, "backward, chunk %d, layer %d (%s)", c, i, t->layers[i].name);
  }
  /* Feature map frozen: the heads still need their own gradients; dF goes to scratch. */
  if (!rc && t->ri && t->feat < t->o.train_from_layer)
    rc = fr_ri_heads_record_bwd2_chunk(t->ri, seq, c * t->chunk, nb, fr_trainer_feature(t, c), whole(&t->dx_tmp), err);
  if (!rc && c > 0) {
    rc = fr_train_record_add(t->tops, seq, t->n_params, whole(&t->grads), whole(&t->grads_tmp), whole(&t->grads),
                             err);
    fr_vk_sequence_barrier(seq);
  }
  free(G);
  return rc;
}
