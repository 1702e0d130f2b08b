"""Proving guarantees: workloads of uniquely numbered records, crashes, verification."""
