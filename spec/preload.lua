-- Loaded once by busted before any spec file (.busted: helper), outside its
-- per-file insulation. Modules with process-wide C state are opened here,
-- once: luv unloaded after one insulated file and required again by the next
-- reuses its freed default loop (a segfault in uv_poll_init, seen when the
-- chat specs were excluded and the getfd spec was the next to use luv).
pcall(require, "luv")
