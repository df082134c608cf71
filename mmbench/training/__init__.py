"""Training one model: how it executes (``options``: device, DDP processes, checkpoint interval), the loop with step
checkpoints and exact resume (``trainer``), the train state a checkpoint keeps and the migration of older ones
(``state``), DDP (``distributed``), memory layout (``memory_format``), the training log (``log``) and throughput
meters (``throughput``)."""
