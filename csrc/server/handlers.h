/* What the request handlers share (handlers.c, messages.c). */
#ifndef NIM_SERVER_HANDLERS_H
#define NIM_SERVER_HANDLERS_H
#include "server/server.h"

typedef struct {
    srv_conn   *c;
    int64_t     id;
    const char *cmd;
    cJSON      *data;   /* may be NULL: every field absent */
    int         grouped; /* sendMsg: replies go through the open group */
} req;

/* Answers r exactly once: through the open group commit when r is a
 * grouped sendMsg, else at once. Takes data. */
void srv_answer(const req *r, int code, const char *error, cJSON *data);
void srv_answer_ok(const req *r, cJSON *data);

/* Field checks inside a handler: on failure answer with the getter's reason. */
#define CHECK(call) do { if ((rc = (call)) != NIM_CODE_OK) { srv_answer(r, rc, err, NULL); return; } } while (0)

/* Answers 419 (and returns it) when account would hold more than its cap
 * of what with adding more rows; NIM_CODE_OK otherwise (500 answered too). */
int srv_check_cap(const req *r, srv_rows what, int64_t adding);
/* Answers 404 with error, naming the unknown accounts (an array, taken; NULL:
 * one name, not listed), counted against the asker's allowance of such
 * answers (throttle.h); past it 429 with retryAfter instead. */
void srv_answer_unknown(const req *r, cJSON *unknown, const char *error);
/* The 419 text for what at the cap, with have rows. */
void srv_cap_error(srv_rows what, int64_t have, char *buf, size_t len);

/* messages.c */
void srv_h_send_msg(const req *r);
void srv_h_mark_received(const req *r);
void srv_h_send_receipt(const req *r);
void srv_h_get_history(const req *r);
/* A stored message to everyone who should see it live: the peer's (or
 * every member's) devices and the sender's other devices (from: the
 * sending connection, or NULL). */
void srv_push_msg(const srv_conn *from, const char *from_account, const cJSON *msg,
                  const cJSON *members, const char *peer);

/* teams.c: who is in a team, with consent */
void srv_h_add_members(const req *r);
void srv_h_remove_members(const req *r);
void srv_h_leave_team(const req *r);
/* The connection is gone: its grouped replies have nowhere to go. */
void srv_group_forget(const srv_conn *c);

#endif
