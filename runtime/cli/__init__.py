"""The `jobrt` command: parsing and the commands that run things (`main`), the commands that
inspect and tend a deployment (`admin`), health checks (`health`) and the systemd unit
(`systemd_unit`). `python -m runtime.cli` runs it."""
