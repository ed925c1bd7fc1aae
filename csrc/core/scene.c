/* Scene names (see scene.h). */
#include "core/scene.h"
#include <string.h>

const char *const nim_scene_names[NIM_SCENE__COUNT] = { "p2p", "team", "superTeam" };

nim_scene nim_scene_parse(const char *name, size_t len) {
    for (int i = 0; i < NIM_SCENE__COUNT; i++)
        if (strlen(nim_scene_names[i]) == len && memcmp(nim_scene_names[i], name, len) == 0)
            return (nim_scene)i;
    return NIM_SCENE_NONE;
}
