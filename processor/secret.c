/*
 * secret.c - wiping what held a secret (secret.h).
 */
#include "ap/secret.h"

#include <stdlib.h>
#include <string.h>

void ap_secret_wipe(void *buf, size_t len)
{
    /* Through a volatile pointer, so the stores are not optimised away as dead. */
    for (volatile unsigned char *p = buf; len > 0; len--)
        *p++ = 0;
}

void ap_secret_free(char *secret)
{
    if (!secret)
        return;
    ap_secret_wipe(secret, strlen(secret));
    free(secret);
}
