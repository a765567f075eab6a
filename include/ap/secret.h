/*
 * secret.h - memory that held a secret (a password, a token, a URL with credentials) is
 * overwritten before it is given back, so a later heap or core dump does not show it.
 *
 * Not encryption and not a guarantee against every copy (libraries keep their own); only
 * the copies we own.
 */
#ifndef AP_SECRET_H
#define AP_SECRET_H

#include <stddef.h>

/* Overwrites `len` bytes at `buf` with zeros, in a way the compiler may not drop. */
void ap_secret_wipe(void *buf, size_t len);

/* Wipes the NUL-terminated `secret`, then frees it. NULL is a no-op. */
void ap_secret_free(char *secret);

#endif
