/* Field reads and writes on cJSON objects (see jfield.h). */
#include "core/jfield.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

const char *nim_jstr(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

int nim_jint(const cJSON *o, const char *k, int64_t *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    if (!isfinite(d) || d != floor(d) || fabs(d) > 9007199254740992.0) return 0;
    *out = (int64_t)d;
    return 1;
}

int64_t nim_jnum(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;   /* out of int64_t's range would be undefined */
    return isfinite(d) && fabs(d) < 9.2e18 ? (int64_t)d : 0;
}

int64_t nim_jid(const cJSON *o, const char *k) {
    const char *s = nim_jstr(o, k);
    return s ? strtoll(s, NULL, 10) : 0;
}

int nim_jbool(const cJSON *o, const char *k, int dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (cJSON_IsBool(v)) return cJSON_IsTrue(v);
    return dflt;
}

static int set(cJSON *o, const char *k, cJSON *s) {
    if (!s) return -1;
    /* the replace copies k and fails (keeping nothing of s) when it cannot */
    if (cJSON_GetObjectItemCaseSensitive(o, k)) {
        if (!cJSON_ReplaceItemInObjectCaseSensitive(o, k, s)) { cJSON_Delete(s); return -1; }
    } else {
        cJSON_AddItemToObjectCS(o, k, s);
    }
    return 0;
}

int nim_jset(cJSON *o, const char *k, const char *v) { return set(o, k, cJSON_CreateString(v)); }
int nim_jset_static(cJSON *o, const char *k, const char *v) {
    return set(o, k, cJSON_CreateStringReference(v));
}

/* A type bit cJSON does not use (its printer looks at the low 8 bits only). */
#define EXACT_INT (1 << 12)

void nim_json_exact_ints_on(cJSON *tree) {
    for (cJSON *it = tree; it; it = it->next) {
        if (it->child) nim_json_exact_ints_on(it->child);
        if (!cJSON_IsNumber(it)) continue;
        double d = it->valuedouble;
        if (!(fabs(d) >= 1e15 && fabs(d) < 9.2e18) || d != floor(d)) continue;
        char *raw = cJSON_malloc(24);
        if (!raw) continue;
        snprintf(raw, 24, "%lld", (long long)d);
        it->valuestring = raw;
        it->type = cJSON_Raw | EXACT_INT;
    }
}

void nim_json_exact_ints_off(cJSON *tree) {
    for (cJSON *it = tree; it; it = it->next) {
        if (it->child) nim_json_exact_ints_off(it->child);
        if (!(it->type & EXACT_INT)) continue;
        cJSON_free(it->valuestring);
        it->valuestring = NULL;
        it->type = cJSON_Number;
    }
}
