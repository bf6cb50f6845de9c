# The two commands of the README. Both provision the real models first (idempotent).
.PHONY: demo test models

# 1. Set up and run the main job on the default model.
demo: models
	cargo run --bin augur -- embed fixtures/notes/sample_notes.csv -o target/sample_notes.embedded.parquet
	cargo run --bin augur -- models list

# 2. Run every test (unit, integration, parity on real weights).
test: models
	cargo test --workspace

models:
	models/fetch
