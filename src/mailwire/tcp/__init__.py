"""TCP analysis: packet table -> connections, Wireshark-compatible expert flags, RTT/RTO, byte streams."""

from mailwire.tcp.reassembly import StreamChunk, StreamEvent, StreamGap

__all__ = ["StreamChunk", "StreamEvent", "StreamGap"]
