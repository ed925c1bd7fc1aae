/* Typed reads and writes of one field of a cJSON object, for trees that
 * were checked before (commands from the binding, messages from the
 * engine's own normalisation). Lua-free, no state: any thread. */
#ifndef NIM_JFIELD_H
#define NIM_JFIELD_H
#include <stdint.h>
#include <cjson/cJSON.h>

/* The string at o[k], or NULL when absent or not a string. */
const char *nim_jstr(const cJSON *o, const char *k);
/* The integer at o[k] into *out; 0 when absent or not an integral number
 * of at most 2^53 in magnitude (*out unchanged then). */
int nim_jint(const cJSON *o, const char *k, int64_t *out);
/* The number at o[k] truncated to an integer, or 0 when absent or not a
 * number, or out of int64_t's range (for peers' frames, where a missing
 * field means 0). */
int64_t nim_jnum(const cJSON *o, const char *k);
/* The decimal id string at o[k] (idServer), or 0 when absent. */
int64_t nim_jid(const cJSON *o, const char *k);
/* The boolean at o[k], or dflt when absent or not a boolean. */
int nim_jbool(const cJSON *o, const char *k, int dflt);
/* Sets o[k] = string v, replacing. k must be a literal; v is copied
 * (nim_jset) or referenced (nim_jset_static: a static string). 0, or -1
 * on allocation failure (o unchanged). */
int nim_jset(cJSON *o, const char *k, const char *v);
int nim_jset_static(cJSON *o, const char *k, const char *v);

/* Around a print of tree: cJSON 1.7.15 prints a number with 15 significant
 * digits whenever those read back within a relative epsilon, so integers of
 * 1e15 and more can come out wrong (9007199254740991 as ...990). _on turns
 * every such integral number in tree into raw text of its exact value, _off
 * turns them back into numbers (call it after every _on). An integer left
 * as a number when memory runs out is printed as cJSON would. */
void nim_json_exact_ints_on(cJSON *tree);
void nim_json_exact_ints_off(cJSON *tree);

#endif
