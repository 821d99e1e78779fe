"""Default sizes shared by the decoder, the pipeline and the command line (no imports: ``--help`` stays quick)."""

DEFAULT_OVERLAY_SIZE = 1000
"""Longest side of an overlay in pixels (``--overlay-size``). 1000 px fills a laptop screen and keeps an
overlay JPEG near 200 KB; 12 MP phone photos (4000-4080 px wide) reach it by decoding at 1/4 scale in the
DCT domain, 48 MP ones at 1/8. ``original`` (None in the API) keeps the input's own size."""

DEFAULT_MAX_MEGAPIXELS = 100.0
"""Largest decode allowed (``--max-megapixels``), also the cap on full-resolution pixels being decoded
at once across threads: about 300 MB as 8-bit RGB."""
