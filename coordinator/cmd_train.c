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
    "      --epochs E           passes over the data (default 1)\n"
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
    "      --head-init KIND     mean (class means of the initial embeddings; default) or random\n"
    "      --flip               random horizontal flips\n"
    "      --seed S             data order, flips and random head (default 1)\n"
    "      --crop X,Y,W,H       crop each image before resizing (as faceri run --crop)\n"
    "      --labels FILE.csv    key,label rows; --label-regex RE: label from the key\n"
    "      --identities A:N     keep identities A..A+N-1 in sorted name order (a split by identity)\n"
    "      --min-images N       drop identities with fewer images (default 2)\n"
    "      --checkpoint-every N also checkpoint every N steps (default: every epoch only)\n"
    "      --device SEL         Vulkan device index or name substring\n"
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
  char first[32];
  const char *colon = strchr(text, ':');
  size_t len = colon ? (size_t)(colon - text) : 0;
  if (!colon || len == 0 || len >= sizeof(first))
    return fr_error_set(err, FR_ERR_INVALID, "--identities \"%s\": expected FIRST:COUNT", text);
  memcpy(first, text, len);
  first[len] = '\0';
  if (fr_parse_int("--identities", first, 0, 1 << 30, &a, err) ||
      fr_parse_int("--identities", colon + 1, 0, 1 << 30, &n, err))
    return FR_ERR_INVALID;
  d->first_identity = (int)a;
  d->identity_count = (int)n;
  return FR_OK;
}

enum {
  O_INIT = 1000, O_RESUME, O_LOSS, O_S, O_M, O_EPOCHS, O_MAX_STEPS, O_OPTIM, O_LR, O_MOMENTUM, O_WD, O_CLIP,
  O_SCHEDULE, O_WARMUP, O_HEAD_LR, O_TRAIN_FROM, O_HEAD_INIT, O_FLIP, O_SEED, O_CROP, O_LABELS, O_REGEX,
  O_IDENTITIES, O_MIN_IMAGES, O_CKPT, O_DEVICE, O_JSON
};

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
      {"json", no_argument, 0, O_JSON}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
  long v;
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "o:b:h", longopts, NULL)) != -1) {
    int rc = FR_OK;
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
    case O_EPOCHS: rc = fr_parse_int("--epochs", optarg, 1, 1000000, &v, err); o->epochs = (int)v; break;
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
      if (!strcmp(optarg, "mean"))
        o->head_init_mean = 1;
      else if (!strcmp(optarg, "random"))
        o->head_init_mean = 0;
      else
        rc = fr_error_set(err, FR_ERR_INVALID, "--head-init \"%s\": expected mean or random", optarg);
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
    case 'h': *help = 1; return FR_OK;
    default: return fr_error_set(err, FR_ERR_INVALID, "unknown option (see --help)");
    }
    if (rc)
      return rc;
  }
  o->inputs = (const char *const *)argv + optind;
  o->n_inputs = argc - optind;
  if (!o->output)
    return fr_error_set(err, FR_ERR_INVALID, "-o OUT.h5 is required");
  if (o->n_inputs < 1)
    return fr_error_set(err, FR_ERR_INVALID, "no INPUT given");
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
