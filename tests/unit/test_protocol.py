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
