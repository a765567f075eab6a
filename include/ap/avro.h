/*
 * avro.h - the Avro adapter: our schemas (schemas/avro/, compiled into the program), binary
 * encoding of events, decoding of commands, and the two framings of docs/topics.md:
 *
 *   single-object: C3 01, the writer schema's CRC-64-AVRO fingerprint (8 bytes, little
 *                  endian) of its Parsing Canonical Form, then the Avro binary body;
 *   confluent:     00, the schema registry's id (4 bytes, big endian), then the body.
 *
 * avro-c has neither Parsing Canonical Form nor the fingerprint; both are implemented here
 * and tested against the specification's vectors. No avro-c type crosses this header.
 * A codec belongs to one thread.
 */
#ifndef AP_AVRO_H
#define AP_AVRO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ap/error.h"
#include "ap/messages.h"

typedef enum { AP_WIRE_SINGLE_OBJECT, AP_WIRE_CONFLUENT } ap_wire_format_t;

/* The schema names, as in the .avsc files: "com.made.allocation.events.Allocated", ... */
#define AP_AVRO_REJECTION_NAME "com.made.allocation.events.CommandRejected"

typedef struct ap_avro_codec ap_avro_codec_t;

/* Looks a writer schema up by registry id (the registry adapter provides it). The JSON is
 * returned in *schema_json, which the caller frees with free(). */
typedef ap_err_t (*ap_schema_lookup_fn)(void *ctx, int32_t id, char **schema_json);

/* Parses every compiled-in schema. Caller frees with ap_avro_codec_free. */
ap_err_t ap_avro_codec_new(ap_wire_format_t format, ap_avro_codec_t **out);
void ap_avro_codec_free(ap_avro_codec_t *codec);

/* For the confluent framing: where unknown writer ids are looked up (borrowed ctx). */
void ap_avro_codec_set_lookup(ap_avro_codec_t *codec, ap_schema_lookup_fn lookup, void *ctx);

/* Drops the writer schemas looked up by id so far, usable or not: the next value with such
 * an id asks the lookup again. (Ids never change meaning, so the processor has no need of
 * it; the fuzz harness of the registry's answers does.) */
void ap_avro_codec_forget_writers(ap_avro_codec_t *codec);

/* The compiled-in schemas, for registration: iterate i = 0.. until it returns false. */
bool ap_avro_schema_at(const ap_avro_codec_t *codec, size_t i, const char **full_name,
                       const char **schema_json);
/* Sets the registry id used when framing records of schema `full_name` (confluent). */
ap_err_t ap_avro_codec_set_schema_id(ap_avro_codec_t *codec, const char *full_name, int32_t id);

/* Fingerprint helpers, exposed for tests and tools. `canonical` is malloc'd. */
ap_err_t ap_avro_canonical_form(const char *schema_json, char **canonical);
uint64_t ap_avro_crc64(const void *data, size_t len);

/*
 * Encodes an event (an ap_msg_t with an event type) or a rejection, framed per the codec's
 * wire format. *out is malloc'd; the caller frees it.
 */
ap_err_t ap_avro_encode_event(ap_avro_codec_t *codec, const ap_msg_t *event, uint8_t **out,
                              size_t *len);
ap_err_t ap_avro_encode_rejection(ap_avro_codec_t *codec, const ap_rejection_t *rejection,
                                  uint8_t **out, size_t *len);

/* Encodes a command, framed per the codec's wire format (for tests, tools, benchmarks). */
ap_err_t ap_avro_encode_command(ap_avro_codec_t *codec, const ap_msg_t *cmd, uint8_t **out,
                                size_t *len);

/*
 * True when `value` starts like one of the two framings (the first byte is 0xC3 or 0x00).
 */
bool ap_avro_is_framed(const void *value, size_t len);

/*
 * Decodes a framed command, either framing: the writer schema is found by fingerprint or by
 * registry id (through the lookup) and resolved against our reader schema of the record of
 * the same name. AP_ERR_DECODE (with `why`) for an unknown fingerprint or id, a truncated or
 * malformed body, or a record that is not a command; AP_ERR_INVALID_COMMAND for a field
 * over AP_STR_MAX bytes. cmd->type comes from the record's name.
 */
ap_err_t ap_avro_decode_command(ap_avro_codec_t *codec, const void *value, size_t len,
                                ap_msg_t *cmd, char *why, size_t whylen);

/*
 * Decodes any framed record we know (event, rejection or command) into one line of JSON:
 * {"type":"Allocated","orderid":...,...}, dates as "YYYY-MM-DD". *json is malloc'd.
 */
ap_err_t ap_avro_decode_to_json(ap_avro_codec_t *codec, const void *value, size_t len,
                                char **json, char *why, size_t whylen);

#endif
