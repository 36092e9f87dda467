"""TCP analysis: packet table -> connections, Wireshark-compatible expert flags, RTT/RTO, byte streams.

Entry points: :func:`analyze` (chunks in, :class:`TcpResult` out), :class:`TcpAnalyzer` (the
same, fed chunk by chunk, e.g. by ``mailwire packets``) and :func:`packet_fields` (the
``stream`` / ``analysis`` fields of one packet). Module map: ``connections`` (keys, stream
numbering input), ``analysis`` (Wireshark's rule list, in order), ``chains`` (retransmission
chains, causes), ``summary`` (conn.log-like records), ``quality`` (capture quality),
``reassembly`` (ordered byte streams with explicit gaps).
"""

from mailwire.tcp.analysis import DIFFERENCES, Flag, flag_names
from mailwire.tcp.chains import Chain, Resend
from mailwire.tcp.engine import ChunkAnalysis, TcpAnalyzer, TcpResult, analyze, packet_fields
from mailwire.tcp.quality import CaptureQuality, ConnQuality
from mailwire.tcp.reassembly import StreamChunk, StreamEvent, StreamGap
from mailwire.tcp.summary import Connection, Direction, ZeroWindowEpisode

__all__ = [
    "DIFFERENCES",
    "CaptureQuality",
    "Chain",
    "ChunkAnalysis",
    "ConnQuality",
    "Connection",
    "Direction",
    "Flag",
    "Resend",
    "StreamChunk",
    "StreamEvent",
    "StreamGap",
    "TcpAnalyzer",
    "TcpResult",
    "ZeroWindowEpisode",
    "analyze",
    "flag_names",
    "packet_fields",
]
