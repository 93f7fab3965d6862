/* faceri train: fine-tune a model on labelled faces on the Vulkan device, with
 * checkpoints in the output model file and an exact --resume. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "faceri/cli_util.h"
#include "faceri/commands.h"
#include "faceri/log.h"
#include "faceri/train_data.h"
#include "faceri/train_run.h"

static const char usage[] =
    "usage: faceri train [options] -o OUT.h5 INPUT...\n"
    "Fine-tunes a model (default: the pretrained MobileFaceNet) on labelled faces:\n"
    "image files, folders and archives as `faceri run` reads them, labels from the\n"
    "parent folder (or --labels / --label-regex). The output is a model file with the\n"
    "trained backbone, the classification head (/prototypes) and the training state\n"
    "(/training); it is rewritten at every checkpoint, so --resume continues a stopped\n"
    "run to the same losses and weights as an uninterrupted one.\n"
    "  -o, --output FILE        the model file to write (required)\n"
    "      --init FILE          starting model (default: $FACERI_MODEL or models/mobilefacenet.h5)\n"
    "      --resume             continue from OUT.h5's checkpoint (same data and options)\n"
    "      --loss KIND          arcface (default) or softmax\n"
    "      --s S, --m M         ArcFace scale and margin (default 64, 0.5)\n"
    "      --epochs E           passes over the data (default 1; 0: write the initialised\n"
    "                           model, head included, without a step)\n"
    "      --max-steps N        stop after N optimizer steps in total (0: no limit)\n"
    "  -b, --batch B            images per step (default 32); a last partial batch is dropped\n"
    "      --optim KIND         sgd (default) or adamw\n"
    "      --lr LR              base learning rate (default 0.01)\n"
    "      --momentum M         SGD momentum (default 0.9)\n"
    "      --weight-decay WD    (default 5e-4)\n"
    "      --max-grad-norm N    clip the global gradient norm (default 0: off)\n"
    "      --schedule KIND      constant (default) or cosine over all epochs\n"
    "      --warmup STEPS       linear warm-up steps (default 0)\n"
    "      --head-lr-mult X     the head's learning rate multiplier (default 1)\n"
    "      --train-from LAYER   freeze layers before this index (default 0: train all)\n"
    "      --head-init KIND     mean (class means of the initial embeddings; default), random,\n"
    "                           or model (--init's own head, written for the same classes)\n"
    "      --flip               random horizontal flips\n"
    "      --seed S             data order, flips and random head (default 1)\n"
    "      --crop X,Y,W,H       crop each image before resizing (as faceri run --crop)\n"
    "      --align              align each face once before the epochs, as faceri run --align\n"
    "                           (--crop then frames only the fallbacks); --align-min-score S,\n"
    "                           --face-size MIN:MAX, --mtcnn DIR as for faceri run\n"
    "      --labels FILE.csv    key,label rows; --label-regex RE: label from the key\n"
    "      --identities A:N     keep identities A..A+N-1 in sorted name order (a split by identity)\n"
    "      --min-images N       drop identities with fewer images (default 2)\n"
    "      --checkpoint-every N also checkpoint every N steps (default: every epoch only)\n"
    "      --device SEL         Vulkan device index or name substring\n"
    "The paper's recognizability model (docs/RI_HEADS.md; the model needs a UI centre,\n"
    "faceri model set-ui): L = ArcFace + alpha L1 + beta ID + gamma MSE\n"
    "      --ri                 train the RI heads (regression, attention) with the backbone\n"
    "      --ui INPUT           unrecognisable faces mixed into every batch (repeat for more inputs)\n"
    "      --ui-per-batch N     UI images added to each batch (default batch/4, at least 1)\n"
    "      --ui-region R        model (default: as the model's UI centre was made), head or whole\n"
    "      --alpha A --beta B --gamma G   term weights (default 5, 2, 1)\n"
    "      --tau T              ID-loss margin (default 1.645)\n"
    "      --mu-sigma KIND      n01 (default: the paper's N(0,1)) or estimate (UI rows' xi^, last --ui-k)\n"
    "      --ui-k K             UI samples the estimate runs over (default 5000)\n"
    "      --ri-dropout P       the regression head's dropout (default 0.5)\n"
    "      --reg-input KIND     features (default, the paper) or embedding (CR-FIQA style)\n"
    "      --no-attention       no perceptibility attention head (no MSE term)\n"
    "      --detach-vproj yes|no  v' as a constant target (default yes)\n"
    "      --project-normalized project v/|v| instead of the raw v (Eq. 8)\n"
    "      --ri-lr-mult X       the heads' learning-rate multiplier (default 1)\n"
    "      --degrade            very-low-resolution augmentation of the labelled images\n"
    "                           (also without --ri)\n"
    "      --degrade-prob P     per image (default 0.5)\n"
    "      --degrade-sizes A:B  low-resolution side range in pixels (default 8:32)\n"
    "      --json               JSON summary only on stdout (default: also a text log on stderr)\n"
    "Exit codes: 0 trained, 3 trained but some images were unreadable, 1 failed, 2 usage.\n";

static int parse_float(const char *opt, const char *text, double lo, double hi, float *out, fr_error *err)
{
  char *end = NULL;
  errno = 0;
  double v = strtod(text, &end);
  if (errno || end == text || *end || !isfinite(v) || v < lo || v > hi)
    return fr_error_set(err, FR_ERR_INVALID, "%s \"%s\": expected a number in [%g, %g]", opt, text, lo, hi);
  *out = (float)v;
  return FR_OK;
}

static int parse_crop(const char *text, fr_preprocess *pp, fr_error *err)
{
  long v[4];
  if (fr_parse_int_list("--crop", text, 4, v, err))
    return FR_ERR_INVALID;
  if (v[0] < 0 || v[1] < 0 || v[2] < 1 || v[3] < 1)
    return fr_error_set(err, FR_ERR_INVALID, "--crop \"%s\": need X,Y >= 0 and W,H >= 1", text);
  pp->has_crop = 1;
  pp->crop_x = (int)v[0], pp->crop_y = (int)v[1], pp->crop_w = (int)v[2], pp->crop_h = (int)v[3];
  return FR_OK;
}

static int parse_range(const char *text, fr_train_data_options *d, fr_error *err)
{
  long a = 0, n = 0;
  if (fr_parse_int_pair("--identities", text, "FIRST:COUNT", 0, 1 << 30, &a, &n, err))
    return FR_ERR_INVALID;
  d->first_identity = (int)a;
  d->identity_count = (int)n;
  return FR_OK;
}

enum {
  O_INIT = 1000, O_RESUME, O_LOSS, O_S, O_M, O_EPOCHS, O_MAX_STEPS, O_OPTIM, O_LR, O_MOMENTUM, O_WD, O_CLIP,
  O_SCHEDULE, O_WARMUP, O_HEAD_LR, O_TRAIN_FROM, O_HEAD_INIT, O_FLIP, O_SEED, O_CROP, O_LABELS, O_REGEX,
  O_IDENTITIES, O_MIN_IMAGES, O_CKPT, O_DEVICE, O_JSON, O_RI, O_UI, O_UI_PER_BATCH, O_UI_REGION, O_ALPHA, O_BETA,
  O_GAMMA, O_TAU, O_MU_SIGMA, O_UI_K, O_RI_DROPOUT, O_REG_INPUT, O_NO_ATT, O_DETACH_VPROJ, O_PROJ_NORM, O_RI_LR,
  O_DEGRADE, O_DEGRADE_PROB, O_DEGRADE_SIZES
};

#define MAX_UI_INPUTS 256
static const char *g_ui_inputs[MAX_UI_INPUTS];

static int parse_choice(const char *opt, const char *text, const char *a, const char *b, int *out, fr_error *err)
{
  if (!strcmp(text, a))
    *out = 0;
  else if (!strcmp(text, b))
    *out = 1;
  else
    return fr_error_set(err, FR_ERR_INVALID, "%s \"%s\": expected %s or %s", opt, text, a, b);
  return FR_OK;
}

static int parse_sizes(const char *text, fr_degrade_options *g, fr_error *err)
{
  long a = 0, b = 0;
  if (fr_parse_int_pair("--degrade-sizes", text, "MIN:MAX", 2, 1024, &a, &b, err))
    return FR_ERR_INVALID;
  if (b < a)
    return fr_error_set(err, FR_ERR_INVALID, "--degrade-sizes \"%s\": MAX is below MIN", text);
  g->min_size = (int)a, g->max_size = (int)b;
  return FR_OK;
}

static int parse_args(int argc, char **argv, fr_train_run_options *o, int *help, fr_error *err)
{
  static const struct option longopts[] = {
      {"output", required_argument, 0, 'o'}, {"init", required_argument, 0, O_INIT},
      {"resume", no_argument, 0, O_RESUME}, {"loss", required_argument, 0, O_LOSS},
      {"s", required_argument, 0, O_S}, {"m", required_argument, 0, O_M},
      {"epochs", required_argument, 0, O_EPOCHS}, {"max-steps", required_argument, 0, O_MAX_STEPS},
      {"batch", required_argument, 0, 'b'}, {"optim", required_argument, 0, O_OPTIM},
      {"lr", required_argument, 0, O_LR}, {"momentum", required_argument, 0, O_MOMENTUM},
      {"weight-decay", required_argument, 0, O_WD}, {"max-grad-norm", required_argument, 0, O_CLIP},
      {"schedule", required_argument, 0, O_SCHEDULE}, {"warmup", required_argument, 0, O_WARMUP},
      {"head-lr-mult", required_argument, 0, O_HEAD_LR}, {"train-from", required_argument, 0, O_TRAIN_FROM},
      {"head-init", required_argument, 0, O_HEAD_INIT}, {"flip", no_argument, 0, O_FLIP},
      {"seed", required_argument, 0, O_SEED}, {"crop", required_argument, 0, O_CROP},
      {"labels", required_argument, 0, O_LABELS}, {"label-regex", required_argument, 0, O_REGEX},
      {"identities", required_argument, 0, O_IDENTITIES}, {"min-images", required_argument, 0, O_MIN_IMAGES},
      {"checkpoint-every", required_argument, 0, O_CKPT}, {"device", required_argument, 0, O_DEVICE},
      {"json", no_argument, 0, O_JSON}, {"help", no_argument, 0, 'h'},
      {"ri", no_argument, 0, O_RI}, {"ui", required_argument, 0, O_UI},
      {"ui-per-batch", required_argument, 0, O_UI_PER_BATCH}, {"ui-region", required_argument, 0, O_UI_REGION},
      {"alpha", required_argument, 0, O_ALPHA}, {"beta", required_argument, 0, O_BETA},
      {"gamma", required_argument, 0, O_GAMMA}, {"tau", required_argument, 0, O_TAU},
      {"mu-sigma", required_argument, 0, O_MU_SIGMA}, {"ui-k", required_argument, 0, O_UI_K},
      {"ri-dropout", required_argument, 0, O_RI_DROPOUT}, {"reg-input", required_argument, 0, O_REG_INPUT},
      {"no-attention", no_argument, 0, O_NO_ATT}, {"detach-vproj", required_argument, 0, O_DETACH_VPROJ},
      {"project-normalized", no_argument, 0, O_PROJ_NORM}, {"ri-lr-mult", required_argument, 0, O_RI_LR},
      {"degrade", no_argument, 0, O_DEGRADE}, {"degrade-prob", required_argument, 0, O_DEGRADE_PROB},
      {"degrade-sizes", required_argument, 0, O_DEGRADE_SIZES}, FR_ALIGN_LONGOPTS, {0, 0, 0, 0}};
  int choice = 0;
  long v;
  int c;
  optind = 1;
  fr_align_cli al;
  fr_align_cli_init(&al);
  while ((c = getopt_long(argc, argv, "o:b:h", longopts, NULL)) != -1) {
    int rc = FR_OK;
    int taken = fr_align_cli_option(&al, c, optarg, err);
    if (taken < 0)
      return FR_ERR_INVALID;
    if (taken)
      continue;
    switch (c) {
    case 'o': o->output = optarg; break;
    case O_INIT: o->init = optarg; break;
    case O_RESUME: o->resume = 1; break;
    case O_LOSS:
      if (!strcmp(optarg, "arcface"))
        o->loss = FR_LOSS_ARCFACE;
      else if (!strcmp(optarg, "softmax"))
        o->loss = FR_LOSS_SOFTMAX;
      else
        rc = fr_error_set(err, FR_ERR_INVALID, "--loss \"%s\": expected arcface or softmax", optarg);
      break;
    case O_S: rc = parse_float("--s", optarg, 1e-3, 1e4, &o->s, err); o->s_given = 1; break;
    case O_M: rc = parse_float("--m", optarg, 0, 1.5, &o->m, err); o->m_given = 1; break;
    case O_EPOCHS: rc = fr_parse_int("--epochs", optarg, 0, 1000000, &v, err); o->epochs = (int)v; break;
    case O_MAX_STEPS: rc = fr_parse_int("--max-steps", optarg, 0, 1L << 40, &v, err); o->max_steps = v; break;
    case 'b': rc = fr_parse_int("--batch", optarg, 1, 4096, &v, err); o->batch = (int)v; break;
    case O_OPTIM:
      if (!strcmp(optarg, "sgd"))
        o->optim = FR_OPTIM_SGD;
      else if (!strcmp(optarg, "adamw"))
        o->optim = FR_OPTIM_ADAMW;
      else
        rc = fr_error_set(err, FR_ERR_INVALID, "--optim \"%s\": expected sgd or adamw", optarg);
      break;
    case O_LR: rc = parse_float("--lr", optarg, 0, 100, &o->lr, err); break;
    case O_MOMENTUM: rc = parse_float("--momentum", optarg, 0, 0.9999, &o->momentum, err); break;
    case O_WD: rc = parse_float("--weight-decay", optarg, 0, 10, &o->weight_decay, err); break;
    case O_CLIP: rc = parse_float("--max-grad-norm", optarg, 0, 1e9, &o->max_grad_norm, err); break;
    case O_SCHEDULE:
      if (!strcmp(optarg, "constant"))
        o->cosine = 0;
      else if (!strcmp(optarg, "cosine"))
        o->cosine = 1;
      else
        rc = fr_error_set(err, FR_ERR_INVALID, "--schedule \"%s\": expected constant or cosine", optarg);
      break;
    case O_WARMUP: rc = fr_parse_int("--warmup", optarg, 0, 1L << 30, &v, err); o->warmup = (int)v; break;
    case O_HEAD_LR: rc = parse_float("--head-lr-mult", optarg, 0, 1e4, &o->head_lr_mult, err); break;
    case O_TRAIN_FROM: rc = fr_parse_int("--train-from", optarg, 0, 4096, &v, err); o->train_from = (int)v; break;
    case O_HEAD_INIT:
      o->head_init_model = !strcmp(optarg, "model");
      if (!strcmp(optarg, "mean") || o->head_init_model)
        o->head_init_mean = 1;
      else if (!strcmp(optarg, "random"))
        o->head_init_mean = 0;
      else
        rc = fr_error_set(err, FR_ERR_INVALID, "--head-init \"%s\": expected mean, random or model", optarg);
      break;
    case O_FLIP: o->flip = 1; break;
    case O_SEED: rc = fr_parse_int("--seed", optarg, 0, 0x7fffffffL, &v, err); o->seed = (uint32_t)v; break;
    case O_CROP: rc = parse_crop(optarg, &o->data.pp, err); break;
    case O_LABELS: o->data.labels_csv = optarg; break;
    case O_REGEX: o->data.label_regex = optarg; break;
    case O_IDENTITIES: rc = parse_range(optarg, &o->data, err); break;
    case O_MIN_IMAGES: rc = fr_parse_int("--min-images", optarg, 1, 1 << 20, &v, err); o->data.min_images = (int)v; break;
    case O_CKPT: rc = fr_parse_int("--checkpoint-every", optarg, 1, 1L << 30, &v, err); o->checkpoint_every = v; break;
    case O_DEVICE: o->device = optarg; break;
    case O_JSON: o->json = 1; break;
    case O_RI: o->ri = 1; break;
    case O_UI:
      if (o->n_ui_inputs == MAX_UI_INPUTS)
        rc = fr_error_set(err, FR_ERR_INVALID, "--ui: more than %d inputs (give folders or archives)", MAX_UI_INPUTS);
      else
        g_ui_inputs[o->n_ui_inputs++] = optarg;
      o->ui_inputs = g_ui_inputs;
      break;
    case O_UI_PER_BATCH: rc = fr_parse_int("--ui-per-batch", optarg, 1, 4096, &v, err); o->ui_per_batch = (int)v; break;
    case O_UI_REGION:
      if (!strcmp(optarg, "model"))
        o->ui_region = -1;
      else if (!(rc = parse_choice("--ui-region", optarg, "whole", "head", &choice, err)))
        o->ui_region = choice;
      break;
    case O_ALPHA: rc = parse_float("--alpha", optarg, 0, 1e6, &o->heads.alpha, err); break;
    case O_BETA: rc = parse_float("--beta", optarg, 0, 1e6, &o->heads.beta, err); break;
    case O_GAMMA: rc = parse_float("--gamma", optarg, 0, 1e6, &o->heads.gamma, err); break;
    case O_TAU: rc = parse_float("--tau", optarg, -1e6, 1e6, &o->heads.tau, err); break;
    case O_MU_SIGMA: rc = parse_choice("--mu-sigma", optarg, "n01", "estimate", &o->mu_sigma_estimate, err); break;
    case O_UI_K: rc = fr_parse_int("--ui-k", optarg, 2, 1 << 30, &v, err); o->ui_k = (int)v; break;
    case O_RI_DROPOUT: rc = parse_float("--ri-dropout", optarg, 0, 0.99, &o->heads.dropout, err); break;
    case O_REG_INPUT:
      rc = parse_choice("--reg-input", optarg, "features", "embedding", &choice, err);
      o->heads.reg_input = choice ? FR_RI_REG_EMBEDDING : FR_RI_REG_FEATURES;
      break;
    case O_NO_ATT: o->heads.attention = 0; break;
    case O_DETACH_VPROJ:
      rc = parse_choice("--detach-vproj", optarg, "no", "yes", &choice, err);
      o->heads.detach_vproj = choice;
      break;
    case O_PROJ_NORM: o->heads.project_normalized = 1; break;
    case O_RI_LR: rc = parse_float("--ri-lr-mult", optarg, 0, 1e4, &o->ri_lr_mult, err); break;
    case O_DEGRADE: o->degrade = 1; break;
    case O_DEGRADE_PROB: rc = parse_float("--degrade-prob", optarg, 0, 1, &o->degrade_prob, err); break;
    case O_DEGRADE_SIZES: rc = parse_sizes(optarg, &o->degrade_opts, err); break;
    case 'h': *help = 1; return FR_OK;
    default: return fr_error_set(err, FR_ERR_INVALID, "unknown option (see --help)");
    }
    if (rc)
      return rc;
  }
  if (fr_align_cli_check(&al, err))
    return FR_ERR_INVALID;
  o->align = al.align;
  o->mtcnn_dir = al.mtcnn_dir;
  o->data.align_opts = fr_align_defaults();
  o->data.align_opts.min_score = al.min_score;
  o->data.align_opts.min_face = al.min_face;
  o->data.align_opts.max_face = al.max_face;
  o->inputs = (const char *const *)argv + optind;
  o->n_inputs = argc - optind;
  if (!o->output)
    return fr_error_set(err, FR_ERR_INVALID, "-o OUT.h5 is required");
  if (o->n_inputs < 1)
    return fr_error_set(err, FR_ERR_INVALID, "no INPUT given");
  if (o->n_ui_inputs > 0 && !o->ri)
    return fr_error_set(err, FR_ERR_INVALID, "--ui is for the RI heads: give --ri too");
  if (o->mu_sigma_estimate && o->n_ui_inputs == 0)
    return fr_error_set(err, FR_ERR_INVALID, "--mu-sigma estimate needs UI images (--ui INPUT)");
  if (o->loss == FR_LOSS_SOFTMAX && o->m_given && o->m != 0.0f)
    return fr_error_set(err, FR_ERR_INVALID, "--m %g: a softmax head takes no margin", (double)o->m);
  if (o->loss == FR_LOSS_SOFTMAX) {
    o->m = 0.0f;
    if (!o->s_given)
      o->s = 1.0f; /* a plain linear head on the normalised embedding unless asked otherwise */
  }
  struct stat st;
  if (!o->resume && stat(o->output, &st) == 0)
    return fr_error_set(err, FR_ERR_INVALID, "%s exists: give --resume to continue its training, or another -o",
                        o->output);
  if (o->resume && stat(o->output, &st) != 0)
    return fr_error_set(err, FR_ERR_INVALID, "--resume: %s does not exist (nothing to resume)", o->output);
  return FR_OK;
}

int fr_cmd_train(int argc, char **argv)
{
  fr_train_run_options o = fr_train_run_defaults();
  fr_error err = {0};
  int help = 0;
  int prc = parse_args(argc, argv, &o, &help, &err);
  if (!prc && help) {
    fputs(usage, stdout);
    return FR_EXIT_OK;
  }
  if (prc) {
    fprintf(stderr, "faceri train: %s\n\n%s", err.message, usage);
    return FR_EXIT_USAGE;
  }
  fr_train_run_summary sum;
  int rc = fr_train_run(&o, &sum, &err);
  fr_train_run_print_summary(&o, &sum, rc, rc ? err.message : NULL, stdout);
  if (rc) {
    fprintf(stderr, "faceri train: %s\n", err.message);
    return rc == FR_ERR_INVALID && sum.phase_setup ? FR_EXIT_USAGE : FR_EXIT_ERROR;
  }
  return sum.data.failed > 0 || sum.data.input_errors > 0 ? FR_EXIT_PARTIAL : FR_EXIT_OK;
}
