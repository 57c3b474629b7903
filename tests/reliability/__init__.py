"""Reliability and security: bad inputs, fuzzing, concurrency, patient data, weights."""
