"""Findings to outputs: terminal, JSON, self-contained HTML (graphs, ladders), pcap extract."""
