/*
 * strbuf.h - the one growable string, in the manner of git's strbuf: text appended in pieces,
 * always NUL-terminated, and an out-of-memory that is remembered instead of checked at every
 * append.
 *
 *     ap_strbuf_t sb = AP_STRBUF_INIT;
 *     ap_strbuf_adds(&sb, "{\"name\":");
 *     ap_strbuf_add(&sb, name, len);
 *     char *text = ap_strbuf_detach(&sb);   (NULL when an append ran out of memory)
 *
 * It is not a formatter: it copies bytes. Pure C; a buffer belongs to one thread.
 */
#ifndef AP_STRBUF_H
#define AP_STRBUF_H

#include <stdbool.h>
#include <stddef.h>

typedef struct ap_strbuf {
    char *buf;   /* NUL-terminated once anything was appended; NULL before */
    size_t len;  /* bytes before the NUL */
    size_t cap;
    bool failed; /* an append ran out of memory; later appends do nothing */
} ap_strbuf_t;

#define AP_STRBUF_INIT {NULL, 0, 0, false}

/* Appends `n` bytes of `s` (which may hold NULs). */
void ap_strbuf_add(ap_strbuf_t *sb, const char *s, size_t n);

/* Appends the C string `s`. */
void ap_strbuf_adds(ap_strbuf_t *sb, const char *s);

/* Appends one byte. */
void ap_strbuf_addch(ap_strbuf_t *sb, char c);

/*
 * Hands the text over and empties the buffer: caller frees with free(). NULL when an append
 * failed (the text is then freed here), and "" rather than NULL when nothing was appended.
 */
char *ap_strbuf_detach(ap_strbuf_t *sb);

/* Empties the text (and forgets a failed append), keeping the memory for the next use. */
void ap_strbuf_reset(ap_strbuf_t *sb);

/* Frees the text and empties the buffer. */
void ap_strbuf_release(ap_strbuf_t *sb);

#endif
