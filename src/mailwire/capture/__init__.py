"""capture: capture files (and later interfaces) into the columnar packet table (see ``table``).

Data flow, one module per step::

    source.open_source     file or stdin → one stream; gzip/bzip2/xz/zstd undone by magic number,
                           read in bounded pieces (a decompression bomb costs time, not memory)
    read.iter_tables       bounded buffers of ``chunk_bytes``; an unfinished record is carried into
                           the next buffer; yields PacketTables in file order, frame numbers continuing
    pcap.PcapReader        classic pcap: µs/ns magic, both byte orders, FCS bits; compiled record walk,
    pcapng.PcapngReader    pcapng: sections, interfaces, EPB/SPB/PB, skipped blocks; compiled block walk;
                           both check every length before use and resync after damage (DecodeIssue)
    decode.decode          link layer → IPv4/IPv6 (+ extension headers) → TCP (+ options) / UDP / ICMP,
                           vectorised over the chunk with NumPy; TCP options and NFLOG TLVs compiled
    table.PacketTable      the result: one NumPy array per field, ``buf`` holding the frame bytes

Consumers: ``output`` (``mailwire packets``, with the ``filter`` language), ``info``
(``mailwire info``), and every later stage through ``read.iter_tables`` / ``read.read_table``.
``addr`` formats the 128-bit address columns; ``write`` writes plain pcap (extracts, tests).
"""
