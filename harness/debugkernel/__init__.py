"""Debug kernel targets: a suite's own kernel source built small, with KASAN, kmemleak, lockdep,
failslab and KUnit, and the detectors that read what those features report."""
