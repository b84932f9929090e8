"""EngramDB: a memory-native database for multi-agent AI systems."""
