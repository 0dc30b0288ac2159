"""Packet captures in and out: offline analysis and PCAP export.

Reading (``tapproxy analyze``), one stage per module, each streaming:

``reader``     libpcap/pcapng files -> ``Packet`` (block reads, flat memory,
               ``CaptureError`` with the byte offset on corrupt input)
``decode``     link layer, IPv4/IPv6 (+ ``fragments``), TCP/UDP -> ``DecodedPacket``
``filter``     tcpdump capture-filter subset -> predicate on ``DecodedPacket``
``tcp``        per-connection reassembly -> ordered bytes, gaps, FIN/RST events
``streams``    per connection: sniff HTTP/1 / HTTP/2 / TLS / other, dispatch
``http``       HTTP/1.x exchanges with the live proxy's codec
``h2frames``   HTTP/2 frames of one direction (DATA passed on, not buffered)
``h2decode``   HTTP/2 streams: HPACK per direction, one record per stream
``h2fields``   pseudo-header fields -> method, URL, status
``tlsstream``  a TLS connection: handshake facts; decryption with a key log
``tlsrecord``  TLS record and handshake-message framing, one record held at most
``tlshandshake`` ClientHello / ServerHello (HRR) / EncryptedExtensions / Certificate
``tlskeys``    TLS 1.2 PRF and key block, TLS 1.3 HKDF-Expand-Label, AEAD records
``tlsapp``     where decrypted application data goes (HTTP/1.x, HTTP/2, or a note)
``keylog``     NSS key log files (``SSLKEYLOGFILE``) by client random
``records``    ``CapturedExchange``, the output record
``analyze``    the pipeline gluing the above together

Writing (for the live proxy's PCAP export):

``writer``     ``PcapngWriter``: synthetic TCP conversations as pcapng,
               incremental and with bounded memory

Import the submodules directly (``from proxy.pcap.writer import
PcapngWriter``); this package imports nothing itself, so the live proxy can use
the writer without loading the analysis stages. docs/analyze.md describes
the policies (overlaps, gaps, bounds) and the record format.
"""
