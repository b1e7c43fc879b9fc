"""Pure book processing: decoding, Gutenberg cleanup, chapter detection, chunking, library scans.

Nothing here knows about Dagster or the stores, so it is tested directly on real books.
"""
