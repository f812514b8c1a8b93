"""The kill/resume harness: SIGKILL a sweep at random moments, resume, compare (tests use it)."""
