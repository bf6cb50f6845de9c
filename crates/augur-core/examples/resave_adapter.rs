//! Loads a PEFT LoRA adapter and writes it back with Augur's writer, so the result can be checked
//! with Python PEFT (`fixtures/reference/check_augur_adapter.py`).
//!
//! cargo run -p augur-core --example resave_adapter -- IN_DIR OUT_DIR

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output] = args.as_slice() else {
        return Err("usage: resave_adapter IN_DIR OUT_DIR".into());
    };
    let adapter = augur_core::LoraAdapter::load(input.as_ref(), &candle_core::Device::Cpu)?;
    adapter.save(output.as_ref())?;
    println!("wrote {} LoRA pairs to {output}", adapter.pairs.len());
    Ok(())
}
