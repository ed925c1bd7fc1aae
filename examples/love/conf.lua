-- examples/love/conf.lua: the window and the modules (main.lua is the game).
function love.conf(t)
  t.identity = "nim-love"            -- the save directory: ~/.local/share/love/nim-love
  t.version = "11.4"
  t.window.title = "nim-lua in LÖVE"
  t.window.width, t.window.height = 800, 600
  t.window.vsync = 1
  t.modules.audio, t.modules.sound = false, false   -- no sound: none needed, and none under xvfb
  t.modules.joystick, t.modules.physics, t.modules.video = false, false, false
end
