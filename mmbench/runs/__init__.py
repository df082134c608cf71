"""One run from its spec to its record: the spec and its id (``spec``); spec -> data -> model -> trainer ->
checkpoint -> metrics -> record (``execute``); its lock (``locks``, ``scheduler``); and what is done with a finished
run: evaluation (``evaluate``), a prior fit (``prior_fit``), sample grids (``samples``), encoder latents
(``latents``)."""
