/* The nim wire protocol: frame decoding with every check done before a field
 * is trusted, and the builders both sides use to encode. See proto.h and
 * docs/protocol.md. Any thread; no state. */
#include "net/proto.h"
#include "core/alloc.h"
#include "core/jfield.h"
#include <string.h>
#include <stdio.h>

static const char *const cmd_names[NIM_WIRE__COUNT] = {
    [NIM_WIRE_UNKNOWN]          = "",
    [NIM_WIRE_LOGIN]            = "login",
    [NIM_WIRE_LOGOUT]           = "logout",
    [NIM_WIRE_PING]             = "ping",
    [NIM_WIRE_SEND_MSG]         = "sendMsg",
    [NIM_WIRE_MARK_RECEIVED]    = "markMsgsReceived",
    [NIM_WIRE_UPDATE_READ]      = "updateReadPointers",
    [NIM_WIRE_SEND_RECEIPT]     = "sendMsgReceipt",
    [NIM_WIRE_DELETE_SESSIONS]  = "deleteSessions",
    [NIM_WIRE_ADD_STICK_TOP]    = "addStickTop",
    [NIM_WIRE_UPDATE_STICK_TOP] = "updateStickTop",
    [NIM_WIRE_DELETE_STICK_TOP] = "deleteStickTop",
    [NIM_WIRE_GET_STICK_TOP]    = "getStickTop",
    [NIM_WIRE_CREATE_TEAM]      = "createTeam",
    [NIM_WIRE_GET_HISTORY]      = "getHistoryMsgs",
    [NIM_WIRE_ADD_TEAM_MEMBERS] = "addTeamMembers",
    [NIM_WIRE_REMOVE_TEAM_MEMBERS] = "removeTeamMembers",
    [NIM_WIRE_LEAVE_TEAM]       = "leaveTeam",
};

static const char *const push_names[NIM_PUSH__COUNT] = {
    [NIM_PUSH_UNKNOWN]            = "",
    [NIM_PUSH_ROAMING_MSGS]       = "roamingMsgs",
    [NIM_PUSH_OFFLINE_MSGS]       = "offlineMsgs",
    [NIM_PUSH_READ_POINTERS]      = "readPointers",
    [NIM_PUSH_RECEIPTS]           = "msgReceipts",
    [NIM_PUSH_STICK_TOP_SESSIONS] = "stickTopSessions",
    [NIM_PUSH_SYNC_DONE]          = "syncDone",
    [NIM_PUSH_MSG]                = "msg",
    [NIM_PUSH_STICK_TOP]          = "stickTop",
    [NIM_PUSH_TEAM]               = "team",
    [NIM_PUSH_KICKED]             = "kicked",
};

const char *nim_proto_cmd_name(nim_wire_cmd c) {
    return (c > NIM_WIRE_UNKNOWN && c < NIM_WIRE__COUNT) ? cmd_names[c] : "";
}

nim_wire_cmd nim_proto_cmd_from_name(const char *s) {
    if (!s) return NIM_WIRE_UNKNOWN;
    for (int i = 1; i < NIM_WIRE__COUNT; i++)
        if (strcmp(s, cmd_names[i]) == 0) return (nim_wire_cmd)i;
    return NIM_WIRE_UNKNOWN;
}

const char *nim_proto_push_name(nim_push p) {
    return (p > NIM_PUSH_UNKNOWN && p < NIM_PUSH__COUNT) ? push_names[p] : "";
}

nim_push nim_proto_push_from_name(const char *s) {
    if (!s) return NIM_PUSH_UNKNOWN;
    for (int i = 1; i < NIM_PUSH__COUNT; i++)
        if (strcmp(s, push_names[i]) == 0) return (nim_push)i;
    return NIM_PUSH_UNKNOWN;
}

const char *nim_proto_code_text(int code) {
    switch (code) {
    case NIM_CODE_OK:            return "ok";
    case NIM_CODE_AUTH:          return "wrong account or token";
    case NIM_CODE_BAD_FRAME:     return "malformed frame";
    case NIM_CODE_NOT_LOGGED_IN: return "not logged in";
    case NIM_CODE_FORBIDDEN:     return "forbidden";
    case NIM_CODE_NOT_FOUND:     return "not found";
    case NIM_CODE_UNKNOWN_CMD:   return "unknown command";
    case NIM_CODE_LOGGED_IN:     return "already logged in";
    case NIM_CODE_PARAM:         return "bad parameter";
    case NIM_CODE_LIMIT:         return "limit reached";
    case NIM_CODE_VERSION:       return "protocol version not supported";
    case NIM_CODE_THROTTLED:     return "too many failed logins";
    case NIM_CODE_SERVER:        return "server error";
    default:                     return "error";
    }
}

int nim_proto_utf8_valid(const char *str, size_t len) {
    const unsigned char *s = (const unsigned char *)str, *e = s + len;
    while (s < e) {
        unsigned c = *s;
        if (c < 0x80) { s++; continue; }
        size_t n;
        unsigned cp, min;
        if ((c & 0xE0) == 0xC0)      { n = 2; cp = c & 0x1F; min = 0x80; }
        else if ((c & 0xF0) == 0xE0) { n = 3; cp = c & 0x0F; min = 0x800; }
        else if ((c & 0xF8) == 0xF0) { n = 4; cp = c & 0x07; min = 0x10000; }
        else return 0;
        if ((size_t)(e - s) < n) return 0;
        for (size_t i = 1; i < n; i++) {
            if ((s[i] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (s[i] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
        s += n;
    }
    return 1;
}

/* Scans the raw text once before cJSON sees it: nesting depth, NUL bytes
 * anywhere and raw control characters inside strings (JSON forbids them and
 * cJSON would accept them, a NUL silently cutting a string short), and the
 * escape \u0000, which cJSON decodes into a NUL that cuts the string short
 * ("secret\u0000junk" would read as "secret"): refused, naming the field
 * (the key the string is the value of, or an item of). */
static __thread char scan_err[96];

static const char *scan_json(const char *buf, size_t len, int *soft) {
    *soft = 0;
    int depth = 0, in_str = 0, esc = 0, nul = 0;
    size_t start = 0, key = 0, key_len = 0;   /* the last key, raw */
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)buf[i];
        if (c == 0) return "NUL byte";
        if (in_str) {
            if (esc) {
                esc = 0;
                if (c == 'u' && len - i > 4 && memcmp(buf + i + 1, "0000", 4) == 0) nul = 1;
            } else if (c == '\\') {
                esc = 1;
            } else if (c == '"') {
                in_str = 0;
                size_t j = i + 1;
                while (j < len && (buf[j] == ' ' || buf[j] == '\t' || buf[j] == '\r' || buf[j] == '\n')) j++;
                int is_key = j < len && buf[j] == ':';
                if (nul) {
                    *soft = 1;   /* the frame still parses: its id can be answered */
                    if (is_key || !key_len) return "a key contains U+0000 (not allowed)";
                    snprintf(scan_err, sizeof scan_err, "%.*s: contains U+0000 (not allowed)",
                             (int)(key_len > 40 ? 40 : key_len), buf + key);
                    return scan_err;
                }
                if (is_key) { key = start; key_len = i - start; }
            } else if (c < 0x20) {
                return "control character in string";
            }
        } else if (c == '"') {
            in_str = 1;
            nul = 0;
            start = i + 1;
        } else if (c == '[' || c == '{') {
            if (++depth > NIM_PROTO_MAX_DEPTH) return "nested too deeply";
        } else if (c == ']' || c == '}') {
            depth--;
        }
    }
    return NULL;
}

static int is_int_value(const cJSON *v, int64_t min, int64_t max, int64_t *out) {
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    /* The range test also rejects NaN and infinities (every comparison
     * with NaN is false). No libm: integral means the cast round-trips. */
    if (!(d >= -(double)NIM_PROTO_MAX_INT && d <= (double)NIM_PROTO_MAX_INT)) return 0;
    int64_t i = (int64_t)d;
    if ((double)i != d) return 0;
    if (i < min || i > max) return 0;
    *out = i;
    return 1;
}

static int is_str_value(const cJSON *v, size_t min_len, size_t max_len) {
    if (!cJSON_IsString(v) || !v->valuestring) return 0;
    size_t n = strlen(v->valuestring);
    return n >= min_len && n <= max_len;
}

static int absent(const cJSON *v) { return v == NULL || cJSON_IsNull(v); }

int nim_proto_decode(const char *buf, size_t len, size_t max_len, nim_frame *f,
                     const char **err) {
    memset(f, 0, sizeof *f);
    f->id = -1;
    const char *why = NULL;
    if (len > max_len) { *err = "frame too large"; return NIM_CODE_BAD_FRAME; }
    if (len == 0) { *err = "empty frame"; return NIM_CODE_BAD_FRAME; }
    if (!nim_proto_utf8_valid(buf, len)) { *err = "invalid UTF-8"; return NIM_CODE_BAD_FRAME; }
    int soft = 0;
    const char *refused = scan_json(buf, len, &soft);
    if (refused && !soft) { *err = refused; return NIM_CODE_BAD_FRAME; }

    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(buf, len, &end, 0);
    if (!root) { *err = "not JSON"; return NIM_CODE_BAD_FRAME; }
    while (end && end < buf + len && (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n'))
        end++;
    if (!end || end != buf + len) { why = "trailing data after JSON"; goto bad; }
    if (!cJSON_IsObject(root)) { why = "frame is not a JSON object"; goto bad; }

    const cJSON *id = cJSON_GetObjectItemCaseSensitive(root, "id");
    const cJSON *cmd = cJSON_GetObjectItemCaseSensitive(root, "cmd");
    const cJSON *push = cJSON_GetObjectItemCaseSensitive(root, "push");
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(root, "code");
    cJSON *data = cJSON_GetObjectItemCaseSensitive(root, "data");
    int64_t v;

    if (id && is_int_value(id, 0, NIM_PROTO_MAX_INT, &v)) f->id = v;
    if (refused) { why = refused; goto bad; }
    if (!absent(data) && !cJSON_IsObject(data)) { why = "data is not an object"; goto bad; }
    f->data = absent(data) ? NULL : data;

    if (push) {
        f->kind = NIM_FRAME_PUSH;
        if (!is_str_value(push, 1, NIM_PROTO_MAX_CMD)) { why = "push is not a short string"; goto bad; }
        f->name = push->valuestring;
    } else if (code) {
        f->kind = NIM_FRAME_RESPONSE;
        if (f->id < 0) { why = "response without a valid id"; goto bad; }
        if (!is_str_value(cmd, 0, NIM_PROTO_MAX_CMD)) { why = "cmd is not a short string"; goto bad; }
        if (!is_int_value(code, 100, 999, &v)) { why = "code is not an integer 100..999"; goto bad; }
        f->code = (int)v;
        f->name = cmd->valuestring;
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(root, "error");
        if (!absent(e)) {
            if (!cJSON_IsString(e)) { why = "error is not a string"; goto bad; }
            f->error = e->valuestring;
        }
    } else {
        f->kind = NIM_FRAME_REQUEST;
        if (f->id < 1) { f->id = -1; why = "request without an integer id 1..2^53-1"; goto bad; }
        if (!is_str_value(cmd, 1, NIM_PROTO_MAX_CMD)) { why = "cmd is not a string of 1..32 bytes"; goto bad; }
        f->name = cmd->valuestring;
    }
    f->root = root;
    return NIM_CODE_OK;
bad:
    cJSON_Delete(root);
    f->root = NULL;
    f->data = NULL;
    f->name = NULL;
    f->error = NULL;
    *err = why;
    return NIM_CODE_BAD_FRAME;
}

void nim_frame_free(nim_frame *f) {
    if (!f) return;
    cJSON_Delete(f->root);
    f->root = NULL;
    f->data = NULL;
    f->name = NULL;
    f->error = NULL;
}

/* Adds data (owned) under "data" unless NULL; 0 on failure (data freed). */
static int add_data(cJSON *root, cJSON *data) {
    if (!data) return 1;
    if (!cJSON_AddItemToObject(root, "data", data)) { cJSON_Delete(data); return 0; }
    return 1;
}

cJSON *nim_proto_request(int64_t id, const char *cmd, cJSON *data) {
    cJSON *r = cJSON_CreateObject();
    if (!r || !cJSON_AddNumberToObject(r, "id", (double)id) ||
        !cJSON_AddStringToObject(r, "cmd", cmd)) {
        cJSON_Delete(r); cJSON_Delete(data); return NULL;
    }
    if (!add_data(r, data)) { cJSON_Delete(r); return NULL; }
    return r;
}

cJSON *nim_proto_response(int64_t id, const char *cmd, int code, const char *error,
                          cJSON *data) {
    cJSON *r = cJSON_CreateObject();
    if (!r || !cJSON_AddNumberToObject(r, "id", (double)(id < 0 ? 0 : id)) ||
        !cJSON_AddStringToObject(r, "cmd", cmd ? cmd : "") ||
        !cJSON_AddNumberToObject(r, "code", code) ||
        (code != NIM_CODE_OK &&
         !cJSON_AddStringToObject(r, "error", error ? error : nim_proto_code_text(code)))) {
        cJSON_Delete(r); cJSON_Delete(data); return NULL;
    }
    if (!add_data(r, data)) { cJSON_Delete(r); return NULL; }
    return r;
}

cJSON *nim_proto_push(const char *name, cJSON *data) {
    cJSON *r = cJSON_CreateObject();
    if (!r || !cJSON_AddStringToObject(r, "push", name)) {
        cJSON_Delete(r); cJSON_Delete(data); return NULL;
    }
    if (!add_data(r, data)) { cJSON_Delete(r); return NULL; }
    return r;
}

char *nim_proto_print(const cJSON *root, size_t headroom, size_t *len) {
    if (!root) return NULL;
    /* exact integers: the marks are undone before return, so root is as given */
    cJSON *tree = (cJSON *)root;
    cJSON *next = tree->next;
    tree->next = NULL;                  /* print root only, not its siblings */
    nim_json_exact_ints_on(tree);
    char *s = cJSON_PrintUnformatted(tree);
    nim_json_exact_ints_off(tree);
    tree->next = next;
    if (!s) return NULL;
    size_t n = strlen(s);
    char *buf = nim_malloc(headroom + n + 1);
    if (buf) {
        memcpy(buf + headroom, s, n + 1);
        *len = n;
    }
    cJSON_free(s);
    return buf;
}

/* Field errors name the field. The text lives in a per-thread buffer, valid
 * until the next failing getter call on the same thread. */
static __thread char field_err[96];

static const char *ferr(const char *name, const char *what) {
    snprintf(field_err, sizeof field_err, "%.40s: %s", name, what);
    return field_err;
}

int nim_proto_get_str(const cJSON *obj, const char *name, size_t min_len, size_t max_len,
                      int required, const char **out, const char **err) {
    const cJSON *v = obj ? cJSON_GetObjectItemCaseSensitive(obj, name) : NULL;
    if (absent(v)) {
        if (!required) return NIM_CODE_OK;
        *err = ferr(name, "missing");
        return NIM_CODE_PARAM;
    }
    if (!cJSON_IsString(v) || !v->valuestring) { *err = ferr(name, "not a string"); return NIM_CODE_PARAM; }
    size_t n = strlen(v->valuestring);
    if (n < min_len || n > max_len) { *err = ferr(name, "string too short or too long"); return NIM_CODE_PARAM; }
    *out = v->valuestring;
    return NIM_CODE_OK;
}

int nim_proto_get_int(const cJSON *obj, const char *name, int64_t min, int64_t max,
                      int required, int64_t *out, const char **err) {
    const cJSON *v = obj ? cJSON_GetObjectItemCaseSensitive(obj, name) : NULL;
    if (absent(v)) {
        if (!required) return NIM_CODE_OK;
        *err = ferr(name, "missing");
        return NIM_CODE_PARAM;
    }
    if (!is_int_value(v, min, max, out)) { *err = ferr(name, "not an integer in range"); return NIM_CODE_PARAM; }
    return NIM_CODE_OK;
}

int nim_proto_get_bool(const cJSON *obj, const char *name, int required, int *out,
                       const char **err) {
    const cJSON *v = obj ? cJSON_GetObjectItemCaseSensitive(obj, name) : NULL;
    if (absent(v)) {
        if (!required) return NIM_CODE_OK;
        *err = ferr(name, "missing");
        return NIM_CODE_PARAM;
    }
    if (!cJSON_IsBool(v)) { *err = ferr(name, "not a boolean"); return NIM_CODE_PARAM; }
    *out = cJSON_IsTrue(v) ? 1 : 0;
    return NIM_CODE_OK;
}

int nim_proto_get_array(const cJSON *obj, const char *name, size_t max_items,
                        int required, const cJSON **out, size_t *count, const char **err) {
    const cJSON *v = obj ? cJSON_GetObjectItemCaseSensitive(obj, name) : NULL;
    *out = NULL;
    *count = 0;
    if (absent(v)) {
        if (!required) return NIM_CODE_OK;
        *err = ferr(name, "missing");
        return NIM_CODE_PARAM;
    }
    if (!cJSON_IsArray(v)) { *err = ferr(name, "not an array"); return NIM_CODE_PARAM; }
    size_t n = 0;
    for (const cJSON *it = v->child; it; it = it->next)
        if (++n > max_items) { *err = ferr(name, "too many items"); return NIM_CODE_PARAM; }
    *out = v;
    *count = n;
    return NIM_CODE_OK;
}

static int parse_id_string(const char *s, int64_t *out) {
    size_t n = strlen(s);
    if (n == 0 || n > 16 || s[0] == '0') return 0;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return 0;
        v = v * 10 + (s[i] - '0');
    }
    if (v > NIM_PROTO_MAX_INT) return 0;
    *out = v;
    return 1;
}

int nim_proto_get_id(const cJSON *obj, const char *name, int required, int64_t *out,
                     const char **err) {
    const char *s = NULL;
    int rc = nim_proto_get_str(obj, name, 1, 16, required, &s, err);
    if (rc != NIM_CODE_OK || !s) return rc;
    if (!parse_id_string(s, out)) { *err = ferr(name, "not a server id (decimal string)"); return NIM_CODE_PARAM; }
    return NIM_CODE_OK;
}

int nim_proto_valid_account(const char *s) {
    if (!s) return 0;
    size_t n = strlen(s);
    if (n == 0 || n > NIM_PROTO_MAX_ACCOUNT) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '@' || c == '-'))
            return 0;
    }
    return 1;
}

int nim_proto_valid_device(const char *s) {
    if (!s) return 0;
    size_t n = strlen(s);
    if (n == 0 || n > NIM_PROTO_MAX_DEVICE) return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7E) return 0;
    return 1;
}

int nim_proto_valid_team_id(const char *s) {
    int64_t v;
    return s && parse_id_string(s, &v);
}

const char *nim_proto_scene_name(nim_scene s) {
    return s == NIM_SCENE_P2P || s == NIM_SCENE_TEAM ? nim_scene_names[s] : "";
}

nim_scene nim_proto_scene_from_name(const char *s) {
    nim_scene sc = s ? nim_scene_parse(s, strlen(s)) : NIM_SCENE_NONE;
    return sc == NIM_SCENE_P2P || sc == NIM_SCENE_TEAM ? sc : NIM_SCENE_NONE;
}

nim_scene nim_proto_parse_session_id(const char *s, const char **target) {
    if (!s) return NIM_SCENE_NONE;
    if (strncmp(s, "p2p-", 4) == 0 && nim_proto_valid_account(s + 4)) {
        *target = s + 4;
        return NIM_SCENE_P2P;
    }
    if (strncmp(s, "team-", 5) == 0 && nim_proto_valid_team_id(s + 5)) {
        *target = s + 5;
        return NIM_SCENE_TEAM;
    }
    return NIM_SCENE_NONE;
}

int nim_proto_valid_msg_type(const char *s) {
    return s && (strcmp(s, "text") == 0 || strcmp(s, "custom") == 0 || strcmp(s, "tip") == 0 ||
                 strcmp(s, "notification") == 0);
}

cJSON *nim_proto_msg_to_json(const nim_proto_msg *m) {
    char idbuf[24];
    snprintf(idbuf, sizeof idbuf, "%lld", (long long)m->id_server);
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    int ok = cJSON_AddStringToObject(o, "idServer", idbuf) &&
             cJSON_AddStringToObject(o, "idClient", m->id_client ? m->id_client : "") &&
             cJSON_AddStringToObject(o, "scene", nim_proto_scene_name(m->scene)) &&
             cJSON_AddStringToObject(o, "from", m->from) &&
             (!m->from_device || cJSON_AddStringToObject(o, "fromDevice", m->from_device)) &&
             cJSON_AddStringToObject(o, "to", m->to) &&
             cJSON_AddNumberToObject(o, "time", (double)m->time) &&
             cJSON_AddStringToObject(o, "type", m->type) &&
             (!m->text || cJSON_AddStringToObject(o, "text", m->text)) &&
             (!m->content || cJSON_AddStringToObject(o, "content", m->content));
    if (!ok) { cJSON_Delete(o); return NULL; }
    return o;
}

int nim_proto_msg_from_json(const cJSON *obj, nim_proto_msg *m, const char **err) {
    memset(m, 0, sizeof *m);
    const char *scene = NULL;
    int rc;
    if (!cJSON_IsObject(obj)) { *err = "a message is not an object"; return NIM_CODE_PARAM; }
#define GET(call) if ((rc = (call)) != NIM_CODE_OK) return rc
    GET(nim_proto_get_id(obj, "idServer", 1, &m->id_server, err));
    GET(nim_proto_get_str(obj, "idClient", 0, NIM_PROTO_MAX_IDCLIENT, 1, &m->id_client, err));
    GET(nim_proto_get_str(obj, "scene", 1, 8, 1, &scene, err));
    GET(nim_proto_get_str(obj, "from", 1, NIM_PROTO_MAX_ACCOUNT, 1, &m->from, err));
    GET(nim_proto_get_str(obj, "fromDevice", 1, NIM_PROTO_MAX_DEVICE, 0, &m->from_device, err));
    GET(nim_proto_get_str(obj, "to", 1, NIM_PROTO_MAX_ACCOUNT, 1, &m->to, err));
    GET(nim_proto_get_int(obj, "time", 0, NIM_PROTO_MAX_INT, 1, &m->time, err));
    GET(nim_proto_get_str(obj, "type", 1, 16, 1, &m->type, err));
    GET(nim_proto_get_str(obj, "text", 0, NIM_PROTO_MAX_TEXT, 0, &m->text, err));
    GET(nim_proto_get_str(obj, "content", 0, NIM_PROTO_MAX_CONTENT, 0, &m->content, err));
#undef GET
    m->scene = nim_proto_scene_from_name(scene);
    if (m->scene == NIM_SCENE_NONE) { *err = "unknown scene"; return NIM_CODE_PARAM; }
    if (!nim_proto_valid_account(m->from)) { *err = "from is not an account"; return NIM_CODE_PARAM; }
    if (m->scene == NIM_SCENE_P2P ? !nim_proto_valid_account(m->to) : !nim_proto_valid_team_id(m->to)) {
        *err = "to is not a valid target for the scene";
        return NIM_CODE_PARAM;
    }
    return NIM_CODE_OK;
}
