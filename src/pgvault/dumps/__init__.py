"""What a dump is, as bytes: the layers around it and what it holds inside.

Owns ``layers`` (compressors, sha256 hashing, recognising gzip/zstd/age and the dump kind by
magic bytes), ``encryption`` (age, in the stream) and ``toc`` (a dump's table of contents via
``pg_restore --list``, COPY scanning of plain SQL, object counts). It never connects to a
database nor decides where bytes are stored.
"""
