/*
 * codec.h - turning the bytes of a Kafka message into a command.
 *
 * A value is JSON (what people type into kcat) or Avro in either framing (docs/topics.md);
 * the first byte tells which.
 */
#ifndef AP_CODEC_H
#define AP_CODEC_H

#include <stddef.h>

#include "ap/avro.h"
#include "ap/error.h"
#include "ap/messages.h"

/*
 * Decodes one command value. `type_hint` is the type named by a `command-type` header or
 * implied by a typed topic (AP_MSG_NONE when neither): a header wins over the value's own
 * `type`, which wins over the topic (the caller passes the strongest hint it has and says
 * whether it came from a header through `hint_overrides`).
 *
 * Returns AP_OK; AP_ERR_DECODE when the bytes are not a command at all (bad JSON, not an
 * object, no known command type), which is dead-letter material; or AP_ERR_INVALID_COMMAND
 * when they are a command of a known type with a field of the wrong type or size, or a bad
 * date, which the domain rejects. `cmd->type` is set whenever the type is known, also on
 * failure. `why` receives one line.
 */
ap_err_t ap_command_decode_json(const void *value, size_t len, ap_msg_type_t type_hint,
                                bool hint_overrides, ap_msg_t *cmd, char *why, size_t whylen);

/*
 * A command as the JSON object ap_command_decode_json reads back, with its "type" first,
 * e.g. {"type":"Allocate","orderid":"o1","sku":"RED-CHAIR","qty":10}. Caller frees *json
 * with free(). AP_ERR_NOMEM, or AP_ERR_INTERNAL when `cmd` is not a command.
 */
ap_err_t ap_command_encode_json(const ap_msg_t *cmd, char **json);

/*
 * Decodes one command value of any encoding, picking the decoder by its first byte: 0xC3 or
 * 0x00 is Avro in one of its framings (ap_avro_decode_command with `avro`; the type comes
 * from the record's schema, the hint is ignored), '{' after white space is JSON
 * (ap_command_decode_json), anything else AP_ERR_DECODE. `avro` may be NULL: Avro values are
 * then AP_ERR_DECODE too. Errors as the decoder's.
 */
ap_err_t ap_command_decode(ap_avro_codec_t *avro, const void *value, size_t len,
                           ap_msg_type_t type_hint, bool hint_overrides, ap_msg_t *cmd,
                           char *why, size_t whylen);

#endif
