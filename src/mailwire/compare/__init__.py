"""compare: several captures of the same traffic -> matched segments, clock offset, per-hop loss.

``compare_captures(paths)`` is the entry point (paths in path order, first = nearest the sender);
``CompareResult.to_json()`` is the document ``schemas/compare.schema.json`` describes.
"""

from mailwire.compare.result import CompareResult, compare_captures, compare_digests, compare_tables

__all__ = ["CompareResult", "compare_captures", "compare_digests", "compare_tables"]
