/* The command table: every command the binding can submit, one row each,
 * naming it once for every layer: the API name nim:_request takes, the
 * command id the engine queue carries (core/engine.h NIM_CMD_* run by the
 * engine, NIM_NETCMD_* below handed to the network client), and the wire
 * request it becomes (net/proto.h; NIM_WIRE_UNKNOWN when it never leaves
 * the device). Lua-free, lws-free, no state. */
#ifndef NIM_NET_CMDTABLE_H
#define NIM_NET_CMDTABLE_H
#include "core/engine.h"
#include "net/proto.h"

/* Commands of the network client (args are cJSON objects). */
enum {
    NIM_NETCMD_SEND_MSG = NIM_CMD_EXT, /* {scene, to, type, text?, content?, idClient?} -> msg */
    NIM_NETCMD_DELETE_SESSIONS,        /* {sessions=["p2p-bob", ...]} -> {sessions=} */
    NIM_NETCMD_SEND_RECEIPT,           /* {idServer} -> {sessionId, time} */
    NIM_NETCMD_ADD_TOP,                /* {sessionId, topCustom?} -> {session=} */
    NIM_NETCMD_UPDATE_TOP,             /* {sessionId, topCustom?} -> {session=} */
    NIM_NETCMD_DELETE_TOP,             /* {sessionId} -> {session=} */
    NIM_NETCMD_GET_TOPS,               /* {} -> {sessions=} */
    NIM_NETCMD_CREATE_TEAM,            /* {name, accounts} -> {team=} */
    NIM_NETCMD_GET_HISTORY,            /* {scene, to, beginTime?, endTime?, lastMsgId?, limit?, reverse?} -> {msgs=} */
    NIM_NETCMD_ADD_MEMBERS,            /* {teamId, accounts} -> {team=, msg=} */
    NIM_NETCMD_REMOVE_MEMBERS,         /* {teamId, accounts} -> {team=, msg=} */
    NIM_NETCMD_LEAVE_TEAM,             /* {teamId} -> {team=, msg=} */
    NIM_NETCMD_DISCONNECT,             /* {} -> close, no reconnect until CONNECT */
    NIM_NETCMD_CONNECT                 /* {} -> connect now (after a disconnect or a give-up) */
};

typedef struct nim_command {
    const char  *name;   /* the API name, e.g. "getLocalSessions", "sendMsg" */
    int          cmd;    /* NIM_CMD_* or NIM_NETCMD_* */
    nim_wire_cmd wire;   /* the request sent, or NIM_WIRE_UNKNOWN */
} nim_command;

/* The row of an API name / of a command id; NULL when there is none. */
const nim_command *nim_command_by_name(const char *name);
const nim_command *nim_command_by_id(int cmd);

#endif
