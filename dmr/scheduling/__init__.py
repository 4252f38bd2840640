"""What is resident and who gets it: the loader (keep-alive, memory budget) and the scheduler."""
