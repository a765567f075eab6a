/*
 * topics.c - the topic names (ap/topics.h).
 */
#include <stdio.h>
#include <string.h>

#include "ap/topics.h"

#define TYPED_COMMANDS ".commands."

void ap_topic_commands(const char *prefix, char *buf, size_t len)
{
    snprintf(buf, len, "%s.commands", prefix);
}

void ap_topic_event(const char *prefix, ap_msg_type_t type, char *buf, size_t len)
{
    /* "BatchQuantityChanged" -> "batch_quantity_changed" */
    char snake[64];
    size_t n = 0;
    for (const char *p = ap_msg_type_name(type); *p && n + 2 < sizeof snake; p++) {
        if (*p >= 'A' && *p <= 'Z') {
            if (n > 0)
                snake[n++] = '_';
            snake[n++] = (char)(*p - 'A' + 'a');
        } else {
            snake[n++] = *p;
        }
    }
    snake[n] = '\0';
    snprintf(buf, len, "%s.events.%s", prefix, snake);
}

void ap_topic_rejections(const char *prefix, char *buf, size_t len)
{
    snprintf(buf, len, "%s.events.command_rejected", prefix);
}

void ap_topic_dead_letter(const char *prefix, char *buf, size_t len)
{
    snprintf(buf, len, "%s.dead_letter", prefix);
}

ap_msg_type_t ap_topic_command_type(const char *prefix, const char *topic)
{
    size_t plen = strlen(prefix), slen = strlen(TYPED_COMMANDS);
    if (strncmp(topic, prefix, plen) != 0 || strncmp(topic + plen, TYPED_COMMANDS, slen) != 0)
        return AP_MSG_NONE;
    const char *name = topic + plen + slen;
    return ap_msg_type_parse(name, strlen(name));
}
