"""lifecycle stage of the pipeline."""
