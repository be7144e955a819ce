"""orderbell benchmarks: every figure next to a baseline measured in the same run."""
