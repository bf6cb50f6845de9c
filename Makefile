# The two commands of the README. Both provision the real models first (idempotent).
.PHONY: demo test models

# 1. Set up and run the main job on the default model: signals with evidence from sample notes.
demo: models
	cargo run --bin augur -- extract fixtures/notes/sample_notes.csv -o target/sample_signals.csv
	cargo run --bin augur -- embed fixtures/notes/sample_notes.csv -o target/sample_notes.embedded.parquet

# 2. Run every test (unit, integration, parity on real weights, signal evaluation).
test: models
	cargo test --workspace

models:
	models/fetch
