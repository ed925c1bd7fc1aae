/* The nim wire protocol (docs/protocol.md): JSON text frames over WebSocket.
 *
 * Shared by the SDK's network client and nim-server; Lua-free and lws-free.
 * Everything that comes off the wire goes through nim_proto_decode() first,
 * which checks size, UTF-8, nesting depth and the envelope before anyone
 * looks at a field; the nim_proto_get_* helpers then check each field's type
 * and bounds. Nothing here keeps state: any thread, no locking. */
#ifndef NIM_PROTO_H
#define NIM_PROTO_H
#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>
#include "core/scene.h"

#define NIM_PROTO_VERSION        1
#define NIM_PROTO_SUBPROTOCOL    "nim.v1"
#define NIM_PROTO_MAX_REQUEST    (64 * 1024)    /* client -> server frame, bytes */
#define NIM_PROTO_MAX_FRAME      (1024 * 1024)  /* server -> client frame, bytes */
#define NIM_PROTO_MAX_DEPTH      16             /* nesting of arrays/objects */
#define NIM_PROTO_MAX_INT        9007199254740991LL  /* 2^53 - 1: exact in a double */

/* Field limits (bytes). */
#define NIM_PROTO_MAX_CMD        32
#define NIM_PROTO_MAX_ACCOUNT    64
#define NIM_PROTO_MAX_DEVICE     64
#define NIM_PROTO_MAX_TOKEN      256
#define NIM_PROTO_MAX_IDCLIENT   64
#define NIM_PROTO_MAX_SESSION_ID (NIM_PROTO_MAX_ACCOUNT + 16)
#define NIM_PROTO_MAX_TEXT       (16 * 1024)
#define NIM_PROTO_MAX_CONTENT    (32 * 1024)
#define NIM_PROTO_MAX_CUSTOM     1024           /* topCustom */
#define NIM_PROTO_MAX_TEAM_NAME  128
#define NIM_PROTO_MAX_BATCH      1000           /* ids / pointers per request */
#define NIM_PROTO_MAX_TEAM_SIZE  200
#define NIM_PROTO_MAX_HISTORY    100            /* getHistoryMsgs limit */

/* Reply codes (one per reply; 200 is success). */
enum {
    NIM_CODE_OK            = 200,
    NIM_CODE_AUTH          = 302,  /* wrong account or token */
    NIM_CODE_BAD_FRAME     = 400,  /* not JSON, bad UTF-8, too deep, bad envelope */
    NIM_CODE_NOT_LOGGED_IN = 401,  /* a request other than login/ping before login */
    NIM_CODE_FORBIDDEN     = 403,  /* not yours: another account's message, a team you are not in */
    NIM_CODE_NOT_FOUND     = 404,  /* unknown account, team, message or sticky-top session */
    NIM_CODE_UNKNOWN_CMD   = 405,  /* well-formed request, unknown cmd */
    NIM_CODE_LOGGED_IN     = 409,  /* login on a connection that is already logged in */
    NIM_CODE_PARAM         = 414,  /* a field missing, of the wrong type or out of bounds */
    NIM_CODE_LIMIT         = 419,  /* a per-account limit reached (sticky tops, sessions with state) */
    NIM_CODE_VERSION       = 426,  /* protocol version not supported */
    NIM_CODE_THROTTLED     = 429,  /* too many failed logins: data.retryAfter (ms) */
    NIM_CODE_SERVER        = 500   /* storage failure */
};

/* WebSocket close codes the server uses. */
enum {
    NIM_CLOSE_NORMAL       = 1000, /* logout */
    NIM_CLOSE_UNSUPPORTED  = 1003, /* binary frame */
    NIM_CLOSE_POLICY       = 1008, /* too many bad frames, or a reader too slow */
    NIM_CLOSE_TOO_LARGE    = 1009, /* frame over NIM_PROTO_MAX_REQUEST */
    NIM_CLOSE_SERVER_ERROR = 1011, /* the login sync could not be read from storage */
    NIM_CLOSE_KICKED       = 4001, /* the same account+device logged in elsewhere */
    NIM_CLOSE_OTHER_SERVER = 4002  /* the client's: its store was synced with another server database */
};

/* Requests (client -> server); the reply carries the same cmd. */
typedef enum {
    NIM_WIRE_UNKNOWN = 0,
    NIM_WIRE_LOGIN,
    NIM_WIRE_LOGOUT,
    NIM_WIRE_PING,
    NIM_WIRE_SEND_MSG,
    NIM_WIRE_MARK_RECEIVED,
    NIM_WIRE_UPDATE_READ,
    NIM_WIRE_SEND_RECEIPT,
    NIM_WIRE_DELETE_SESSIONS,
    NIM_WIRE_ADD_STICK_TOP,
    NIM_WIRE_UPDATE_STICK_TOP,
    NIM_WIRE_DELETE_STICK_TOP,
    NIM_WIRE_GET_STICK_TOP,
    NIM_WIRE_CREATE_TEAM,
    NIM_WIRE_GET_HISTORY,
    NIM_WIRE_ADD_TEAM_MEMBERS,
    NIM_WIRE_REMOVE_TEAM_MEMBERS,
    NIM_WIRE_LEAVE_TEAM,
    NIM_WIRE__COUNT
} nim_wire_cmd;

/* Pushes (server -> client, no id, no code). */
typedef enum {
    NIM_PUSH_UNKNOWN = 0,
    NIM_PUSH_ROAMING_MSGS,
    NIM_PUSH_OFFLINE_MSGS,
    NIM_PUSH_READ_POINTERS,
    NIM_PUSH_RECEIPTS,
    NIM_PUSH_STICK_TOP_SESSIONS,
    NIM_PUSH_SYNC_DONE,
    NIM_PUSH_MSG,
    NIM_PUSH_STICK_TOP,
    NIM_PUSH_TEAM,
    NIM_PUSH_KICKED,
    NIM_PUSH__COUNT
} nim_push;

const char  *nim_proto_cmd_name(nim_wire_cmd c);     /* "" for UNKNOWN */
nim_wire_cmd nim_proto_cmd_from_name(const char *s); /* NIM_WIRE_UNKNOWN if unknown */
const char *nim_proto_push_name(nim_push p);
nim_push    nim_proto_push_from_name(const char *s);
/* A short English text for a reply code ("ok", "wrong account or token"...). */
const char *nim_proto_code_text(int code);

typedef enum { NIM_FRAME_REQUEST, NIM_FRAME_RESPONSE, NIM_FRAME_PUSH } nim_frame_kind;

/* A decoded frame. root owns everything; name, error and data point into
 * it. id is -1 when the frame carried no usable id. */
typedef struct {
    nim_frame_kind kind;
    int64_t        id;
    const char    *name;   /* cmd (request/response) or push name */
    int            code;   /* responses only */
    const char    *error;  /* responses only; NULL when absent */
    cJSON         *data;   /* the "data" object, or NULL when absent */
    cJSON         *root;
} nim_frame;

/* Decodes one text frame of len bytes (no NUL needed). Checks in order:
 * len <= max_len, valid UTF-8, nesting <= NIM_PROTO_MAX_DEPTH, JSON, an
 * object, then the envelope of its kind (see docs/protocol.md). Returns
 * NIM_CODE_OK and fills *f (free with nim_frame_free), or NIM_CODE_BAD_FRAME
 * with *err set to a static reason; on failure f->id still holds the
 * request's id when one could be read, and nothing needs freeing. */
int  nim_proto_decode(const char *buf, size_t len, size_t max_len, nim_frame *f,
                      const char **err);
void nim_frame_free(nim_frame *f);

/* Strict UTF-8 (no overlongs, surrogates or code points above U+10FFFF). */
int nim_proto_utf8_valid(const char *s, size_t len);

/* Builders: each takes ownership of data (may be NULL) and returns a new
 * root or NULL on allocation failure (data is freed then too). */
cJSON *nim_proto_request(int64_t id, const char *cmd, cJSON *data);
cJSON *nim_proto_response(int64_t id, const char *cmd, int code, const char *error,
                          cJSON *data);
cJSON *nim_proto_push(const char *name, cJSON *data);

/* Prints root compactly into a new buffer with `headroom` spare bytes in
 * front (LWS_PRE for lws). Returns the buffer (free with nim_free) and sets
 * *len to the JSON length, excluding headroom; NULL on allocation failure. */
char *nim_proto_print(const cJSON *root, size_t headroom, size_t *len);

/* Field getters. Each returns NIM_CODE_OK, or NIM_CODE_PARAM with *err set to
 * a reason naming the field ("to: not a string"; a per-thread buffer, valid
 * until the next failing getter on that thread). An absent field (or JSON null) is an
 * error only when required; then *out is left unchanged. obj may be NULL
 * (every field absent). */
int nim_proto_get_str(const cJSON *obj, const char *name, size_t min_len, size_t max_len,
                      int required, const char **out, const char **err);
int nim_proto_get_int(const cJSON *obj, const char *name, int64_t min, int64_t max,
                      int required, int64_t *out, const char **err);
int nim_proto_get_bool(const cJSON *obj, const char *name, int required, int *out,
                       const char **err);
/* An array of at most max_items; *out is the array item (NULL when absent). */
int nim_proto_get_array(const cJSON *obj, const char *name, size_t max_items,
                        int required, const cJSON **out, size_t *count, const char **err);
/* A server message id: a decimal string "1".."9007199254740991". */
int nim_proto_get_id(const cJSON *obj, const char *name, int required, int64_t *out,
                     const char **err);

/* Name checks. Accounts: 1..64 of [A-Za-z0-9_.@-]. Devices: 1..64 printable
 * ASCII. Team ids: decimal 1..2^53-1 without leading zeros. */
int nim_proto_valid_account(const char *s);
int nim_proto_valid_device(const char *s);
int nim_proto_valid_team_id(const char *s);

/* Scenes on the wire: p2p and team (core/scene.h); anything else,
 * superTeam included, is NIM_SCENE_NONE here. */
const char *nim_proto_scene_name(nim_scene s);   /* "" when not a wire scene */
nim_scene   nim_proto_scene_from_name(const char *s);

/* Splits "p2p-bob" / "team-42" into scene and target; target points into s.
 * Returns NIM_SCENE_NONE when s is not a valid session id. */
nim_scene nim_proto_parse_session_id(const char *s, const char **target);

/* Message types a client may send. */
/* "text", "custom", "tip", or "notification" (made by the server only:
 * team membership changes; never counted unread) */
int nim_proto_valid_msg_type(const char *s);

/* A message as it travels in roamingMsgs/offlineMsgs/msg pushes and in the
 * sendMsg reply. Strings point into the JSON (or the caller's memory). */
typedef struct {
    int64_t     id_server;
    const char *id_client;
    nim_scene   scene;
    const char *from;
    const char *from_device;  /* may be NULL */
    const char *to;
    int64_t     time;
    const char *type;
    const char *text;         /* may be NULL */
    const char *content;      /* may be NULL */
} nim_proto_msg;

/* Message object -> JSON object; NULL on allocation failure. */
cJSON *nim_proto_msg_to_json(const nim_proto_msg *m);
/* JSON object -> message, fully validated; NIM_CODE_OK or NIM_CODE_PARAM. */
int nim_proto_msg_from_json(const cJSON *obj, nim_proto_msg *m, const char **err);

#endif
