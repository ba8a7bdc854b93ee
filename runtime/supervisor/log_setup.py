"""The supervisor's log lines: human text by default, JSON lines for log shippers.

Under systemd (JOURNAL_STREAM set) text lines carry no timestamp: journald adds its own.
"""

from __future__ import annotations

import logging
import os
import sys

import orjson


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        document = {"ts": record.created, "level": record.levelname.lower(), "msg": record.getMessage(),
                    "pid": record.process}
        if record.exc_info:
            document["traceback"] = self.formatException(record.exc_info)
        return orjson.dumps(document).decode()


def setup_logging(level: str = "info", log_format: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    elif os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger = logging.getLogger("jobrt")
    logger.handlers[:] = [handler]
    logger.setLevel(level.upper())
    logger.propagate = False
