/* The event queue (engine -> owner) and its wakeup fd (wakeup.h): every
 * event the owner takes goes through here, and comes back through
 * nim_engine_recycle to be freed on the engine thread that allocated it. */
#include "core/engine_private.h"
#include <string.h>

void nim_event_free(nim_event *ev) {
    while (ev) {
        nim_event *n = ev->next;
        nim_free(ev->message);
        cJSON_Delete(ev->data);
        nim_free(ev);
        ev = n;
    }
}

/* Any thread, under evlock. The spare reply event of a submitted command. */
static nim_event *take_spare(nim_engine *e) {
    nim_event *sp = e->spare;
    if (sp) e->spare = sp->next;
    return sp;
}

static void enqueue(nim_engine *e, nim_event *ev, int drop_spare) {
    ev->next = NULL;
    pthread_mutex_lock(&e->evlock);
    /* a reply made by the caller (the network layer) uses up its command's
     * spare: drop one so the spares stay one per unanswered command */
    nim_event *sp = drop_spare && ev->type == NIM_EV_DONE ? take_spare(e) : NULL;
    int was_empty = e->ev_head == NULL;
    if (e->ev_tail) e->ev_tail->next = ev; else e->ev_head = ev;
    e->ev_tail = ev;
    if (was_empty) nim_wakeup_signal(&e->evwake);
    pthread_mutex_unlock(&e->evlock);
    nim_free(sp);
}

void nim_engine_emit(nim_engine *e, nim_event *ev) { enqueue(e, ev, 1); }

/* Engine thread. Queues an event; on allocation failure the data is freed
 * and -1 returned (the event is lost: callers of session events mark what
 * to send again). A reply (NIM_EV_DONE) takes its command's spare event,
 * so it is never lost; its message may be (NULL when it cannot be copied). */
int eng_emit(nim_engine *e, int type, uint64_t req, const char *code, const char *message,
             cJSON *data) {
    nim_event *ev = NULL;
    if (type == NIM_EV_DONE) {
        pthread_mutex_lock(&e->evlock);
        ev = take_spare(e);
        pthread_mutex_unlock(&e->evlock);
        if (ev) memset(ev, 0, sizeof *ev);
    }
    if (!ev) ev = nim_calloc(1, sizeof *ev);
    if (!ev) { cJSON_Delete(data); return -1; }
    ev->type = type;
    ev->req = req;
    ev->code = code;
    ev->message = message ? nim_strdup(message) : NULL;
    ev->data = data;
    enqueue(e, ev, 0);
    return 0;
}

void nim_engine_reply(nim_engine *e, uint64_t req, const char *code, const char *message,
                      cJSON *data) {
    eng_emit(e, NIM_EV_DONE, req, code, message, data);
}

nim_event *nim_engine_take_events(nim_engine *e) {
    pthread_mutex_lock(&e->evlock);
    nim_wakeup_drain(&e->evwake);   /* under evlock, as the signal: no wakeup lost */
    nim_event *h = e->ev_head;
    e->ev_head = e->ev_tail = NULL;
    pthread_mutex_unlock(&e->evlock);
    return h;
}

void nim_engine_rearm(nim_engine *e) { nim_wakeup_signal(&e->evwake); }

/* The engine thread frees them at its next loop; a wake only once enough
 * has piled up (a syscall per poll would cost what freeing here saves). */
#define GARBAGE_WAKE 1024

void nim_engine_recycle(nim_engine *e, nim_event *head, nim_event *tail, size_t count) {
    if (!head) return;
    pthread_mutex_lock(&e->evlock);
    tail->next = e->garbage;
    e->garbage = head;
    e->ngarbage += count;
    int wake = e->ngarbage >= GARBAGE_WAKE;
    pthread_mutex_unlock(&e->evlock);
    if (wake) e->hooks.wake(e, e->hooks.ud);
}

/* Engine thread (or the owner after the join). */
void eng_free_garbage(nim_engine *e) {
    pthread_mutex_lock(&e->evlock);
    nim_event *g = e->garbage;
    e->garbage = NULL;
    e->ngarbage = 0;
    pthread_mutex_unlock(&e->evlock);
    nim_event_free(g);
}

int nim_engine_fd(nim_engine *e) { return nim_wakeup_fd(&e->evwake); }

int nim_engine_finished(nim_engine *e) { return __atomic_load_n(&e->finished, __ATOMIC_ACQUIRE); }

const char *nim_engine_account(nim_engine *e) { return e->account; }
