/*
 * log.h - one line per record, text or JSON (LOG_FORMAT=json), to stderr.
 *
 * The only process-wide state in the program: the level and format, set once at start-up
 * before threads exist. Adapters and entrypoints log; the domain never does.
 */
#ifndef AP_LOG_H
#define AP_LOG_H

#include <stdbool.h>
#include <stddef.h>

typedef enum { AP_LOG_DEBUG, AP_LOG_INFO, AP_LOG_WARN, AP_LOG_ERROR } ap_log_level_t;

/* Parses "debug"/"info"/"warn"/"error"; false when unknown. */
bool ap_log_level_parse(const char *text, ap_log_level_t *level);

void ap_log_setup(ap_log_level_t level, bool json);
bool ap_log_enabled(ap_log_level_t level);

/*
 * The command this thread is working on, for LOG_FORMAT=json: while set, every record the
 * thread writes carries "correlation_id" and "message_id". The strings are borrowed until
 * the context is cleared or set again. Per thread; the consumer and the HTTP threads set it
 * around each command.
 */
void ap_log_context_set(const char *correlation_id, const char *message_id);
void ap_log_context_clear(void);

/* `text` as one line in `line` (`len` bytes): every run of spaces, tabs and line ends becomes
 * one space, none at either end. For libraries' messages that span several lines (libpq's). */
void ap_log_one_line(const char *text, char *line, size_t len);

/* `component` names the module ("kafka", "pg", "bus", ...). */
void ap_log(ap_log_level_t level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define AP_DEBUG(c, ...) ap_log(AP_LOG_DEBUG, c, __VA_ARGS__)
#define AP_INFO(c, ...) ap_log(AP_LOG_INFO, c, __VA_ARGS__)
#define AP_WARN(c, ...) ap_log(AP_LOG_WARN, c, __VA_ARGS__)
#define AP_ERROR(c, ...) ap_log(AP_LOG_ERROR, c, __VA_ARGS__)

#endif
