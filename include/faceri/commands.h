#ifndef FACERI_COMMANDS_H
#define FACERI_COMMANDS_H
/* The faceri subcommands. Each takes argv after the command name (argv[0] is the
 * command) and returns the process exit code:
 *   0 success, 1 fatal error, 2 usage error, 3 finished but some items failed. */

#define FR_EXIT_OK 0
#define FR_EXIT_ERROR 1
#define FR_EXIT_USAGE 2
#define FR_EXIT_PARTIAL 3

int fr_cmd_devices(int argc, char **argv);
int fr_cmd_model(int argc, char **argv);
int fr_cmd_embed(int argc, char **argv);
int fr_cmd_bench(int argc, char **argv);
int fr_cmd_train(int argc, char **argv);
int fr_cmd_detect(int argc, char **argv);

/* The whole command line, quoted where needed, for result files. */
const char *fr_command_line(void);
void fr_set_command_line(int argc, char **argv);

#endif
