"""vm stage of the pipeline."""
