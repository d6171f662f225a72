"""The disk contract: what lives in a data directory and how it is written.

The layout (paths, ready files, manifests, metadata), the config.json schema, atomic writes
(temp file, fsync, ``os.replace``), the per-symbol candle files, the exginfo/funding files and
the single-recorder lock; also the start-up checks of those paths (``preflight``), the adoption
of another save type's files (``adopt``) and a read-only inspection for ``check`` (``inspect``).
Both the recorder and ``bmac_kit`` read these names, so writer and
readers cannot drift apart. Synchronous: callers run it in worker threads.

May import: :mod:`bmac_trio.errors`, :mod:`bmac_trio.binance`. Never trio or the recorder.
"""
