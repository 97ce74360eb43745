"""`codey bench`: a workload over the three services, measured against the bare engine."""
