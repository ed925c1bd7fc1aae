/* The one way the C tests talk to an engine: submit a command, pump the
 * events, wait for a reply. Every wait gives up (returns NULL / 0) instead
 * of hanging, so a hung engine fails the test. */
#ifndef NIM_TESTS_ENGINE_REQ_H
#define NIM_TESTS_ENGINE_REQ_H
#include "core/engine.h"
#include "tests/testhelp.h"
#include <poll.h>

/* Gets every event taken on the way, in order, and owns it from then on;
 * NULL: each is freed. */
typedef void (*test_seen_fn)(void *ud, nim_event *ev);

/* Waits up to ms for events, takes them all and hands each to seen. When
 * want is nonzero, its reply is not handed on but returned (the caller
 * frees it). */
static nim_event *test_pump(nim_engine *e, int ms, uint64_t want, test_seen_fn seen, void *ud) {
    struct pollfd p = { .fd = nim_engine_fd(e), .events = POLLIN };
    poll(&p, 1, ms);
    nim_event *ev = nim_engine_take_events(e), *reply = NULL;
    while (ev) {
        nim_event *n = ev->next;
        ev->next = NULL;
        if (want && !reply && ev->type == NIM_EV_DONE && ev->req == want) reply = ev;
        else if (seen) seen(ud, ev);
        else nim_event_free(ev);
        ev = n;
    }
    return reply;
}

/* Submits cmd as req with args parsed from json (NULL: none; a parse that
 * fails under fault injection submits none), then pumps until its reply
 * or until ms have passed. Returns the reply (the caller frees it), or
 * NULL: *refused is 1 when the submit was refused, else the wait gave up. */
static nim_event *test_request(nim_engine *e, uint64_t req, int cmd, const char *json, int ms,
                               test_seen_fn seen, void *ud, int *refused) {
    *refused = 0;
    if (nim_engine_submit(e, cmd, req, json ? cJSON_Parse(json) : NULL) < 0) {
        *refused = 1;
        return NULL;
    }
    for (int64_t deadline = test_now_ms() + ms; test_now_ms() < deadline;) {
        nim_event *reply = test_pump(e, 20, req, seen, ud);
        if (reply) return reply;
    }
    return NULL;
}

#endif
