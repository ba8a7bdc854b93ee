"""The supervisor process: its event loop (`loop`), its side of storage (`exchange`), the
relay of what jobs print (`output_relay`), its neighbours on the host (`neighbours`), the
import check of a reload (`import_check`), metrics, sd_notify and log set-up."""
