/* faceri model import|info: bring a foreign model in, and describe a model file. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "faceri/commands.h"
#include "faceri/model.h"
#include "faceri/ui_centre.h"

static const char usage[] =
    "usage: faceri model import SOURCE.tflite -o MODEL.h5\n"
    "       faceri model info [MODEL.h5]\n"
    "       faceri model set-ui MODEL.h5 UI_INPUT... [--face-region head|whole|degrade] (see --help)\n"
    "import  reads a TFLite flatbuffer (MobileFaceNet) and writes the faceri HDF5 model\n"
    "        file: architecture, fused layers and weights, preprocessing, SHA-256s.\n"
    "info    prints a model file's attributes and layer table (default: the model\n"
    "        that commands use without --model: $FACERI_MODEL or models/mobilefacenet.h5).\n"
    "set-ui  embeds unrecognizable faces and stores their centre in the model (docs/UI_CENTRE.md).\n";

static int cmd_import(int argc, char **argv)
{
  const char *out = NULL;
  static const struct option longopts[] = {{"output", required_argument, 0, 'o'}, {"help", no_argument, 0, 'h'},
                                           {0, 0, 0, 0}};
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "o:h", longopts, NULL)) != -1) {
    if (c == 'o')
      out = optarg;
    else if (c == 'h') {
      fputs(usage, stdout);
      return FR_EXIT_OK;
    } else {
      fputs(usage, stderr);
      return FR_EXIT_USAGE;
    }
  }
  if (optind != argc - 1 || !out) {
    fputs(usage, stderr);
    return FR_EXIT_USAGE;
  }
  const char *src = argv[optind];
  fr_model model = {0};
  fr_error err = {0};
  if (fr_model_import_tflite(src, &model, &err)) {
    fprintf(stderr, "faceri model import: %s\n", err.message);
    return FR_EXIT_ERROR;
  }
  int rc = fr_model_save(&model, out, &err);
  if (rc)
    fprintf(stderr, "faceri model import: %s\n", err.message);
  else
    printf("imported %s (%s, %d layers, %.3f GMAC/image, %d-d embedding) -> %s\n", src, model.architecture,
           model.n_layers, (double)fr_model_macs(&model) / 1e9, model.embedding_size, out);
  fr_model_free(&model);
  return rc ? FR_EXIT_ERROR : FR_EXIT_OK;
}

int fr_cmd_model(int argc, char **argv)
{
  if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
    fputs(usage, argc < 2 ? stderr : stdout);
    return argc < 2 ? FR_EXIT_USAGE : FR_EXIT_OK;
  }
  if (!strcmp(argv[1], "import"))
    return cmd_import(argc - 1, argv + 1);
  if (!strcmp(argv[1], "set-ui"))
    return fr_cmd_model_set_ui(argc - 1, argv + 1);
  if (!strcmp(argv[1], "info")) {
    if (argc > 3 || (argc == 3 && argv[2][0] == '-')) {
      fputs(usage, argc == 3 && !strcmp(argv[2], "--help") ? stdout : stderr);
      return argc == 3 && !strcmp(argv[2], "--help") ? FR_EXIT_OK : FR_EXIT_USAGE;
    }
    const char *path = argc == 3 ? argv[2] : fr_model_default_path();
    fr_error err = {0};
    if (fr_model_print_info(path, stdout, &err)) {
      fprintf(stderr, "faceri model info: %s\n", err.message);
      return FR_EXIT_ERROR;
    }
    return FR_EXIT_OK;
  }
  fprintf(stderr, "faceri model: unknown subcommand \"%s\"\n%s", argv[1], usage);
  return FR_EXIT_USAGE;
}
