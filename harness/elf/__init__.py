"""elf stage of the pipeline."""
