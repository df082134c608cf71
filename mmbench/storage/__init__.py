"""What mmbench keeps on disk, written so that a process killed at any instant loses nothing: atomic files and
folders (``atomic``), self-verifying checkpoints (``checkpoint``), run records (``records``), provenance
(``provenance``), figures (``figures``) and the names that become paths under the runs folder (``names``); and
read back so that a malformed file is one line naming it and the field (``validate``)."""
