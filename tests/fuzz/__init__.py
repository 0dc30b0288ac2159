"""Coverage-guided fuzzing harnesses (atheris) and their seed corpora; see docs/fuzzing.md."""
