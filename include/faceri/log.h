#ifndef FACERI_LOG_H
#define FACERI_LOG_H
/* Logging to stderr with a level threshold (FACERI_LOG=debug|info|warn|error). */

typedef enum fr_log_level { FR_LOG_DEBUG = 0, FR_LOG_INFO, FR_LOG_WARN, FR_LOG_ERROR, FR_LOG_QUIET } fr_log_level;

void fr_log_set_level(fr_log_level level);
fr_log_level fr_log_get_level(void);
void fr_log(fr_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define fr_debug(...) fr_log(FR_LOG_DEBUG, __VA_ARGS__)
#define fr_info(...) fr_log(FR_LOG_INFO, __VA_ARGS__)
#define fr_warn(...) fr_log(FR_LOG_WARN, __VA_ARGS__)
#define fr_log_error(...) fr_log(FR_LOG_ERROR, __VA_ARGS__)

#endif
