/*
 * topics.h - every Kafka topic name the processor reads or writes, built in one place from
 * TOPIC_PREFIX (docs/topics.md):
 *
 *   <prefix>.commands                  commands of any type (the default COMMAND_TOPICS)
 *   <prefix>.commands.<type>           commands of one type, implied by the name
 *   <prefix>.events.<event>            events, e.g. allocation.events.batch_quantity_changed
 *   <prefix>.events.command_rejected   rejections
 *   <prefix>.dead_letter               undecodable input, copied unchanged
 *
 * Pure C, no state: names only, not whether the topics exist. Any thread.
 */
#ifndef AP_TOPICS_H
#define AP_TOPICS_H

#include <stddef.h>

#include "ap/messages.h"

/* Room for any of these names: a prefix is a valid topic name, at most 249 bytes. */
#define AP_TOPIC_SIZE 400

/* Each writes the name into `buf` of `len` bytes (truncated to fit, always terminated). */
void ap_topic_commands(const char *prefix, char *buf, size_t len);
void ap_topic_event(const char *prefix, ap_msg_type_t type, char *buf, size_t len);
void ap_topic_rejections(const char *prefix, char *buf, size_t len);
void ap_topic_dead_letter(const char *prefix, char *buf, size_t len);

/* The command type a topic of the form <prefix>.commands.<type> implies ("allocate" or
 * "Allocate"), or AP_MSG_NONE for any other topic. */
ap_msg_type_t ap_topic_command_type(const char *prefix, const char *topic);

#endif
