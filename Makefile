# nim-lua: recent sessions for Lua 5.4, 5.1 and LuaJIT 2.1.
#
#   make            build build/nim/core.so (the Lua module) and build/nim-server
#   make LUA=luajit BUILD=build-luajit   the module for LuaJIT (LUA=lua5.1 for 5.1)
#   make test       install missing Debian packages, C unit tests, then every busted
#                   spec under lua5.4, luajit and lua5.1 (test-lua: under $(LUA) only)
#   make demo       install, build, run the tour on embedded defaults
#   make bench      benchmarks, each figure beside its peer's
#   make asan       C tests and specs under AddressSanitizer + UBSan
#   make valgrind   specs under valgrind memcheck
#   make soak       the fault-injection soak, long (SOAK_SECONDS=300, SOAK_SEED=n repeats a run)
#
# Sources are found by directory, so adding a file needs no Makefile edit:
#   csrc/core/*.c   engine without Lua (linked into the module, the server and C tests)
#   csrc/net/*.c    wire protocol and network code (module, server and C tests)
#   csrc/lua/*.c    Lua binding (module only; the only C that includes lua.h)
#   csrc/server/*.c nim-server (with core and net)
#   csrc/tests/test_*.c   one C unit test program each (with core and net)

# Each interpreter its own build directory (a module built for one cannot
# load in another); the binding is rebuilt when its Lua headers change.
BUILD   ?= $(if $(filter lua5.4,$(LUA)),build,build-$(LUA))
CC      ?= cc
# The interpreter the module is built for and the specs run under: lua5.4,
# lua5.1 or luajit (each its own BUILD). Its pkg-config name is its name;
# its ABI (the 5.x of the install paths) is what it reports.
LUA     ?= lua5.4
LUA_ABI  = $(or $(patsubst lua%,%,$(filter lua5.%,$(LUA))),5.1)
# --ignore-lua: .busted names lua5.4 for a bare `busted`; make runs $(LUA).
BUSTED  ?= $(LUA) /usr/bin/busted --ignore-lua
PKG_CONFIG ?= pkg-config
PREFIX  ?= /usr/local
LUA_LIBDIR ?= $(PREFIX)/lib/lua/$(LUA_ABI)
LUA_DIR    ?= $(PREFIX)/share/lua/$(LUA_ABI)
BINDIR     ?= $(PREFIX)/bin
# The one place the version is written: NIM.version, nim-server --version,
# the rockspecs (rockspec/gen.lua) and make dist all read VERSION.
VERSION   := $(shell cat VERSION)
# The interpreters make test runs the specs under, the first with BUILD=build.
TEST_LUAS  = lua5.4 luajit lua5.1

DEB_PACKAGES = lua5.4 liblua5.4-dev libsqlite3-dev libcjson-dev libwebsockets-dev libssl-dev openssl \
               lua-busted lua-cjson lua-luv luarocks pkg-config tmux
# the compiler and make; git lists the sources (make rockspec, the specs)
DEB_PACKAGES += gcc libc6-dev make git
# make dist (the .src.rock is a zip) and its spec; the sqlite3 shell for specs
# that look into a database
DEB_PACKAGES += zip sqlite3
# nim-server's PostgreSQL backend (libpq), and the server the specs start
# for it (a throwaway cluster on a unix socket, spec/pg.lua)
DEB_PACKAGES += libpq-dev postgresql

# Lua 5.1 and LuaJIT (csrc/lua/compat53 supplies the 5.3 C API).
DEB_PACKAGES += lua5.1 liblua5.1-0-dev luajit libluajit-5.1-dev
DEB_PACKAGES += love xvfb xauth tesseract-ocr netpbm  # examples/love and its spec (screenshot, OCR)
# examples/cqueues.lua and its spec
DEB_PACKAGES += lua-cqueues

PKGS      = sqlite3 libcjson libwebsockets openssl
# luarocks passes LUA_INCDIR (the rockspecs): the headers of the Lua it builds for.
LUA_CFLAGS = $(if $(LUA_INCDIR),-I$(LUA_INCDIR),$(shell $(PKG_CONFIG) --cflags $(LUA) 2>/dev/null))
DEP_CFLAGS = $(shell $(PKG_CONFIG) --cflags $(PKGS) 2>/dev/null)
DEP_LIBS   = $(shell $(PKG_CONFIG) --libs $(PKGS) 2>/dev/null) -lpthread

OPT      ?= -O2 -g
WARN      = -Wall -Wextra -Werror -Wno-unused-parameter
CFLAGS   += $(OPT) $(WARN) -std=gnu11 -fPIC -D_GNU_SOURCE -Icsrc $(DEP_CFLAGS) $(SAN) -DNIM_VERSION='"$(VERSION)"'
LDFLAGS  += $(SAN)

CORE_SRC   = $(wildcard csrc/core/*.c) $(wildcard csrc/net/*.c)
LUA_SRC    = $(wildcard csrc/lua/*.c)
SERVER_SRC = $(wildcard csrc/server/*.c)
TEST_SRC   = $(wildcard csrc/tests/test_*.c)

CORE_OBJ   = $(CORE_SRC:%.c=$(BUILD)/obj/%.o)
LUA_OBJ    = $(LUA_SRC:%.c=$(BUILD)/obj/%.o)
SERVER_OBJ = $(SERVER_SRC:%.c=$(BUILD)/obj/%.o)
TEST_BIN   = $(TEST_SRC:csrc/tests/%.c=$(BUILD)/tests/%)
# the wakeup fd's pipe (core/wakeup.h) on Linux too: two of them again, see below
TEST_BIN  += $(BUILD)/tests/test_wakeup_pipe $(BUILD)/tests/test_engine_pipe
MODULE     = $(BUILD)/nim/core.so
SERVER     = $(if $(SERVER_SRC),$(BUILD)/nim-server)

# The one place the Lua paths are set: every interpreter make starts (busted,
# the benches, the demo, the processes specs start) finds the Lua modules
# of this checkout and the module of this $(BUILD).
export LUA_PATH  := ./lua/?.lua;./lua/?/init.lua;./spec/?.lua;;
export LUA_CPATH := ./$(BUILD)/?.so;;
# The interpreter specs and examples start for a child process.
export NIM_LUA := $(LUA)

.PHONY: all deps test test-c test-lua test-pg bench demo asan valgrind install clean rockspec soak module dist

EMBED_HOST = $(BUILD)/embed-host
FAULTPROXY = $(BUILD)/faultproxy

all: $(MODULE) $(SERVER) $(TEST_BIN) $(EMBED_HOST) $(FAULTPROXY)

# examples/embed: a C host that embeds $(LUA) like a game engine (links its library).
$(EMBED_HOST): examples/embed/host.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LUA_CFLAGS) $(LDFLAGS) -o $@ $< $(shell $(PKG_CONFIG) --libs $(LUA)) -lm -ldl

# csrc/tools/faultproxy.c: a fault-injection TCP proxy for soak tests (no libraries).
$(FAULTPROXY): csrc/tools/faultproxy.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $<

# Header dependencies come from the compiler (-MMD): each object and test
# binary has a .d file next to it listing the headers it included.
DEPFLAGS = -MMD -MP

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(DEPFLAGS) $(if $(filter csrc/lua/%,$<),$(LUA_CFLAGS)) -c $< -o $@

# The Lua headers the binding was compiled with: a change rebuilds it (a
# checkout built for 5.4 and then installed by luarocks for 5.1, say).
LUA_STAMP = $(BUILD)/obj/lua-cflags
$(LUA_STAMP): FORCE
	@mkdir -p $(dir $@)
	@echo '$(LUA_CFLAGS)' | cmp -s - $@ || echo '$(LUA_CFLAGS)' > $@
$(LUA_OBJ) $(EMBED_HOST): $(LUA_STAMP)
FORCE:

# Never link liblua: the interpreter (lua5.4 static, lua5.1 and luajit through
# their shared library, a game engine) exports the API to the modules it loads.
$(MODULE): $(LUA_OBJ) $(CORE_OBJ)
	@mkdir -p $(dir $@)
	$(CC) -shared $(LDFLAGS) -Wl,-z,nodelete -o $@ $^ $(DEP_LIBS)

# libpq is the server's alone (db_pg.c): the module never links it.
PG_CFLAGS = $(shell $(PKG_CONFIG) --cflags libpq 2>/dev/null)
PG_LIBS   = $(shell $(PKG_CONFIG) --libs libpq 2>/dev/null)
$(BUILD)/obj/csrc/server/db_pg.o: CFLAGS += $(PG_CFLAGS)

$(BUILD)/nim-server: $(SERVER_OBJ) $(CORE_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(PG_LIBS) $(DEP_LIBS)

# the storage interface on both backends (csrc/server/db*.c)
STORAGE_OBJ = $(filter $(BUILD)/obj/csrc/server/db%.o,$(SERVER_OBJ))
$(BUILD)/tests/test_storage: csrc/tests/test_storage.c $(STORAGE_OBJ) $(CORE_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(DEPFLAGS) -MF $@.d -MT $@ $(LDFLAGS) -o $@ $< $(STORAGE_OBJ) $(CORE_OBJ) $(PG_LIBS) $(DEP_LIBS)

$(BUILD)/tests/%: csrc/tests/%.c $(CORE_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(DEPFLAGS) -MF $@.d -MT $@ $(LDFLAGS) -o $@ $< $(CORE_OBJ) $(DEP_LIBS)

# The pipe that stands in for eventfd off Linux: test_*_pipe is test_*.c
# linked with csrc/core/wakeup.c built -DNIM_WAKEUP_PIPE (only it reads the flag).
PIPE_OBJ  = $(BUILD)/obj-pipe/csrc/core/wakeup.o
PIPE_CORE = $(filter-out $(BUILD)/obj/csrc/core/wakeup.o,$(CORE_OBJ)) $(PIPE_OBJ)

$(PIPE_OBJ): csrc/core/wakeup.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(DEPFLAGS) -DNIM_WAKEUP_PIPE -c $< -o $@

$(BUILD)/tests/%_pipe: csrc/tests/%.c $(PIPE_CORE)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(DEPFLAGS) -DNIM_WAKEUP_PIPE -MF $@.d -MT $@ $(LDFLAGS) -o $@ $< $(PIPE_CORE) $(DEP_LIBS)

# the two files that print the version (-DNIM_VERSION from VERSION)
$(BUILD)/obj/csrc/lua/nim_core.o $(BUILD)/obj/csrc/server/main.o: VERSION

-include $(CORE_OBJ:.o=.d) $(LUA_OBJ:.o=.d) $(SERVER_OBJ:.o=.d) $(TEST_BIN:=.d) $(PIPE_OBJ:.o=.d)

# Installs what is missing as root; otherwise prints the one command to run.
deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing) \
	      || { echo "apt-get failed for:$$missing" >&2; exit 1; }; \
	  else \
	    echo "missing Debian packages; run:"; \
	    echo "  sudo apt-get install -y$$missing"; exit 1; \
	  fi; \
	fi

test: deps
	$(MAKE) all
	$(MAKE) test-c
	$(MAKE) test-lua
	$(MAKE) test-pg
	@set -e; for l in $(filter-out lua5.4,$(TEST_LUAS)); do \
	  echo "== specs under $$l"; $(MAKE) LUA=$$l BUILD=build-$$l test-lua; done

test-c: $(TEST_BIN) $(SERVER)
	@set -e; for t in $(TEST_BIN); do echo "== $$t"; $$t; done

# BUSTED_ARGS narrows a run, e.g. make test-lua BUSTED_ARGS='--tags=merge'
test-lua: $(MODULE) $(SERVER) $(EMBED_HOST) $(FAULTPROXY)
	@mkdir -p $(BUILD)
	@{ NIM_SERVER=./$(BUILD)/nim-server NIM_EMBED_HOST=./$(BUILD)/embed-host NIM_FAULTPROXY=./$(FAULTPROXY) \
	   $(RUN_ENV) $(BUSTED) $(BUSTED_ARGS) spec; \
	   echo $$? > $(BUILD)/busted.rc; } | tee $(BUILD)/busted.log
	@awk '/^[0-9]+ successes? \/ [0-9]+ failures? \/ [0-9]+ errors? \/ [0-9]+ pending/ \
	  { line = sprintf("specs: %d passed, %d failed, %d skipped", $$1, $$4 + $$7, $$10) } \
	  END { if (line) print line }' $(BUILD)/busted.log
	@exit $$(cat $(BUILD)/busted.rc)

# The network specs and the soak again with every server on PostgreSQL: a throwaway
# cluster (spec/pg_cluster.sh) and a database of its own per server.
test-pg: $(MODULE) $(SERVER) $(EMBED_HOST) $(FAULTPROXY) $(BUILD)/tests/test_storage
	spec/pg_cluster.sh ./$(BUILD)/tests/test_storage
	spec/pg_cluster.sh $(MAKE) test-lua BUSTED_ARGS="--pattern=net_ --pattern=soak_spec $(BUSTED_ARGS)"

bench: deps
	$(MAKE) all
	$(LUA) bench/merge_bench.lua
	@for b in $(filter-out bench/merge_bench.lua bench/pg_bench.lua,$(wildcard bench/*_bench.lua)); do \
	  NIM_SERVER=./$(BUILD)/nim-server NIM_EMBED_HOST=./$(BUILD)/embed-host $(LUA) $$b || exit 1; done
	NIM_PG_FSYNC=on NIM_SERVER=./$(BUILD)/nim-server spec/pg_cluster.sh $(LUA) bench/pg_bench.lua

# The soak of spec/soak_spec.lua, for SOAK_SECONDS (make test runs it for 12).
SOAK_SECONDS ?= 300
soak: deps
	$(MAKE) all
	NIM_SERVER=./$(BUILD)/nim-server NIM_FAULTPROXY=./$(FAULTPROXY) SOAK_SHORT_SECONDS=$(SOAK_SECONDS) SOAK_SEED=$(SOAK_SEED) \
	  $(BUSTED) --pattern=soak_spec spec

# The tour: starts nim-server on a free loopback port with a temporary
# database, registers alice, bob and carol, walks through the API, stops it.
demo: deps
	$(MAKE) all
	NIM_SERVER=./$(BUILD)/nim-server $(LUA) examples/tour.lua

# float-cast-overflow is not in GCC's "undefined": a double cast to an
# integer it does not fit is caught too.
ASAN_FLAGS = -fsanitize=address,undefined,float-cast-overflow -fno-omit-frame-pointer \
             -fno-sanitize-recover=undefined,float-cast-overflow
asan: deps
	$(MAKE) BUILD=build/asan SAN="$(ASAN_FLAGS)" OPT="-O1 -g" all
	$(MAKE) BUILD=build/asan SAN="$(ASAN_FLAGS)" OPT="-O1 -g" test-c
	$(MAKE) BUILD=build/asan SAN="$(ASAN_FLAGS)" OPT="-O1 -g" test-lua \
	  RUN_ENV='ASAN_OPTIONS=detect_leaks=0 LD_PRELOAD="$(shell $(CC) -print-file-name=libasan.so) $(shell $(CC) -print-file-name=libubsan.so)"'


valgrind: DEB_PACKAGES += valgrind
valgrind: deps all
	NIM_SERVER=./$(BUILD)/nim-server valgrind --error-exitcode=1 --leak-check=no -q \
	  $(LUA) /usr/bin/busted --ignore-lua $(BUSTED_ARGS) spec

# What install installs, and all the rockspecs build (build_target).
module: $(MODULE) $(SERVER)

# The rockspecs run it with luarocks' LUA_LIBDIR, LUA_DIR and BINDIR; by
# hand: make install PREFIX=... (LUA=luajit for LuaJIT's paths). nim.server
# finds nim-server in BINDIR, next to the module's share/lua/.
install: module
	install -d $(DESTDIR)$(LUA_LIBDIR)/nim $(DESTDIR)$(LUA_DIR)/nim $(DESTDIR)$(BINDIR)
	install -m 755 $(MODULE) $(DESTDIR)$(LUA_LIBDIR)/nim/core.so
	install -m 644 lua/nim/*.lua $(DESTDIR)$(LUA_DIR)/nim/
	install -m 755 $(SERVER) $(DESTDIR)$(BINDIR)/nim-server

# The release: dist/nim-lua-$(VERSION).tar.gz (the tracked files as they are
# in the work tree), its rockspec, and the .src.rock (both in one file) that
# `luarocks install` builds offline, for Lua 5.4 and 5.1 (LuaJIT) alike.
DIST = dist
dist:
	@test -n "$(VERSION)" || { echo "dist: VERSION is empty" >&2; exit 1; }
	@git diff --quiet HEAD -- || echo "dist: note: uncommitted changes to tracked files are in the tarball" >&2
	@untracked=$$(git ls-files --others --exclude-standard -- csrc lua); test -z "$$untracked" || \
	  echo "dist: note: untracked sources are left out (git add them): $$untracked" >&2
	rm -rf $(DIST) && mkdir -p $(DIST)
	tree=$$(git stash create); git archive --format=tar.gz --prefix=nim-lua-$(VERSION)/ \
	  -o $(DIST)/nim-lua-$(VERSION).tar.gz $${tree:-HEAD}
	cp rockspec/nim-lua-$(VERSION)-1.rockspec $(DIST)/
	@# a .src.rock is a zip of the rockspec and its source archive (what
	@# luarocks pack makes, which cannot fetch a source given by a relative path)
	cd $(DIST) && zip -q nim-lua-$(VERSION)-1.src.rock nim-lua-$(VERSION)-1.rockspec nim-lua-$(VERSION).tar.gz
	@ls -l $(DIST)

clean:
	@test -n "$(BUILD)" && test "$(BUILD)" != / || { echo "clean: BUILD is empty or /" >&2; exit 1; }
	rm -rf $(BUILD)

# Regenerates the rockspecs from VERSION (spec/rockspec_spec.lua checks them).
rockspec:
	$(LUA) rockspec/gen.lua
