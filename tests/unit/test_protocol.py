"""Frame encoding between supervisor and workers."""

import pytest
from hypothesis import given, strategies as st

from runtime.workers import protocol

headers = st.recursive(st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1) | st.text(),
                       lambda inner: st.lists(inner, max_size=4), max_leaves=10)


@given(st.lists(st.tuples(st.sampled_from([protocol.RUN, protocol.DONE, protocol.STOP]),
                          headers, st.binary(max_size=300))), st.integers(1, 50))
def test_frames_survive_any_split(frames, chunk):
    data = b"".join(protocol.frame(kind, header, body) for kind, header, body in frames)
    reader = protocol.FrameReader()
    out = []
    for start in range(0, len(data), chunk):
        out.extend(reader.feed(data[start:start + chunk]))
    assert out == [(kind, header, body) for kind, header, body in frames]
    assert not reader.buf


@pytest.mark.parametrize("garbage", [b"\x00\x00\x00\x01x", b"\xff\xff\xff\xffxxxxxxxx",
                                     b"\x00\x00\x00\x09R\x00\x00\x00\x04{{{{"])
def test_garbage_is_a_protocol_error(garbage):
    with pytest.raises(protocol.ProtocolError):
        protocol.FrameReader().feed(garbage)


@given(st.integers(1, 2**63 - 1), st.integers(1, 2**31), st.text(), st.text(), st.none() | st.text(),
       st.none() | st.text(), st.binary(max_size=300), st.integers(1, 50))
def test_run_frames_with_events_and_event_frames_survive_any_split(job_id, attempt, name, queue, error_end,
                                                                   release_end, payload, chunk):
    data = protocol.run_frame(job_id, attempt, name, payload) \
        + protocol.run_frame_with_events(job_id, attempt, name, payload, queue, error_end, release_end) \
        + protocol.event_frame("after_failure", job_id, attempt, name, queue, error_end, payload)
    reader = protocol.FrameReader()
    out = []
    for start in range(0, len(data), chunk):
        out.extend(reader.feed(data[start:start + chunk]))
    assert out == [(protocol.RUN, [job_id, attempt, name], payload),
                   (protocol.RUN, [job_id, attempt, name, queue, error_end, release_end, None], payload),
                   (protocol.EVENT, ["after_failure", job_id, attempt, name, queue, error_end], payload)]
