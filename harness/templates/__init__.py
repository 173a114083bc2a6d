"""templates stage of the pipeline."""
