/* A game-engine-style host for nim-lua: embeds Lua 5.4 (or LuaJIT, 5.1),
 * runs a fixed 60 Hz frame loop and calls the script's update(frame) once per frame, the way an
 * engine drives gameplay scripts. The script calls nim:poll(0) there. The
 * host measures how much of each 16.7 ms frame the script's update used and
 * prints the budget: max and p99 per frame.
 *
 *   build/embed-host SCRIPT [FRAMES]     (FRAMES default 600 = 10 s)
 *
 * After each update the host runs one step of Lua's collector, outside the
 * measured time, as engines do at the end of a frame.
 * update() may return false to end the loop early; the script's global
 * `finish()` is called at the end if it exists. Exit status 0 on success. */
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>
#if LUA_VERSION_NUM < 503
#include "lua/compat53/compat-5.3.h"   /* Lua 5.1, LuaJIT: the 5.3 C API */
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <errno.h>

#define FRAME_NS 16666667LL   /* 60 Hz */

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int traceback(lua_State *L) {
    luaL_traceback(L, L, lua_tostring(L, 1), 1);
    return 1;
}

/* Calls global fn with an integer argument under a traceback handler.
 * Returns -1 on error (printed), else 1 when it returned false, else 0. */
static int call_global(lua_State *L, const char *fn, long long arg, int required) {
    lua_pushcfunction(L, traceback);
    if (lua_getglobal(L, fn) != LUA_TFUNCTION) {
        lua_pop(L, 2);
        if (required) { fprintf(stderr, "embed-host: script defines no %s()\n", fn); return -1; }
        return 0;
    }
    lua_pushinteger(L, arg);
    if (lua_pcall(L, 1, 1, -3) != LUA_OK) {
        fprintf(stderr, "embed-host: %s\n", lua_tostring(L, -1));
        lua_pop(L, 2);
        return -1;
    }
    int stop = lua_isboolean(L, -1) && !lua_toboolean(L, -1);
    lua_pop(L, 2);
    return stop;
}

static int cmp_ll(const void *a, const void *b) {
    long long x = *(const long long *)a, y = *(const long long *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: %s SCRIPT [FRAMES]\n", argv[0]); return 2; }
    long frames = argc > 2 ? strtol(argv[2], NULL, 10) : 600;
    if (frames <= 0) { fprintf(stderr, "embed-host: FRAMES must be positive\n"); return 2; }

    lua_State *L = luaL_newstate();
    if (!L) { fprintf(stderr, "embed-host: no memory\n"); return 1; }
    luaL_openlibs(L);
    lua_pushcfunction(L, traceback);
    if (luaL_loadfile(L, argv[1]) != LUA_OK || lua_pcall(L, 0, 0, -2) != LUA_OK) {
        fprintf(stderr, "embed-host: %s\n", lua_tostring(L, -1));
        lua_close(L);
        return 1;
    }
    lua_pop(L, 1);

    long long *used = calloc((size_t)frames, sizeof *used);
    if (!used) { lua_close(L); return 1; }
    long n = 0, late = 0;
    int rc = 0;
    long long next = now_ns();
    for (; n < frames; n++) {
        long long t0 = now_ns();
        int r = call_global(L, "update", n, 1);
        long long t1 = now_ns();
        used[n] = t1 - t0;
        if (r < 0) { rc = 1; n++; break; }
        if (r == 1) { n++; break; }
        lua_gc(L, LUA_GCSTEP, 0);               /* the engine's own GC slice, outside the budget */
        next += FRAME_NS;                       /* fixed step: sleep to the next frame */
        if (t1 > next) { late++; next = t1; continue; }
        struct timespec ts = { (time_t)((next - t1) / 1000000000LL), (long)((next - t1) % 1000000000LL) };
        while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {}
    }
    if (call_global(L, "finish", n, 0) < 0) rc = 1;

    qsort(used, (size_t)n, sizeof *used, cmp_ll);
    long long max = n ? used[n - 1] : 0, p99 = n ? used[(size_t)((n - 1) * 99 / 100)] : 0;
    double sum = 0;
    for (long i = 0; i < n; i++) sum += (double)used[i];
    printf("frames: %ld at 60 Hz, late: %ld\n", n, late);
    printf("sdk frame budget used: max %.3f ms, p99 %.3f ms, mean %.3f ms (of 16.667 ms)\n",
           max / 1e6, p99 / 1e6, n ? sum / n / 1e6 : 0.0);
    free(used);
    lua_close(L);
    return rc;
}
