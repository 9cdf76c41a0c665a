/*
 * The smallest EventBus program in C: one bus, one subscription, a few
 * events, a clean close. Mirrors examples/python/memory_basic.py.
 *
 * Build against an installed prefix (`make install PREFIX=...`):
 *
 *   cc bus_basic.c $(pkg-config --cflags --libs chronica) -o bus_basic
 */
#include <stdio.h>
#include <string.h>

#include "chronica.h"

static int32_t printer(void *user_data, const chronica_event *e) {
    int *count = user_data;
    const char *ct = NULL;
    size_t ct_len = 0;
    chronica_event_content_type(e, &ct, &ct_len);
    printf("[printer] %.*s: %.*s (id %llu, %.*s)\n", (int)e->topic_len, e->topic, (int)e->payload_len,
           (const char *)e->payload, (unsigned long long)e->id, (int)(ct_len ? ct_len : 3), ct_len ? ct : "raw");
    (*count)++;
    return 0;
}

int main(void) {
    chronica_bus *bus = NULL;
    chronica_subscription *sub = NULL;
    int count = 0;
    if (chronica_bus_new_with_options(NULL, &bus) != CHRONICA_OK ||
        chronica_bus_on(bus, ">", NULL, printer, &count, NULL, &sub) != CHRONICA_OK) {
        char why[256];
        chronica_last_error(why, sizeof why);
        fprintf(stderr, "setup failed: %s\n", why);
        chronica_bus_free(bus);
        return 1;
    }
    const char *hello = "hello", *order = "{\"order\":42,\"total\":9.5}";
    chronica_bus_emit(bus, "greetings", (const uint8_t *)hello, strlen(hello));
    chronica_bus_emit_with(bus, "orders.created", (const uint8_t *)"c-1", 3, "application/json",
                           (const uint8_t *)order, strlen(order));
    chronica_node_stats stats = {0};
    chronica_bus_off(bus, sub, 2000, &stats);
    uint64_t undelivered = 0;
    chronica_bus_close(bus, 2000, &undelivered);
    printf("printer handled %d; delivered %llu; closed, %llu undelivered\n", count,
           (unsigned long long)stats.delivered, (unsigned long long)undelivered);
    chronica_subscription_free(sub);
    chronica_bus_free(bus);
    return count == 2 ? 0 : 1;
}
