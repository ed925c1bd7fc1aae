/* The command table (see cmdtable.h). Adding a command: one row here, its
 * id in engine.h or cmdtable.h, its handler (docs/architecture.md). */
#include "net/cmdtable.h"
#include <string.h>

static const nim_command COMMANDS[] = {
    { "getLocalSessions",      NIM_CMD_GET_SESSIONS,     NIM_WIRE_UNKNOWN },
    { "getLocalSession",       NIM_CMD_GET_SESSION,      NIM_WIRE_UNKNOWN },
    { "insertLocalSession",    NIM_CMD_INSERT_SESSION,   NIM_WIRE_UNKNOWN },
    { "updateLocalSession",    NIM_CMD_UPDATE_SESSION,   NIM_WIRE_UNKNOWN },
    { "deleteLocalSession",    NIM_CMD_DELETE_SESSIONS,  NIM_WIRE_UNKNOWN },
    { "setCurrSession",        NIM_CMD_SET_CURR,         NIM_WIRE_UNKNOWN },
    { "resetCurrSession",      NIM_CMD_RESET_CURR,       NIM_WIRE_UNKNOWN },
    { "resetSessionsUnread",   NIM_CMD_RESET_UNREAD,     NIM_WIRE_UNKNOWN },
    { "resetAllSessionUnread", NIM_CMD_RESET_ALL_UNREAD, NIM_WIRE_UNKNOWN },
    { "saveMsgsToLocal",       NIM_CMD_SAVE_MSGS,        NIM_WIRE_UNKNOWN },
    { "getLocalMsgs",          NIM_CMD_GET_MSGS,         NIM_WIRE_UNKNOWN },
    { "verify",                NIM_CMD_VERIFY,           NIM_WIRE_UNKNOWN },
    { "sendMsg",               NIM_NETCMD_SEND_MSG,        NIM_WIRE_SEND_MSG },
    { "deleteSessions",        NIM_NETCMD_DELETE_SESSIONS, NIM_WIRE_DELETE_SESSIONS },
    { "sendMsgReceipt",        NIM_NETCMD_SEND_RECEIPT,    NIM_WIRE_SEND_RECEIPT },
    { "addStickTop",           NIM_NETCMD_ADD_TOP,         NIM_WIRE_ADD_STICK_TOP },
    { "updateStickTop",        NIM_NETCMD_UPDATE_TOP,      NIM_WIRE_UPDATE_STICK_TOP },
    { "deleteStickTop",        NIM_NETCMD_DELETE_TOP,      NIM_WIRE_DELETE_STICK_TOP },
    { "getStickTop",           NIM_NETCMD_GET_TOPS,        NIM_WIRE_GET_STICK_TOP },
    { "createTeam",            NIM_NETCMD_CREATE_TEAM,     NIM_WIRE_CREATE_TEAM },
    { "getHistoryMsgs",        NIM_NETCMD_GET_HISTORY,     NIM_WIRE_GET_HISTORY },
    { "addTeamMembers",        NIM_NETCMD_ADD_MEMBERS,     NIM_WIRE_ADD_TEAM_MEMBERS },
    { "removeTeamMembers",     NIM_NETCMD_REMOVE_MEMBERS,  NIM_WIRE_REMOVE_TEAM_MEMBERS },
    { "leaveTeam",             NIM_NETCMD_LEAVE_TEAM,      NIM_WIRE_LEAVE_TEAM },
    { "disconnect",            NIM_NETCMD_DISCONNECT,      NIM_WIRE_UNKNOWN },
    { "connect",               NIM_NETCMD_CONNECT,         NIM_WIRE_UNKNOWN },
};
#define NCOMMANDS (sizeof COMMANDS / sizeof COMMANDS[0])

const nim_command *nim_command_by_name(const char *name) {
    for (size_t i = 0; name && i < NCOMMANDS; i++)
        if (strcmp(COMMANDS[i].name, name) == 0) return &COMMANDS[i];
    return NULL;
}

const nim_command *nim_command_by_id(int cmd) {
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (COMMANDS[i].cmd == cmd) return &COMMANDS[i];
    return NULL;
}
