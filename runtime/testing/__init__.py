"""Testing job code without a supervisor: `fake_queue()` records what code enqueues and
asserts on it; `eager_queue()` runs the jobs in the test's process on a fake clock. Inside
either `with` block, runtime.connect(...) returns that queue. The pytest plugin
(runtime.testing.plugin) gives them as the fixtures `jobrt_fake` and `jobrt_eager`."""

from runtime.testing.eager import EagerError, EagerQueue, eager_queue
from runtime.testing.fake import EnqueuedJob, FakeQueue, RecordedBatch, RecordedChain, fake_queue
from runtime.testing.stand_in_queue import FakeClock

__all__ = ["EagerError", "EagerQueue", "EnqueuedJob", "FakeClock", "FakeQueue", "RecordedBatch",
           "RecordedChain", "eager_queue", "fake_queue"]
