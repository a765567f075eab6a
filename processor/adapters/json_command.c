/*
 * json_command.c - commands written as JSON, e.g. by a person with kcat:
 *   {"type":"Allocate","orderid":"o1","sku":"RED-CHAIR","qty":10}
 *
 * jansson does the parsing (and rejects invalid UTF-8); this file only maps fields and
 * enforces the contract's types and sizes. Unknown fields are ignored. It also holds the
 * codec's front door, ap_command_decode, which sends Avro-framed values to the Avro adapter.
 */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "ap/codec.h"

/* Copies a string member if present; false (with `why`) when it is not a string or too long. */
static bool get_string(json_t *obj, const char *name, char dst[AP_STR_SIZE], char *why,
                       size_t whylen)
{
    json_t *member = json_object_get(obj, name);
    if (!member || json_is_null(member))
        return true; /* missing: the domain's validation reports it */
    if (!json_is_string(member)) {
        AP_SAY(why, whylen, "field %s must be a string", name);
        return false;
    }
    if (!ap_str_set(dst, json_string_value(member), json_string_length(member))) {
        AP_SAY(why, whylen, "field %s must be at most %d bytes with no NUL", name, AP_STR_MAX);
        return false;
    }
    return true;
}

static bool get_qty(json_t *obj, int64_t *qty, char *why, size_t whylen)
{
    json_t *member = json_object_get(obj, "qty");
    if (!member || json_is_null(member)) {
        AP_SAY(why, whylen, "missing field qty");
        return false;
    }
    if (!json_is_integer(member)) {
        AP_SAY(why, whylen, "field qty must be an integer");
        return false;
    }
    *qty = (int64_t)json_integer_value(member);
    return true;
}

static bool get_eta(json_t *obj, ap_msg_t *cmd, char *why, size_t whylen)
{
    json_t *member = json_object_get(obj, "eta");
    if (!member || json_is_null(member))
        return true;
    if (!json_is_string(member) ||
        !ap_date_parse(json_string_value(member), json_string_length(member), &cmd->eta)) {
        AP_SAY(why, whylen, "field eta must be a date YYYY-MM-DD or null");
        return false;
    }
    cmd->has_eta = true;
    return true;
}

/* `ref`, or its other name `batchref`. */
static bool get_ref(json_t *obj, char dst[AP_STR_SIZE], char *why, size_t whylen)
{
    if (json_object_get(obj, "ref"))
        return get_string(obj, "ref", dst, why, whylen);
    return get_string(obj, "batchref", dst, why, whylen);
}

ap_err_t ap_command_decode_json(const void *value, size_t len, ap_msg_type_t type_hint,
                                bool hint_overrides, ap_msg_t *cmd, char *why, size_t whylen)
{
    json_error_t jerr;
    ap_err_t err = AP_ERR_DECODE;
    bool ok = false;

    memset(cmd, 0, sizeof *cmd);
    json_t *root = json_loadb(value, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        AP_SAY(why, whylen, "invalid JSON at line %d column %d: %s",
               jerr.line, jerr.column, jerr.text);
        return AP_ERR_DECODE;
    }
    if (!json_is_object(root)) {
        AP_SAY(why, whylen, "a command must be a JSON object");
        goto out;
    }

    ap_msg_type_t type = AP_MSG_NONE;
    json_t *type_field = json_object_get(root, "type");
    if (type_field && json_is_string(type_field))
        type = ap_msg_type_parse(json_string_value(type_field), json_string_length(type_field));
    if (hint_overrides || type == AP_MSG_NONE)
        type = type_hint != AP_MSG_NONE ? type_hint : type;
    if (!ap_msg_is_command(type)) {
        AP_SAY(why, whylen,
               "unknown command type (give \"type\": "
               "CreateBatch, Allocate or ChangeBatchQuantity)");
        goto out;
    }
    cmd->type = type;

    err = AP_ERR_INVALID_COMMAND;
    switch (type) {
    case AP_CMD_CREATE_BATCH:
        ok = get_ref(root, cmd->ref, why, whylen) &&
             get_string(root, "sku", cmd->sku, why, whylen) &&
             get_qty(root, &cmd->qty, why, whylen) && get_eta(root, cmd, why, whylen);
        break;
    case AP_CMD_ALLOCATE:
        ok = get_string(root, "orderid", cmd->orderid, why, whylen) &&
             get_string(root, "sku", cmd->sku, why, whylen) &&
             get_qty(root, &cmd->qty, why, whylen);
        break;
    case AP_CMD_CHANGE_BATCH_QUANTITY:
        ok = get_ref(root, cmd->ref, why, whylen) && get_qty(root, &cmd->qty, why, whylen);
        break;
    default:
        break;
    }
    if (ok)
        err = AP_OK;

out:
    json_decref(root);
    return err;
}

ap_err_t ap_command_decode(ap_avro_codec_t *avro, const void *value, size_t len,
                           ap_msg_type_t type_hint, bool hint_overrides, ap_msg_t *cmd,
                           char *why, size_t whylen)
{
    const unsigned char *bytes = value;
    size_t i = 0;

    if (avro && ap_avro_is_framed(value, len))
        return ap_avro_decode_command(avro, value, len, cmd, why, whylen);
    memset(cmd, 0, sizeof *cmd);
    while (i < len && (bytes[i] == ' ' || bytes[i] == '\t' || bytes[i] == '\r' ||
                       bytes[i] == '\n'))
        i++;
    if (i < len && bytes[i] == '{')
        return ap_command_decode_json(value, len, type_hint, hint_overrides, cmd, why, whylen);
    if (len == 0)
        AP_SAY(why, whylen, "empty value");
    else
        AP_SAY(why, whylen, "unsupported encoding (first byte 0x%02x); expected a JSON object",
               bytes[0]);
    return AP_ERR_DECODE;
}

ap_err_t ap_command_encode_json(const ap_msg_t *cmd, char **json)
{
    if (!ap_msg_is_command(cmd->type))
        return AP_ERR_INTERNAL;
    json_t *root = json_object();
    bool ok = root && !json_object_set_new(root, "type", json_string(ap_msg_type_name(cmd->type)));
    if (ok && cmd->type != AP_CMD_ALLOCATE)
        ok = !json_object_set_new(root, "ref", json_string(cmd->ref));
    if (ok && cmd->type == AP_CMD_ALLOCATE)
        ok = !json_object_set_new(root, "orderid", json_string(cmd->orderid));
    if (ok && cmd->type != AP_CMD_CHANGE_BATCH_QUANTITY)
        ok = !json_object_set_new(root, "sku", json_string(cmd->sku));
    if (ok)
        ok = !json_object_set_new(root, "qty", json_integer((json_int_t)cmd->qty));
    if (ok && cmd->type == AP_CMD_CREATE_BATCH) {
        char eta[AP_DATE_LEN + 1];
        if (cmd->has_eta)
            ap_date_format(cmd->eta, eta);
        ok = !json_object_set_new(root, "eta", cmd->has_eta ? json_string(eta) : json_null());
    }
    char *text = ok ? json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(root);
    if (!text)
        return AP_ERR_NOMEM;
    *json = text;
    return AP_OK;
}
