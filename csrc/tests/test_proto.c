/* Unit tests of the wire protocol codec (csrc/net/proto.c): known vectors,
 * round trips, and hostile input
 * (truncated, wrong types, huge, deeply nested, invalid UTF-8, random bytes)
 * that must give an error, never a crash or a leak (make asan checks leaks). */
#include "tests/testhelp.h"
#include "net/proto.h"
#include "core/alloc.h"
#include <stdlib.h>
#include <string.h>

#define U(s) nim_proto_utf8_valid(s, sizeof(s) - 1)

static void test_utf8(void) {
    test_cond("utf8 ascii", U("hello"));
    test_cond("utf8 2-3-4 byte", U("\xc3\xa9\xe4\xbc\x9a\xe8\xaf\x9d\xf0\x9f\x98\x80"));
    test_cond("utf8 U+10FFFF", U("\xf4\x8f\xbf\xbf"));
    test_cond("utf8 lone continuation", !U("a\x80"));
    test_cond("utf8 truncated 2-byte", !U("a\xc3"));
    test_cond("utf8 truncated 4-byte", !U("\xf0\x9f\x98"));
    test_cond("utf8 overlong NUL", !U("\xc0\x80"));
    test_cond("utf8 overlong 3-byte", !U("\xe0\x80\xaf"));
    test_cond("utf8 surrogate", !U("\xed\xa0\x80"));
    test_cond("utf8 above U+10FFFF", !U("\xf4\x90\x80\x80"));
    test_cond("utf8 5-byte lead", !U("\xf8\x88\x80\x80\x80"));
    test_cond("utf8 FE FF", !U("\xfe\xff"));
    test_cond("utf8 bad continuation", !U("\xe4\x41\x9a"));
}

static int decode_str(const char *s, size_t max, nim_frame *f, const char **err) {
    return nim_proto_decode(s, strlen(s), max, f, err);
}

static int rejects(const char *s) {
    nim_frame f;
    const char *err = NULL;
    int rc = decode_str(s, NIM_PROTO_MAX_REQUEST, &f, &err);
    if (rc == NIM_CODE_OK) nim_frame_free(&f);
    return rc == NIM_CODE_BAD_FRAME && err != NULL && f.root == NULL;
}

static void test_decode(void) {
    nim_frame f;
    const char *err = NULL;
    int rc = decode_str("{\"id\":7,\"cmd\":\"ping\",\"data\":{\"x\":1}}", NIM_PROTO_MAX_REQUEST, &f, &err);
    test_cond("decode request", rc == NIM_CODE_OK && f.kind == NIM_FRAME_REQUEST && f.id == 7 &&
              strcmp(f.name, "ping") == 0 && cJSON_IsObject(f.data));
    nim_frame_free(&f);
    nim_frame_free(&f); /* twice is harmless */

    rc = decode_str(" {\"id\":1,\"cmd\":\"logout\",\"data\":null} \n", NIM_PROTO_MAX_REQUEST, &f, &err);
    test_cond("decode request, data null, surrounding whitespace",
              rc == NIM_CODE_OK && f.data == NULL && f.id == 1);
    nim_frame_free(&f);

    rc = decode_str("{\"id\":3,\"cmd\":\"login\",\"code\":302,\"error\":\"nope\"}", NIM_PROTO_MAX_FRAME, &f, &err);
    test_cond("decode response", rc == NIM_CODE_OK && f.kind == NIM_FRAME_RESPONSE &&
              f.id == 3 && f.code == 302 && strcmp(f.error, "nope") == 0 && f.data == NULL);
    nim_frame_free(&f);

    rc = decode_str("{\"push\":\"msg\",\"data\":{}}", NIM_PROTO_MAX_FRAME, &f, &err);
    test_cond("decode push", rc == NIM_CODE_OK && f.kind == NIM_FRAME_PUSH &&
              strcmp(f.name, "msg") == 0 && nim_proto_push_from_name(f.name) == NIM_PUSH_MSG);
    nim_frame_free(&f);

    /* Wrong types and missing envelope fields. */
    test_cond("reject: no id", rejects("{\"cmd\":\"ping\"}"));
    test_cond("reject: id 0", rejects("{\"id\":0,\"cmd\":\"ping\"}"));
    test_cond("reject: id negative", rejects("{\"id\":-4,\"cmd\":\"ping\"}"));
    test_cond("reject: id fractional", rejects("{\"id\":1.5,\"cmd\":\"ping\"}"));
    test_cond("reject: id string", rejects("{\"id\":\"1\",\"cmd\":\"ping\"}"));
    test_cond("reject: id huge", rejects("{\"id\":1e300,\"cmd\":\"ping\"}"));
    test_cond("reject: id above 2^53", rejects("{\"id\":9007199254740993,\"cmd\":\"ping\"}"));
    test_cond("reject: id infinite", rejects("{\"id\":1e999,\"cmd\":\"ping\"}"));
    test_cond("reject: cmd number", rejects("{\"id\":1,\"cmd\":5}"));
    test_cond("reject: cmd empty", rejects("{\"id\":1,\"cmd\":\"\"}"));
    test_cond("reject: cmd too long", rejects("{\"id\":1,\"cmd\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}"));
    test_cond("reject: data array", rejects("{\"id\":1,\"cmd\":\"ping\",\"data\":[]}"));
    test_cond("reject: data string", rejects("{\"id\":1,\"cmd\":\"ping\",\"data\":\"x\"}"));
    test_cond("reject: push name number", rejects("{\"push\":1}"));
    test_cond("reject: response code out of range", rejects("{\"id\":1,\"cmd\":\"x\",\"code\":20}"));
    test_cond("reject: response error not a string", rejects("{\"id\":1,\"cmd\":\"x\",\"code\":400,\"error\":1}"));
    /* Not JSON objects. */
    test_cond("reject: empty", rejects(""));
    test_cond("reject: whitespace", rejects("   "));
    test_cond("reject: not JSON", rejects("hello"));
    test_cond("reject: array root", rejects("[1,2]"));
    test_cond("reject: string root", rejects("\"x\""));
    test_cond("reject: number root", rejects("42"));
    test_cond("reject: null root", rejects("null"));
    test_cond("reject: trailing garbage", rejects("{\"id\":1,\"cmd\":\"ping\"} x"));
    test_cond("reject: two objects", rejects("{\"id\":1,\"cmd\":\"ping\"}{}"));
    test_cond("reject: lone surrogate escape", rejects("{\"id\":1,\"cmd\":\"p\\ud800\"}"));
    test_cond("reject: raw control char in string", rejects("{\"id\":1,\"cmd\":\"p\ti\"}"));
    test_cond("reject: invalid UTF-8 in string", rejects("{\"id\":1,\"cmd\":\"p\xc3\x28\"}"));
    test_cond("reject: overlong UTF-8", rejects("{\"id\":1,\"cmd\":\"\xc0\xaf\"}"));

    /* The id survives a bad envelope, so the server can answer that request. */
    rc = decode_str("{\"id\":9,\"cmd\":7}", NIM_PROTO_MAX_REQUEST, &f, &err);
    test_cond("bad envelope keeps the id", rc == NIM_CODE_BAD_FRAME && f.id == 9 && f.root == NULL);

    /* NUL inside the frame. */
    const char nul[] = "{\"id\":1,\"cmd\":\"pi\0ng\"}";
    rc = nim_proto_decode(nul, sizeof nul - 1, NIM_PROTO_MAX_REQUEST, &f, &err);
    test_cond("reject: NUL byte", rc == NIM_CODE_BAD_FRAME);

    /* The escape \u0000 decodes to a NUL that would cut the string short. */
    rc = decode_str("{\"id\":1,\"cmd\":\"login\",\"data\":{\"account\":\"a\",\"token\":\"secret\\u0000junk\"}}",
                    NIM_PROTO_MAX_REQUEST, &f, &err);
    test_cond("reject: \\u0000 in a value, naming its field",
              rc == NIM_CODE_BAD_FRAME && err && strcmp(err, "token: contains U+0000 (not allowed)") == 0);
    rc = decode_str("{\"id\":1,\"cmd\":\"m\",\"data\":{\"ids\":[\"k\\u0000A\"]}}", NIM_PROTO_MAX_REQUEST, &f, &err);
    test_cond("reject: \\u0000 in an array item names the array", rc == NIM_CODE_BAD_FRAME && err && strncmp(err, "ids:", 4) == 0);
    rc = decode_str("{\"id\":1,\"cmd\":\"m\",\"data\":{\"k\\u0000\":1}}", NIM_PROTO_MAX_REQUEST, &f, &err);
    test_cond("reject: \\u0000 in a key", rc == NIM_CODE_BAD_FRAME);
    rc = decode_str("{\"id\":1,\"cmd\":\"m\",\"data\":{\"t\":\"a\\\\u0000\",\"u\":\"\\u0001\"}}", NIM_PROTO_MAX_REQUEST, &f, &err);
    test_cond("accept: an escaped backslash before u0000, and \\u0001", rc == NIM_CODE_OK);
    nim_frame_free(&f);

    /* Every truncation of a valid frame fails cleanly. */
    const char *good = "{\"id\":12,\"cmd\":\"sendMsg\",\"data\":{\"scene\":\"p2p\",\"to\":\"bob\","
                       "\"type\":\"text\",\"text\":\"h\xc3\xa9llo\",\"list\":[1,[2,{\"a\":null}]]}}";
    size_t glen = strlen(good);
    int all = 1;
    for (size_t n = 0; n < glen; n++) {
        rc = nim_proto_decode(good, n, NIM_PROTO_MAX_REQUEST, &f, &err);
        if (rc == NIM_CODE_OK) { all = 0; nim_frame_free(&f); }
    }
    test_cond("every truncation of a valid frame is refused", all);
    rc = nim_proto_decode(good, glen, NIM_PROTO_MAX_REQUEST, &f, &err);
    test_cond("the full frame decodes", rc == NIM_CODE_OK);
    nim_frame_free(&f);

    /* Size. */
    size_t big = NIM_PROTO_MAX_REQUEST + 1;
    char *huge = malloc(big + 1);
    memset(huge, ' ', big);
    memcpy(huge, "{\"id\":1,\"cmd\":\"ping\"}", 21);
    rc = nim_proto_decode(huge, big, NIM_PROTO_MAX_REQUEST, &f, &err);
    test_cond("reject: over the size limit", rc == NIM_CODE_BAD_FRAME && strstr(err, "large"));
    rc = nim_proto_decode(huge, big - 1, NIM_PROTO_MAX_REQUEST, &f, &err);
    test_cond("accept: exactly at the size limit", rc == NIM_CODE_OK);
    nim_frame_free(&f);
    free(huge);

    /* Depth: the limit itself passes, one more level fails, and a very deep
     * frame is refused before cJSON recurses into it. */
    char deep[256];
    size_t p = 0;
    p += (size_t)sprintf(deep, "{\"id\":1,\"cmd\":\"x\",\"data\":{\"a\":");
    for (int i = 0; i < NIM_PROTO_MAX_DEPTH - 2; i++) deep[p++] = '[';
    for (int i = 0; i < NIM_PROTO_MAX_DEPTH - 2; i++) deep[p++] = ']';
    deep[p++] = '}'; deep[p++] = '}'; deep[p] = 0;
    rc = decode_str(deep, NIM_PROTO_MAX_REQUEST, &f, &err);
    test_cond("accept: nesting at the limit", rc == NIM_CODE_OK);
    nim_frame_free(&f);
    p = (size_t)sprintf(deep, "{\"id\":1,\"cmd\":\"x\",\"data\":{\"a\":");
    for (int i = 0; i < NIM_PROTO_MAX_DEPTH - 1; i++) deep[p++] = '[';
    for (int i = 0; i < NIM_PROTO_MAX_DEPTH - 1; i++) deep[p++] = ']';
    deep[p++] = '}'; deep[p++] = '}'; deep[p] = 0;
    test_cond("reject: one level too deep", rejects(deep));
    size_t dn = 60000;
    char *vdeep = malloc(dn + 1);
    memset(vdeep, '[', dn);
    vdeep[dn] = 0;
    test_cond("reject: 60000 open brackets", rejects(vdeep));
    memset(vdeep, '{', dn);
    test_cond("reject: 60000 open braces", rejects(vdeep));
    free(vdeep);
    test_cond("brackets inside strings do not count",
              !rejects("{\"id\":1,\"cmd\":\"x\",\"data\":{\"t\":\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[\\\"[[\"}}"));
}

static void test_fuzz(void) {
    /* Random bytes and random mutations of valid frames: the codec must only
     * ever answer OK or BAD_FRAME, and free what it parsed (asan checks). */
    const char *seeds[] = {
        "{\"id\":12,\"cmd\":\"sendMsg\",\"data\":{\"scene\":\"p2p\",\"to\":\"bob\",\"text\":\"hi\"}}",
        "{\"push\":\"roamingMsgs\",\"data\":{\"msgs\":[{\"idServer\":\"1\",\"time\":5}]}}",
        "{\"id\":3,\"cmd\":\"login\",\"code\":200,\"data\":{\"cursors\":{\"msgs\":1,\"state\":2}}}",
    };
    unsigned seed = 12345;
    char buf[512];
    int ok = 1, accepted = 0;
    for (int iter = 0; iter < 200000; iter++) {
        seed = seed * 1103515245u + 12345u;
        const char *s = seeds[(seed >> 16) % 3];
        size_t n = strlen(s);
        memcpy(buf, s, n);
        int muts = 1 + (int)((seed >> 8) % 4);
        for (int m = 0; m < muts; m++) {
            seed = seed * 1103515245u + 12345u;
            size_t at = (seed >> 16) % n;
            switch ((seed >> 4) % 4) {
            case 0: buf[at] = (char)(seed >> 24); break;                 /* any byte */
            case 1: n = at ? at : 1; break;                              /* truncate */
            case 2: buf[at] = "{}[]\",:\\0-e."[(seed >> 24) % 12]; break; /* structure */
            case 3: if (n < sizeof buf - 1) { memmove(buf + at + 1, buf + at, n - at); n++; } break;
            }
        }
        nim_frame f;
        const char *err = NULL;
        int rc = nim_proto_decode(buf, n, NIM_PROTO_MAX_FRAME, &f, &err);
        if (rc == NIM_CODE_OK) { accepted++; nim_frame_free(&f); }
        else if (rc != NIM_CODE_BAD_FRAME || !err) ok = 0;
    }
    test_cond("fuzz: 200000 mutated frames, only OK or BAD_FRAME", ok);
    test_cond("fuzz: some mutations still decode (the fuzzer reaches the envelope)", accepted > 0);
}

static void test_fields(void) {
    cJSON *o = cJSON_Parse("{\"s\":\"abc\",\"n\":42,\"f\":1.5,\"b\":true,\"a\":[1,2,3],"
                           "\"id\":\"123\",\"id0\":\"0123\",\"idx\":\"12a\",\"nul\":null,\"big\":1e20}");
    const char *s = NULL, *err = NULL;
    int64_t n = 0;
    int b = 0;
    const cJSON *arr;
    size_t cnt;
    test_cond("get_str", nim_proto_get_str(o, "s", 1, 3, 1, &s, &err) == NIM_CODE_OK && strcmp(s, "abc") == 0);
    test_cond("get_str too long", nim_proto_get_str(o, "s", 1, 2, 1, &s, &err) == NIM_CODE_PARAM &&
              strstr(err, "s:") == err);
    test_cond("get_str wrong type", nim_proto_get_str(o, "n", 0, 9, 1, &s, &err) == NIM_CODE_PARAM);
    s = "keep";
    test_cond("get_str absent optional", nim_proto_get_str(o, "zz", 0, 9, 0, &s, &err) == NIM_CODE_OK &&
              strcmp(s, "keep") == 0);
    test_cond("get_str null counts as absent", nim_proto_get_str(o, "nul", 0, 9, 0, &s, &err) == NIM_CODE_OK);
    test_cond("get_str absent required", nim_proto_get_str(o, "zz", 0, 9, 1, &s, &err) == NIM_CODE_PARAM &&
              strstr(err, "zz") != NULL);
    test_cond("get_str on NULL object", nim_proto_get_str(NULL, "s", 0, 9, 1, &s, &err) == NIM_CODE_PARAM);
    test_cond("get_int", nim_proto_get_int(o, "n", 0, 100, 1, &n, &err) == NIM_CODE_OK && n == 42);
    test_cond("get_int out of range", nim_proto_get_int(o, "n", 0, 10, 1, &n, &err) == NIM_CODE_PARAM);
    test_cond("get_int fractional", nim_proto_get_int(o, "f", 0, 10, 1, &n, &err) == NIM_CODE_PARAM);
    test_cond("get_int 1e20", nim_proto_get_int(o, "big", 0, NIM_PROTO_MAX_INT, 1, &n, &err) == NIM_CODE_PARAM);
    test_cond("get_int string", nim_proto_get_int(o, "s", 0, 10, 1, &n, &err) == NIM_CODE_PARAM);
    test_cond("get_bool", nim_proto_get_bool(o, "b", 1, &b, &err) == NIM_CODE_OK && b == 1);
    test_cond("get_bool wrong type", nim_proto_get_bool(o, "n", 1, &b, &err) == NIM_CODE_PARAM);
    test_cond("get_array", nim_proto_get_array(o, "a", 3, 1, &arr, &cnt, &err) == NIM_CODE_OK && cnt == 3);
    test_cond("get_array too many", nim_proto_get_array(o, "a", 2, 1, &arr, &cnt, &err) == NIM_CODE_PARAM);
    test_cond("get_array wrong type", nim_proto_get_array(o, "s", 2, 1, &arr, &cnt, &err) == NIM_CODE_PARAM);
    test_cond("get_id", nim_proto_get_id(o, "id", 1, &n, &err) == NIM_CODE_OK && n == 123);
    test_cond("get_id leading zero", nim_proto_get_id(o, "id0", 1, &n, &err) == NIM_CODE_PARAM);
    test_cond("get_id not digits", nim_proto_get_id(o, "idx", 1, &n, &err) == NIM_CODE_PARAM);
    test_cond("get_id number instead of string", nim_proto_get_id(o, "n", 1, &n, &err) == NIM_CODE_PARAM);
    cJSON_Delete(o);

    test_cond("account ok", nim_proto_valid_account("a.b-c_d@x9"));
    test_cond("account empty", !nim_proto_valid_account(""));
    test_cond("account space", !nim_proto_valid_account("a b"));
    test_cond("account non-ascii", !nim_proto_valid_account("\xc3\xa9"));
    char longacc[66];
    memset(longacc, 'a', 65); longacc[65] = 0;
    test_cond("account 65 bytes", !nim_proto_valid_account(longacc));
    longacc[64] = 0;
    test_cond("account 64 bytes", nim_proto_valid_account(longacc));
    test_cond("device printable", nim_proto_valid_device("phone-1:{x}"));
    test_cond("device with space", !nim_proto_valid_device("my phone"));
    const char *t = NULL;
    test_cond("session p2p", nim_proto_parse_session_id("p2p-bob", &t) == NIM_SCENE_P2P && strcmp(t, "bob") == 0);
    test_cond("session p2p with dash", nim_proto_parse_session_id("p2p-a-b", &t) == NIM_SCENE_P2P && strcmp(t, "a-b") == 0);
    test_cond("session team", nim_proto_parse_session_id("team-42", &t) == NIM_SCENE_TEAM && strcmp(t, "42") == 0);
    test_cond("session team leading zero", nim_proto_parse_session_id("team-042", &t) == NIM_SCENE_NONE);
    test_cond("session team not digits", nim_proto_parse_session_id("team-x", &t) == NIM_SCENE_NONE);
    test_cond("session empty target", nim_proto_parse_session_id("p2p-", &t) == NIM_SCENE_NONE);
    test_cond("session unknown scene", nim_proto_parse_session_id("superTeam-1", &t) == NIM_SCENE_NONE);
    test_cond("cmd names round trip", nim_proto_cmd_from_name(nim_proto_cmd_name(NIM_WIRE_CREATE_TEAM)) == NIM_WIRE_CREATE_TEAM);
    test_cond("unknown cmd", nim_proto_cmd_from_name("rm -rf") == NIM_WIRE_UNKNOWN);
    int all = 1;
    for (int i = 1; i < NIM_PUSH__COUNT; i++)
        if (nim_proto_push_from_name(nim_proto_push_name((nim_push)i)) != (nim_push)i) all = 0;
    for (int i = 1; i < NIM_WIRE__COUNT; i++)
        if (nim_proto_cmd_from_name(nim_proto_cmd_name((nim_wire_cmd)i)) != (nim_wire_cmd)i) all = 0;
    test_cond("every cmd and push name round trips", all);
}

static void test_roundtrip(void) {
    nim_proto_msg m = { .id_server = 9007199254740991LL, .id_client = "c1", .scene = NIM_SCENE_TEAM,
                        .from = "alice", .from_device = "pc", .to = "17", .time = 1700000000123LL,
                        .type = "text", .text = "h\xc3\xa9 \"quoted\" \\ \n" };
    cJSON *data = cJSON_CreateObject();
    cJSON *msgs = cJSON_AddArrayToObject(data, "msgs");
    cJSON_AddItemToArray(msgs, nim_proto_msg_to_json(&m));
    cJSON *push = nim_proto_push("roamingMsgs", data);
    size_t len = 0;
    char *buf = nim_proto_print(push, 16, &len);
    cJSON_Delete(push);
    test_cond("print with headroom", buf && len > 0 && buf[16] == '{' && strlen(buf + 16) == len);

    nim_frame f;
    const char *err = NULL;
    int rc = nim_proto_decode(buf + 16, len, NIM_PROTO_MAX_FRAME, &f, &err);
    nim_free(buf);
    const cJSON *arr = NULL;
    size_t cnt = 0;
    nim_proto_msg back;
    int ok = rc == NIM_CODE_OK && f.kind == NIM_FRAME_PUSH &&
             nim_proto_get_array(f.data, "msgs", 10, 1, &arr, &cnt, &err) == NIM_CODE_OK && cnt == 1 &&
             nim_proto_msg_from_json(arr->child, &back, &err) == NIM_CODE_OK;
    test_cond("message survives encode/decode", ok && back.id_server == m.id_server &&
              back.time == m.time && back.scene == NIM_SCENE_TEAM && strcmp(back.text, m.text) == 0 &&
              strcmp(back.from_device, "pc") == 0 && back.content == NULL);
    nim_frame_free(&f);

    cJSON *bad = cJSON_Parse("{\"idServer\":\"1\",\"idClient\":\"\",\"scene\":\"p2p\",\"from\":\"a\","
                             "\"to\":\"b\",\"time\":\"5\",\"type\":\"text\"}");
    test_cond("message with string time is refused", nim_proto_msg_from_json(bad, &back, &err) == NIM_CODE_PARAM);
    cJSON_Delete(bad);
    bad = cJSON_Parse("{\"idServer\":\"1\",\"idClient\":\"\",\"scene\":\"team\",\"from\":\"a\","
                      "\"to\":\"bob\",\"time\":5,\"type\":\"text\"}");
    test_cond("team message to a non-team id is refused", nim_proto_msg_from_json(bad, &back, &err) == NIM_CODE_PARAM);
    cJSON_Delete(bad);

    cJSON *r = nim_proto_response(5, "login", NIM_CODE_AUTH, NULL, NULL);
    buf = nim_proto_print(r, 0, &len);
    cJSON_Delete(r);
    rc = nim_proto_decode(buf, len, NIM_PROTO_MAX_FRAME, &f, &err);
    test_cond("error response carries code and default text", rc == NIM_CODE_OK && f.code == 302 &&
              strcmp(f.error, "wrong account or token") == 0 && strcmp(f.name, "login") == 0);
    nim_frame_free(&f);
    nim_free(buf);

    r = nim_proto_request(1, "ping", NULL);
    nim_alloc_fail_at = 1;
    buf = nim_proto_print(r, 16, &len);
    nim_alloc_fail_at = 0;
    test_cond("print fails cleanly when allocation fails", buf == NULL);
    cJSON_Delete(r);
}

/* Integers up to 2^53-1 print exactly (cJSON alone prints 9007199254740991
 * as 9007199254740990), and printing leaves the tree as it was. */
static void test_exact_ints(void) {
    const double vals[] = { 9007199254740991.0, -9007199254740991.0, 1e15, 999999999999999.0,
                            1700000000123.0, 0.5, 1e300 };
    const char *want[] = { "9007199254740991", "-9007199254740991", "1000000000000000",
                           "999999999999999", "1700000000123", "0.5", "1e+300" };
    int ok = 1;
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        cJSON *o = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(o, "a");
        cJSON_AddItemToArray(arr, cJSON_CreateNumber(vals[i]));
        size_t len = 0;
        char *s = nim_proto_print(o, 0, &len);
        char expect[64];
        snprintf(expect, sizeof expect, "{\"a\":[%s]}", want[i]);
        if (!s || strcmp(s, expect) != 0) { ok = 0; fprintf(stderr, "printed %s, want %s\n", s, expect); }
        ok &= cJSON_IsNumber(arr->child) && arr->child->valuedouble == vals[i] && !arr->child->valuestring;
        nim_free(s);
        cJSON_Delete(o);
    }
    test_cond("print: integers to 2^53-1 exactly, other numbers as before, the tree untouched", ok);
}

int main(void) {
    test_exact_ints();
    test_utf8();
    test_decode();
    test_fuzz();
    test_fields();
    test_roundtrip();
    return test_report();
}
