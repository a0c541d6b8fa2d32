"""The orchestration core: the rules every run obeys, written once for both doors."""
