"""jobrt's own jobs, which every registry holds whatever the config's [jobs] modules list
(runtime.registry.collect adds them): so a running supervisor's workers can run the no-op
of `jobrt bench` without any change to a deployment. Their names start with "jobrt.",
which no job of a user's modules may take."""

from __future__ import annotations

import time

from runtime.registry import job

NOOP = "jobrt.bench:noop"


@job(name=NOOP, tries=1)
def noop() -> float:
    """Does nothing; returns when it started (epoch seconds): `jobrt bench` counts its
    pickup latency from the enqueue to that moment."""
    return time.time()
