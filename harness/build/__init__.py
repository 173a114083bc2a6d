"""build stage of the pipeline."""
