/* The SDK trusts no frame (docs/protocol.md "The SDK's client"): what a
 * server frame would store is checked here, with the rules the server
 * applies to what it receives (proto.c's message checks), before any of it
 * is stored. A frame that breaks one is refused whole (net_refuse): reported
 * through onerror, never stored, and the link is dropped, so the client
 * syncs again from its stored cursors after the usual backoff. Engine
 * thread only. */
#include "net/client_private.h"
#include <stdio.h>
#include <string.h>

static __thread char why_buf[256];

static int bad(const char **why, const char *fmt, const char *a, const char *b) {
    snprintf(why_buf, sizeof why_buf, fmt, a, b);
    *why = why_buf;
    return 0;
}

int net_check_msg(const nim_net *n, const cJSON *m, int64_t *id, const char **why) {
    nim_proto_msg pm;
    const char *err = NULL;
    if (nim_proto_msg_from_json(m, &pm, &err) != NIM_CODE_OK) return bad(why, "a message: %s%s", err, "");
    /* a p2p message is mine when I sent it or it was sent to me */
    if (pm.scene == NIM_SCENE_P2P && strcmp(pm.from, n->account) != 0 && strcmp(pm.to, n->account) != 0)
        return bad(why, "a message from %.40s to %.40s, not to or from this account", pm.from, pm.to);
    if (id) *id = pm.id_server;
    return 1;
}

int net_check_msgs(const nim_net *n, const cJSON *arr, int64_t *max_id, const char **why) {
    if (!cJSON_IsArray(arr)) return bad(why, "msgs: not an array%s%s", "", "");
    *max_id = 0;
    for (const cJSON *m = arr->child; m; m = m->next) {
        int64_t id = 0;
        if (!net_check_msg(n, m, &id, why)) return 0;
        if (id > *max_id) *max_id = id;
    }
    return 1;
}

int net_check_state(const cJSON *it, net_state_kind kind, const char **why) {
    const char *sid = NULL, *target = NULL, *err = NULL, *s = NULL;
    int64_t v = 0;
    if (!cJSON_IsObject(it)) return bad(why, "an item is not an object%s%s", "", "");
    if (nim_proto_get_str(it, "sessionId", 1, NIM_PROTO_MAX_SESSION_ID, 1, &sid, &err) != NIM_CODE_OK)
        return bad(why, "%s%s", err, "");
    nim_scene scene = nim_proto_parse_session_id(sid, &target);
    if (scene == NIM_SCENE_NONE || (kind == NET_STATE_RECEIPTS && scene != NIM_SCENE_P2P))
        return bad(why, "sessionId: not a session id: %.64s%s", sid, "");
    int rc = NIM_CODE_OK;
    switch (kind) {
    case NET_STATE_POINTERS:
        if (rc == NIM_CODE_OK) rc = nim_proto_get_int(it, "ack", 0, NIM_PROTO_MAX_INT, 1, &v, &err);
        if (rc == NIM_CODE_OK) rc = nim_proto_get_int(it, "ver", 0, NIM_PROTO_MAX_INT, 0, &v, &err);
        break;
    case NET_STATE_RECEIPTS:
        if (rc == NIM_CODE_OK) rc = nim_proto_get_int(it, "time", 0, NIM_PROTO_MAX_INT, 1, &v, &err);
        if (rc == NIM_CODE_OK) rc = nim_proto_get_id(it, "idServer", 0, &v, &err);
        if (rc == NIM_CODE_OK) rc = nim_proto_get_int(it, "ver", 0, NIM_PROTO_MAX_INT, 0, &v, &err);
        break;
    case NET_STATE_TOPS:
        if (rc == NIM_CODE_OK) rc = nim_proto_get_str(it, "topCustom", 0, NIM_PROTO_MAX_CUSTOM, 0, &s, &err);
        if (rc == NIM_CODE_OK) rc = nim_proto_get_int(it, "createTime", 0, NIM_PROTO_MAX_INT, 0, &v, &err);
        if (rc == NIM_CODE_OK) rc = nim_proto_get_int(it, "updateTime", 0, NIM_PROTO_MAX_INT, 0, &v, &err);
        break;
    }
    if (rc != NIM_CODE_OK) return bad(why, "%s%s", err, "");
    return 1;
}

int net_check_resume(const cJSON *ro, int64_t *bound, const char **why) {
    const char *sess = NULL, *target = NULL;
    int64_t v = 0;
    if (!cJSON_IsObject(ro)) return bad(why, "resume: not an object%s%s", "", "");
    if (nim_proto_get_int(ro, "bound", 1, NIM_PROTO_MAX_INT, 1, bound, why) != NIM_CODE_OK ||
        nim_proto_get_str(ro, "session", 0, NIM_PROTO_MAX_SESSION_ID, 1, &sess, why) != NIM_CODE_OK ||
        nim_proto_get_int(ro, "before", 0, NIM_PROTO_MAX_INT, 1, &v, why) != NIM_CODE_OK ||
        nim_proto_get_int(ro, "sent", 0, 100, 1, &v, why) != NIM_CODE_OK)
        return 0;
    if (*sess && nim_proto_parse_session_id(sess, &target) == NIM_SCENE_NONE)
        return bad(why, "resume.session: not a session id%s%s", "", "");
    return 1;
}

int net_check_states(const cJSON *arr, net_state_kind kind, const char **why) {
    if (!cJSON_IsArray(arr)) return bad(why, "not an array of items%s%s", "", "");
    for (const cJSON *it = arr->child; it; it = it->next)
        if (!net_check_state(it, kind, why)) return 0;
    return 1;
}

void net_refuse(nim_net *n, const char *why) {
    char msg[224];
    snprintf(msg, sizeof msg, "a frame from the server was refused: %s", why);
    net_report_error(n, NULL, NIM_CODE_BAD_FRAME, msg, "frame");
    net_drop(n, 1006, "a frame from the server broke a rule: syncing again");
}
