/*
 * Several subscriptions and a consumer group on one bus. Mirrors
 * examples/python/memory_multiple.py and examples/rust/bus_multiple.rs:
 *
 *  - "audit" (orders.>) and "metrics" (orders.*) each see every order;
 *  - three workers form the group "workers": each order goes to exactly one
 *    of them (by key), so together they process every order once.
 *
 * Build against an installed prefix (`make install PREFIX=...`):
 *
 *   cc bus_multiple.c $(pkg-config --cflags --libs chronica) -o bus_multiple
 */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "chronica.h"

#define ORDERS 1000
#define WORKERS 3

static int32_t count(void *user_data, const chronica_event *e) {
    (void)e;
    atomic_fetch_add((atomic_ulong *)user_data, 1);
    return 0;
}

static int fail(const char *what) {
    char why[256];
    chronica_last_error(why, sizeof why);
    fprintf(stderr, "%s failed: %s\n", what, why);
    return 1;
}

int main(void) {
    static atomic_ulong audit, metrics, workers[WORKERS];
    chronica_bus *bus = NULL;
    chronica_subscription *subs[2 + WORKERS] = {0};
    int rc = 0;
    if (chronica_bus_new_with_options(NULL, &bus) != CHRONICA_OK) {
        return fail("chronica_bus_new_with_options");
    }
    chronica_subscribe_options *group = chronica_subscribe_options_new();
    if (chronica_bus_on(bus, "orders.>", NULL, count, &audit, NULL, &subs[0]) != CHRONICA_OK ||
        chronica_bus_on(bus, "orders.*", NULL, count, &metrics, NULL, &subs[1]) != CHRONICA_OK ||
        chronica_subscribe_options_set_group(group, "workers") != CHRONICA_OK) {
        rc = fail("subscribe");
    }
    for (int i = 0; rc == 0 && i < WORKERS; i++) {
        if (chronica_bus_on(bus, "orders.created", group, count, &workers[i], NULL, &subs[2 + i]) != CHRONICA_OK) {
            rc = fail("subscribe a worker");
        }
    }
    chronica_subscribe_options_free(group);

    for (int id = 0; rc == 0 && id < ORDERS; id++) {
        char key[32], order[64];
        int klen = snprintf(key, sizeof key, "customer-%d", id % 17);
        int olen = snprintf(order, sizeof order, "{\"id\":%d,\"total\":%.1f}", id, id * 1.5);
        if (chronica_bus_emit_with(bus, "orders.created", (const uint8_t *)key, (size_t)klen, "application/json",
                                   (const uint8_t *)order, (size_t)olen) != CHRONICA_OK) {
            rc = fail("chronica_bus_emit_with");
        }
    }

    /* Wait (at most 30 s) until every subscription has seen its share. */
    for (int waited = 0; rc == 0 && waited < 3000; waited++) {
        unsigned long group_total = 0;
        for (int i = 0; i < WORKERS; i++) {
            group_total += atomic_load(&workers[i]);
        }
        if (atomic_load(&audit) == ORDERS && atomic_load(&metrics) == ORDERS && group_total == ORDERS) {
            break;
        }
        nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
    }
    unsigned long group_total = 0;
    printf("audit saw %lu, metrics saw %lu\n", atomic_load(&audit), atomic_load(&metrics));
    for (int i = 0; i < WORKERS; i++) {
        printf("  worker-%d: %lu orders\n", i + 1, atomic_load(&workers[i]));
        group_total += atomic_load(&workers[i]);
    }
    printf("the group processed %lu\n", group_total);

    uint64_t undelivered = 0;
    if (chronica_bus_close(bus, 2000, &undelivered) != CHRONICA_OK) {
        rc = fail("chronica_bus_close");
    }
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++) {
        chronica_subscription_free(subs[i]);
    }
    chronica_bus_free(bus);
    printf("closed, %llu undelivered\n", (unsigned long long)undelivered);
    int ok = atomic_load(&audit) == ORDERS && atomic_load(&metrics) == ORDERS && group_total == ORDERS;
    return rc == 0 && ok ? 0 : 1;
}
