/*
 * strbuf.c - the growable string (ap/strbuf.h), grown by the array helper (ap/array.h).
 */
#include <stdlib.h>
#include <string.h>

#include "ap/array.h"
#include "ap/strbuf.h"

void ap_strbuf_add(ap_strbuf_t *sb, const char *s, size_t n)
{
    if (sb->failed)
        return;
    if (n > (size_t)-1 - sb->len - 1 || !AP_ARRAY_RESERVE(sb->buf, sb->cap, sb->len + n + 1)) {
        sb->failed = true;
        return;
    }
    memcpy(sb->buf + sb->len, s, n);
    sb->len += n;
    sb->buf[sb->len] = '\0';
}

void ap_strbuf_adds(ap_strbuf_t *sb, const char *s)
{
    ap_strbuf_add(sb, s, strlen(s));
}

void ap_strbuf_addch(ap_strbuf_t *sb, char c)
{
    ap_strbuf_add(sb, &c, 1);
}

char *ap_strbuf_detach(ap_strbuf_t *sb)
{
    char *text = sb->failed ? NULL : sb->buf ? sb->buf : strdup("");
    if (sb->failed)
        free(sb->buf);
    *sb = (ap_strbuf_t)AP_STRBUF_INIT;
    return text;
}

void ap_strbuf_reset(ap_strbuf_t *sb)
{
    sb->len = 0;
    sb->failed = false;
    if (sb->buf)
        sb->buf[0] = '\0';
}

void ap_strbuf_release(ap_strbuf_t *sb)
{
    free(sb->buf);
    *sb = (ap_strbuf_t)AP_STRBUF_INIT;
}
