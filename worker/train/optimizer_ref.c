/* CPU reference of the optimizers and schedules. The update is in float, in PyTorch's
 * order of operations, so the device should match it to rounding (the only double is
 * the clip norm, summed in another order than the device's two stages). */
#include <math.h>

#include "faceri/optimizer.h"

double fr_lr_schedule_factor(const fr_lr_schedule *s, int64_t t)
{
  if (t < 0)
    t = 0;
  double f = 1.0;
  if (s->warmup_steps > 0 && t < s->warmup_steps)
    f = s->warmup_start + (1.0 - s->warmup_start) * (double)t / s->warmup_steps;
  int64_t td = t - (s->warmup_steps > 0 ? s->warmup_steps : 0);
  if (td < 0)
    td = 0;
  if (s->decay == FR_LR_STEP && s->step_size > 0)
    f *= pow(s->gamma, (double)(td / s->step_size));
  else if (s->decay == FR_LR_COSINE) {
    int64_t T = (int64_t)s->total_steps - (s->warmup_steps > 0 ? s->warmup_steps : 0);
    double frac = T > 0 ? (td < T ? (double)td / (double)T : 1.0) : 1.0;
    f *= s->min_factor + (1.0 - s->min_factor) * 0.5 * (1.0 + cos(M_PI * frac));
  }
  return f;
}

static int steps_group(const fr_param_group *g) { return !g->frozen && g->lr_mult != 0.0f; }

double fr_ref_optimizer_step(const fr_optimizer_config *cfg, const fr_param_group *groups, fr_ref_param *params,
                             int n_params, int64_t step)
{
  double ss = 0;
  for (int k = 0; k < n_params; k++)
    if (steps_group(&groups[params[k].group]))
      for (size_t i = 0; i < params[k].n; i++)
        ss += (double)params[k].grad[i] * params[k].grad[i];
  double norm = sqrt(ss);
  float scale = 1.0f;
  if (cfg->max_grad_norm > 0)
    scale = (float)fmin(1.0, cfg->max_grad_norm / (norm + 1e-6));
  double factor = fr_lr_schedule_factor(&cfg->schedule, step - 1);
  float b1 = cfg->beta1, b2 = cfg->beta2;
  float omb1 = (float)(1.0 - (double)b1), omb2 = (float)(1.0 - (double)b2);
  for (int k = 0; k < n_params; k++) {
    const fr_param_group *g = &groups[params[k].group];
    if (!steps_group(g))
      continue;
    double lr_d = (double)cfg->lr * g->lr_mult * factor;
    float lr = (float)lr_d, wd = g->weight_decay;
    fr_ref_param *p = &params[k];
    for (size_t i = 0; i < p->n; i++) {
      float gr = p->grad[i];
      if (cfg->max_grad_norm > 0)
        gr *= scale;
      float x = p->value[i];
      if (cfg->kind == FR_OPTIM_SGD) {
        if (wd != 0.0f)
          gr = gr + wd * x;
        if (cfg->momentum != 0.0f) {
          float buf = step == 1 ? gr : p->s1[i] * cfg->momentum + (float)(1.0 - (double)cfg->dampening) * gr;
          p->s1[i] = buf;
          gr = cfg->nesterov ? gr + cfg->momentum * buf : buf;
        }
        p->value[i] = x + (-lr) * gr;
      } else {
        x = x * (float)(1.0 - lr_d * wd);
        float m = p->s1[i] + omb1 * (gr - p->s1[i]);
        float v = p->s2[i] * b2 + omb2 * gr * gr;
        p->s1[i] = m, p->s2[i] = v;
        float denom = sqrtf(v) / (float)sqrt(1.0 - pow(b2, (double)step)) + cfg->eps;
        p->value[i] = x + (-(float)(lr_d / (1.0 - pow(b1, (double)step)))) * (m / denom);
      }
    }
  }
  return norm;
}
