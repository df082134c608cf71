"""What mmbench keeps on disk, written so that a process killed at any instant loses nothing: atomic files and
folders (``atomic``), self-verifying checkpoints (``checkpoint``), run records (``records``), provenance
(``provenance``) and figures (``figures``); and read back so that a malformed file is one line naming it and the
field (``validate``)."""
