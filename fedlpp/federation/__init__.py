"""Engine-agnostic FedLPP round pieces (broadcast, client step, aggregate) and the simulator."""
