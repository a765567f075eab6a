/*
 * test_registry_server.c - the fake schema registry (tests/fakes/fake_registry.c) as a
 * process, for end-to-end tests: prints its base URL on the first line of stdout, then
 * serves until SIGTERM or SIGINT.
 */
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include "fake_registry.h"

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

int main(void)
{
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    fake_registry_t *fake = fake_registry_start();
    if (!fake) {
        fprintf(stderr, "test-registry-server: cannot start\n");
        return 1;
    }
    printf("%s\n", fake_registry_url(fake));
    fflush(stdout);
    while (!stop)
        pause();
    fake_registry_stop(fake);
    return 0;
}
