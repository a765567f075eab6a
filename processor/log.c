/*
 * log.c - one record per line on stderr: `2026-11-27T10:00:00.123Z INFO  kafka: text` or,
 * with LOG_FORMAT=json, {"ts":..,"level":..,"component":..,"msg":..}.
 *
 * A record is formatted into one buffer and written with one call, so lines from the
 * librdkafka threads never interleave mid-line.
 */
#include "ap/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static ap_log_level_t min_level = AP_LOG_INFO;
static bool json_format = false;

/* The command in hand on this thread (ap_log_context_set), or NULL. */
static _Thread_local const char *context_correlation;
static _Thread_local const char *context_message;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void ap_log_one_line(const char *text, char *line, size_t len)
{
    size_t n = 0;
    for (const char *p = text ? text : ""; *p && n + 1 < len; p++) {
        bool space = *p == '\n' || *p == '\t' || *p == '\r' || *p == ' ';
        if (!space)
            line[n++] = *p;
        else if (n > 0 && line[n - 1] != ' ')
            line[n++] = ' ';
    }
    while (n > 0 && line[n - 1] == ' ')
        n--;
    if (len > 0)
        line[n] = '\0';
}

bool ap_log_level_parse(const char *text, ap_log_level_t *level)
{
    for (int i = AP_LOG_DEBUG; i <= AP_LOG_ERROR; i++) {
        if (strcasecmp(text, level_names[i]) == 0) {
            *level = (ap_log_level_t)i;
            return true;
        }
    }
    if (strcasecmp(text, "warning") == 0) {
        *level = AP_LOG_WARN;
        return true;
    }
    return false;
}

void ap_log_setup(ap_log_level_t level, bool json)
{
    min_level = level;
    json_format = json;
}

bool ap_log_enabled(ap_log_level_t level)
{
    return level >= min_level;
}

void ap_log_context_set(const char *correlation_id, const char *message_id)
{
    context_correlation = correlation_id;
    context_message = message_id;
}

void ap_log_context_clear(void)
{
    context_correlation = context_message = NULL;
}

/* Appends `text` JSON-escaped; returns the new length (capped at cap - 1). */
static size_t append_json_string(char *buf, size_t len, size_t cap, const char *text)
{
    for (const unsigned char *p = (const unsigned char *)text; *p && len + 7 < cap; p++) {
        if (*p == '"' || *p == '\\') {
            buf[len++] = '\\';
            buf[len++] = (char)*p;
        } else if (*p < 0x20) {
            len += (size_t)snprintf(buf + len, cap - len, "\\u%04x", *p);
        } else {
            buf[len++] = (char)*p;
        }
    }
    buf[len] = '\0';
    return len;
}

void ap_log(ap_log_level_t level, const char *component, const char *fmt, ...)
{
    char msg[2048], line[4600], ts[32];
    struct timespec now;
    struct tm tm;
    va_list ap;

    if (!ap_log_enabled(level))
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);

    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    size_t n = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + n, sizeof ts - n, ".%03ldZ", now.tv_nsec / 1000000);

    size_t len;
    if (json_format) {
        len = (size_t)snprintf(line, sizeof line,
                               "{\"ts\":\"%s\",\"level\":\"%s\",\"component\":\"%s\",\"msg\":\"",
                               ts, level_names[level], component);
        len = append_json_string(line, len, sizeof line - 600, msg);
        if (context_correlation || context_message) {
            len += (size_t)snprintf(line + len, sizeof line - len, "\",\"correlation_id\":\"");
            len = append_json_string(line, len, sizeof line - 300, context_correlation ? context_correlation : "");
            len += (size_t)snprintf(line + len, sizeof line - len, "\",\"message_id\":\"");
            len = append_json_string(line, len, sizeof line - 3, context_message ? context_message : "");
        }
        memcpy(line + len, "\"}\n", 4);
        len += 3;
    } else {
        len = (size_t)snprintf(line, sizeof line, "%s %-5s %s: %s\n", ts, level_names[level],
                               component, msg);
        if (len >= sizeof line)
            len = sizeof line - 1;
    }
    ssize_t written = write(STDERR_FILENO, line, len);
    (void)written;
}
