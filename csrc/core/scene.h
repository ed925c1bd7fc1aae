/* Scenes: the one vocabulary of conversation kinds, shared by the store,
 * the engine, the wire protocol and the server. Stored and sent as their
 * names ("p2p", "team", "superTeam"), never as numbers. Lua-free. */
#ifndef NIM_SCENE_H
#define NIM_SCENE_H
#include <stddef.h>

typedef enum {
    NIM_SCENE_NONE = -1,        /* not a scene (unknown name, bad session id) */
    NIM_SCENE_P2P = 0,
    NIM_SCENE_TEAM = 1,
    NIM_SCENE_SUPERTEAM = 2,    /* local sessions only: the wire knows p2p and team */
    NIM_SCENE__COUNT
} nim_scene;

extern const char *const nim_scene_names[NIM_SCENE__COUNT];
/* The scene named by name (len bytes), or NIM_SCENE_NONE. */
nim_scene nim_scene_parse(const char *name, size_t len);

#endif
