"""supervisor.toml: the settings table (`settings`), loading and checking it (`load`), and
the commented file `jobrt init` writes (`init_file`)."""
