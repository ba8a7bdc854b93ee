"""The supervisor's log lines: human text by default, JSON lines for log shippers.

Under systemd (JOURNAL_STREAM set) text lines carry no timestamp: journald adds its own.
"""

from __future__ import annotations

import logging
import os
import sys
import time

import orjson


class TextFormatter(logging.Formatter):
    """logging.Formatter's text, its timestamp's date and seconds formatted once a second:
    a pool recycling a worker every few milliseconds logs hundreds of lines a second, and
    strftime was 6% of its supervisor's time."""

    def __init__(self, fmt: str):
        super().__init__(fmt)
        self._second: int | None = None
        self._stamp = ""

    def formatTime(self, record: logging.LogRecord, datefmt=None) -> str:
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime(self.default_time_format, self.converter(record.created))
        return self.default_msec_format % (self._stamp, record.msecs)


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
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(message)s"))
    logger = logging.getLogger("jobrt")
    logger.handlers[:] = [handler]
    logger.setLevel(level.upper())
    logger.propagate = False
